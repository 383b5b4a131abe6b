"""`robot-rl record-labels`: camera frames labelled success/failure into <out>/episodes.zarr (sim: ground truth)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import log
from robot_rl.data.episode_log import STORE_NAME, EpisodeLogWriter
from robot_rl.data.files import write_atomic
from robot_rl.data.schema import EpisodeSource
from robot_rl.reward.dataset import frame_index, open_labelled_store
from robot_rl.reward.recording import KINDS, LabelPolicies, episode_kinds
from robot_rl.runtime.run_dir import open_run_dir
from robot_rl.runtime.trained import load_trained

CONFIG = "record_labels"


def record_labels(cfg: DictConfig) -> dict:
    """Camera frames labelled success/failure into `<out>/episodes.zarr` (appends when it exists).

    In sim the label of each step is the task's ground truth for the frame the step produced (its next
    observation), and scripted policies drive a mix of episode kinds (robot_rl/reward/recording.py):
    lifts, lifts held below the success line, and the arm rising without the cube. With
    `task.reward=dense` success does not end an episode, so a lifted cube stays up for many positive
    frames. Episodes are logged with source `eval` (never used as demos). On a real robot the same
    store would carry a person's button as the per-step success flag.
    """
    out = Path(cfg.out)
    for key, least in (("episodes", 1), ("seed", 0)):
        if not isinstance(cfg[key], int) or cfg[key] < least:
            raise ValueError(f"{key}={cfg[key]!r} must be an integer >= {least}")
    if "lift_height" not in cfg.task:
        raise ValueError(
            f"record-labels has sim ground truth for pick_cube_vision only, not task {cfg.task.name}: "
            "use task=pick_cube_vision"
        )
    line = float(cfg.task.lift_height)
    lift, partial = (
        height_range(cfg.lift_range, "lift_range"),
        height_range(cfg.partial_lift_range, "partial_lift_range"),
    )
    if lift[0] < line or partial[1] >= line:
        raise ValueError(
            f"lift_range {list(lift)} must lie at or above and partial_lift_range {list(partial)} "
            f"below the task's success line task.lift_height={line}"
        )
    rng = np.random.default_rng(cfg.seed)
    if cfg.get("policy"):  # a trained policy's own rollouts instead of the scripted kinds
        kinds = ["policy"] * int(cfg.episodes)
    else:
        kinds = episode_kinds(int(cfg.episodes), float(cfg.partial_share), float(cfg.empty_share), rng)
    from robot_rl.envs.factory import make_env
    from robot_rl.runtime.rollout import run_episode

    env = make_env(cfg, seed=cfg.seed)
    try:
        cameras = [k for k in env.observation_space.spaces if k.startswith("image/")]
        if not cameras:
            raise ValueError(f"task {cfg.task.name} has no camera observations to label: use task=pick_cube_vision")
        policies = LabelPolicies(env, rng, float(cfg.expert_noise), lift, partial)
        if cfg.get("policy"):
            # its rollouts show the states a classifier must not call success by mistake (hard negatives)
            policies.policy = load_trained(str(cfg.policy), env).agent.act
        out = open_run_dir(out)
        start, n = time.perf_counter(), len(kinds)
        counts = {kind: {"episodes": 0, "frames": 0, "positives": 0} for kind in KINDS}
        with EpisodeLogWriter(
            out / STORE_NAME, env.observation_space, env.action_space, config=OmegaConf.to_container(cfg, resolve=True)
        ) as writer:
            write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))  # once the store validated
            for i, kind in enumerate(kinds):
                labels: list[bool] = []
                run_episode(
                    env,
                    policies.act_for(kind),
                    int(rng.integers(2**31)),
                    writer.num_episodes,
                    lambda t: (writer.add(t), labels.append(t.success)),  # noqa: B023 (runs in this iteration)
                )
                writer.end_episode(EpisodeSource.EVAL)
                counts[kind]["episodes"] += 1
                counts[kind]["frames"] += len(labels)
                counts[kind]["positives"] += int(sum(labels))
                if (i + 1) % 10 == 0 or i + 1 == n:
                    frames = sum(c["frames"] for c in counts.values())
                    positives = sum(c["positives"] for c in counts.values())
                    log(
                        f"[record-labels] episode {i + 1}/{n}: {frames} frames, {positives} success "
                        f"({time.perf_counter() - start:.0f} s)"
                    )
        store = open_labelled_store(out / STORE_NAME)
        labels_all = frame_index(store).labels
    finally:
        env.close()
    summary = {
        "command": "record-labels",
        "store": str(out / STORE_NAME),
        "label_source": "sim ground truth",
        "cameras": cameras,
        "episodes_recorded": n,
        "frames_recorded": frames,
        "positives_recorded": positives,
        "kinds": counts,
        "episodes": store.num_episodes,
        "frames": int(len(labels_all)),
        "positives": int(labels_all.sum()),
        "negatives": int((~labels_all).sum()),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    kinds_done = ", ".join(f"{c['episodes']} {kind}" for kind, c in counts.items() if c["episodes"])
    log(
        f"[record-labels] {n} episodes ({kinds_done}): "
        f"{frames} frames, {positives} success / {frames - positives} failure; store now {summary['frames']} "
        f"frames ({summary['positives']} success) -> {out / STORE_NAME}"
    )
    return summary


def height_range(value, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value} must be [low, high] in metres") from None
    if not 0.0 <= low <= high:
        raise ValueError(f"{name}={[low, high]} must be [low, high] with 0 <= low <= high (metres)")
    return low, high


run = record_labels
