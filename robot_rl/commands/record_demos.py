"""`robot-rl record-demos`: scripted-expert demos in sim into `<out>/episodes.zarr`."""

from __future__ import annotations

import json

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import count_arg, log
from robot_rl.data.episode_log import EpisodeLogWriter
from robot_rl.data.files import write_atomic
from robot_rl.data.schema import EpisodeSource
from robot_rl.envs.factory import make_env
from robot_rl.runtime.rollout import run_episodes, summarize
from robot_rl.runtime.run import LOG
from robot_rl.runtime.run_dir import open_run_dir
from robot_rl.tasks import make_expert

CONFIG = "record_demos"


def record_demos(cfg: DictConfig) -> dict:
    """Scripted-expert demos in sim into `<out>/episodes.zarr` (appends when it exists). The store is
    validated (EpisodeLogWriter) before anything in `out` changes."""
    episodes, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "seed")
    out = open_run_dir(cfg.out)
    env = make_env(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    expert = make_expert(env, noise=float(cfg.expert_noise), rng=rng)
    with EpisodeLogWriter(
        out / LOG, env.observation_space, env.action_space.shape[0], config=OmegaConf.to_container(cfg, resolve=True)
    ) as writer:
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        keep = (lambda r: r.success) if cfg.only_successful else None
        results = run_episodes(env, expert.act, episodes, rng, writer, EpisodeSource.DEMO, keep=keep)
        total = writer.num_episodes
    summary = {
        "command": "record-demos",
        "store": str(out / LOG),
        "recorded": len(results),
        "episodes_in_store": total,
        **summarize(results),
        "mean_length": float(np.mean([r.length for r in results])),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    log(
        f"[record-demos] {len(results)} demos (success {summary['success_rate']:.0%}, mean length "
        f"{summary['mean_length']:.1f}) -> {out / LOG}"
    )
    return summary


run = record_demos
