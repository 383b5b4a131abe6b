"""`robot-rl eval`: evaluate a run's latest checkpoint: robot-rl eval run_dir=<dir> episodes=50 [video=N]
[task=<name>] (another task with the same observations and actions, e.g. a target sim: task=pick_cube_target)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from robot_rl.config import UserError, check_device, count_arg, log
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter, spec_difference
from robot_rl.data.files import write_atomic
from robot_rl.envs.factory import make_env
from robot_rl.envs.video import RecordVideo
from robot_rl.runtime.embedded import evaluate
from robot_rl.runtime.run import LOG
from robot_rl.runtime.run_dir import RunLock
from robot_rl.runtime.trained import load_trained, trained_run_config

CONFIG = "eval"
VIDEOS = Path("eval") / "videos"  # under the run dir: episode_000.mp4, ...


def evaluate_run(cfg: DictConfig) -> dict:
    """Roll out a run's latest checkpoint deterministically; writes `<run_dir>/eval/summary.json`. With
    `log` (the default) the episodes go into the run's log, so eval holds the run's lock like `train`.
    `video=N` records the first N episodes to `<run_dir>/eval/videos/episode_<k>.mp4` (RecordVideo; the
    files of an earlier eval there are replaced) and lists them, relative to the run dir, in the summary.
    `task=<name>` evaluates in that task instead of the run's (same observation and action spec, else a one-line
    error); its name is in the summary (`task`)."""
    episodes, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "seed")
    videos = count_arg(cfg, "video")
    check_device(cfg.device)
    run_dir = Path(cfg.run_dir)
    run_cfg = trained_run_config(run_dir)
    if cfg.get("task") is not None:
        run_cfg.task = cfg.task
    with RunLock(run_dir) if cfg.log else contextlib.nullcontext():
        torch.set_num_threads(int(run_cfg.runtime.torch_threads))
        env = make_env(run_cfg, seed=seed)
        try:
            if cfg.get("task") is not None:
                _check_spec(run_dir, env, str(run_cfg.task.name))
            if videos:
                env = RecordVideo(env, _fresh_video_dir(run_dir), min(videos, episodes))
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
        finally:
            env.close()  # finishes the video files
        paths = [str(p.relative_to(run_dir)) for p in env.paths] if isinstance(env, RecordVideo) else []
        summary = {
            "command": "eval",
            "run_dir": str(run_dir),
            "task": str(run_cfg.task.name),
            "critic_updates": learner.agent.num_updates,
            **result,
            "videos": paths,
        }
        (run_dir / "eval").mkdir(exist_ok=True)
        write_atomic(run_dir / "eval" / "summary.json", json.dumps(summary, indent=2))
    steps = summary["mean_steps_to_success"]
    log(
        f"[eval] {run_dir}: success {summary['success_rate']:.0%} over {summary['episodes']} episodes, "
        f"mean return {summary['mean_return']:.2f}, mean steps to success "
        f"{'n/a' if steps is None else f'{steps:.1f}'} -> {run_dir / 'eval' / 'summary.json'}"
        + (f"; {len(summary['videos'])} video(s) in {run_dir / VIDEOS}" if summary["videos"] else "")
    )
    return summary


def _check_spec(run_dir: Path, env, task: str) -> None:
    """A one-line error when `env`'s observation or action spec differs from what the run was trained on."""
    difference = spec_difference(EpisodeLog(run_dir / LOG), env.observation_space, env.action_space.shape[0])
    if difference is not None:
        raise UserError(
            f"the run in {run_dir} was trained on {difference} (task {task}): evaluate it on a task with the same "
            "observations and actions (e.g. task=pick_cube_target for a pick_cube run)"
        )


def _fresh_video_dir(run_dir: Path) -> Path:
    """`<run_dir>/eval/videos`, emptied of an earlier eval's episode files."""
    directory = run_dir / VIDEOS
    for old in directory.glob("episode_*.mp4"):
        old.unlink()
    return directory


run = evaluate_run
