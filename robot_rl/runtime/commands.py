"""`robot-rl record-demos` and `robot-rl eval`."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robot_rl.data.episode_log import EpisodeLogWriter
from robot_rl.data.schema import EpisodeSource
from robot_rl.envs.factory import make_env
from robot_rl.runtime.embedded import CHECKPOINT, LOG, agent_config, check_device, evaluate, log
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.rollout import run_episodes, summarize
from robot_rl.data.files import write_atomic
from robot_rl.runtime.run_dir import RunLock, open_run_dir
from robot_rl.tasks import make_expert


def count_arg(cfg: DictConfig, key: str, least: int = 0) -> int:
    """The integer `cfg[key]`, at least `least`; a one-line error otherwise."""
    value = cfg[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{key}={value!r} must be an integer >= {least}")
    return value


def record_demos(cfg: DictConfig) -> dict:
    """Scripted-expert demos in sim into `<out>/episodes.zarr` (appends when it exists). The store is
    validated (EpisodeLogWriter) before anything in `out` changes."""
    episodes, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "seed")
    out = open_run_dir(cfg.out)
    env = make_env(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    expert = make_expert(env, noise=float(cfg.expert_noise), rng=rng)
    with EpisodeLogWriter(out / LOG, env.observation_space, env.action_space.shape[0],
                          config=OmegaConf.to_container(cfg, resolve=True)) as writer:
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        keep = (lambda r: r.success) if cfg.only_successful else None
        results = run_episodes(env, expert.act, episodes, rng, writer, EpisodeSource.DEMO, keep=keep)
        total = writer.num_episodes
    summary = {"command": "record-demos", "store": str(out / LOG), "recorded": len(results),
               "episodes_in_store": total, **summarize(results),
               "mean_length": float(np.mean([r.length for r in results]))}
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    log(f"[record-demos] {len(results)} demos (success {summary['success_rate']:.0%}, mean length "
        f"{summary['mean_length']:.1f}) -> {out / LOG}")
    return summary


def trained_run_config(run_dir: Path) -> DictConfig:
    """The resolved config of a `robot-rl train` run; a one-line error when `run_dir` holds none."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).exists() or not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} holds no trained run ({CHECKPOINT} or config.yaml missing): "
                                f"pass the run_dir given to `robot-rl train`")
    return OmegaConf.load(run_dir / "config.yaml")


def load_trained(run_dir: Path, env, device: str = "cpu", seed: int = 0) -> Learner:
    """A learner (agent only, no replay) restored from a `robot-rl train` run's latest checkpoint."""
    agent_cfg = agent_config(trained_run_config(run_dir))
    agent_cfg.compile = False  # inference only
    learner = Learner(env.observation_space, env.action_space.shape[0], agent_cfg, capacity=1, device=device, seed=seed)
    learner.load(Path(run_dir) / CHECKPOINT)
    return learner


def evaluate_run(cfg: DictConfig) -> dict:
    """Roll out a run's latest checkpoint deterministically; writes `<run_dir>/eval/summary.json`. With
    `log` (the default) the episodes go into the run's log, so eval holds the run's lock like `train`."""
    episodes, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "seed")
    check_device(cfg.device)
    run_dir = Path(cfg.run_dir)
    run_cfg = trained_run_config(run_dir)
    with RunLock(run_dir) if cfg.log else contextlib.nullcontext():
        torch.set_num_threads(int(run_cfg.runtime.torch_threads))
        env = make_env(run_cfg, seed=seed)
        learner = load_trained(run_dir, env, cfg.device, seed)
        rng = np.random.default_rng(seed)
        writer = None
        if cfg.log:
            writer = EpisodeLogWriter(run_dir / LOG, env.observation_space, env.action_space.shape[0])
        try:
            result = evaluate(env, learner.agent, episodes, rng, writer)
        finally:
            if writer is not None:
                writer.close()
        summary = {"command": "eval", "run_dir": str(run_dir), "critic_updates": learner.agent.num_updates,
                   **result}
        (run_dir / "eval").mkdir(exist_ok=True)
        write_atomic(run_dir / "eval" / "summary.json", json.dumps(summary, indent=2))
    steps = summary["mean_steps_to_success"]
    log(f"[eval] {run_dir}: success {summary['success_rate']:.0%} over {summary['episodes']} episodes, "
        f"mean return {summary['mean_return']:.2f}, mean steps to success "
        f"{'n/a' if steps is None else f'{steps:.1f}'} -> {run_dir / 'eval' / 'summary.json'}")
    return summary
