"""Where a training run's events go (robot_rl.data.schema, "run events"): the progress line,
TensorBoard (`<run_dir>/tb`) and, optionally, Weights & Biases. A new consumer is a new `Sink`.

Configured by the `logger` group (configs/logger/default.yaml): `tensorboard` (default true), `wandb`
(default false; `WANDB_MODE=offline` runs without a network), `wandb_project`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from robot_rl.data.schema import EpisodeEnd, EpisodeSource, EvalEvent, LearnerStats, RunEvent

TB_DIR = "tb"


class Sink(Protocol):
    """Takes a run's events; `close` flushes whatever it holds."""

    def emit(self, event: RunEvent) -> None: ...

    def close(self) -> None: ...


class Sinks:
    """Fans every event out to each sink, in order."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks = list(sinks)

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, event: RunEvent) -> None:
        for sink in self.sinks:
            sink.emit(event)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class ProgressSink:
    """The `[train] step ...` and `[eval] ...` lines (bench/memory.py parses `[train] step N/`)."""

    def __init__(self, log: Callable[[str], None], who: str = "train") -> None:
        self.log, self.who = log, who

    def emit(self, event: RunEvent) -> None:
        if isinstance(event, LearnerStats):
            self.log(
                f"[{self.who}] step {event.env_step}/{event.total_steps} | episodes {event.episodes} | "
                f"success(last {event.recent_episodes}) {event.success_recent:.0%} | "
                f"{event.updates_per_s:.0f} updates/s | "
                f"Q {event.q:.2f} temperature {event.temperature:.3g} | "
                f"interventions {event.window_interventions} in {event.window_episodes} episodes "
                f"({event.window_intervention_steps} steps) | "
                f"sim {event.sim_share:.0%} learner {event.learner_share:.0%} | {event.wall_s:.0f}s"
                + (f" | safety layer acted on {event.window_safety_steps} steps" if event.window_safety_steps else "")
            )
        elif isinstance(event, EvalEvent):
            self.log(
                f"[eval] step {event.env_step}: success {event.success_rate:.0%} "
                f"return {event.mean_return:.2f} over {event.episodes} episodes"
            )

    def close(self) -> None:
        pass


def scalars(event: RunEvent) -> dict[str, float]:
    """The scalars an event contributes to a metrics store (TensorBoard, W&B), by tag."""
    if isinstance(event, EpisodeEnd):
        if event.source != EpisodeSource.ONLINE:
            return {}
        return {
            "episode/return": event.episode_return,
            "episode/length": event.length,
            "episode/success": float(event.success),
            "episode/interventions": event.interventions,
            "episode/intervention_steps": event.intervention_steps,
            "episode/safety_steps": event.safety_steps,
        }
    if isinstance(event, EvalEvent):
        return {"eval/success_rate": event.success_rate, "eval/mean_return": event.mean_return}
    if isinstance(event, LearnerStats):
        values = {
            "train/critic_loss": event.critic_loss,
            "train/q": event.q,
            "train/temperature": event.temperature,
            "train/updates_per_s": event.updates_per_s,
            "train/success_recent": event.success_recent,
            "train/interventions": event.window_interventions,
            "train/intervention_steps": event.window_intervention_steps,
            "train/safety_steps": event.window_safety_steps,
        }
        return {k: float(v) for k, v in values.items() if not math.isnan(float(v))}
    return {}


class TensorBoardSink:
    """Scalars per episode, eval round and update window under `<run_dir>/tb` (`tensorboard --logdir runs`).

    A resumed run appends to the same directory; `resume_step` (the env steps the log already holds)
    purges what the killed process wrote past its last commit, so no step is shown twice."""

    def __init__(self, log_dir: Path, resume_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "logger.tensorboard=true needs the tensorboard package: pip install tensorboard "
                "(or set logger.tensorboard=false)"
            ) from None
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step + 1 if resume_step else None, flush_secs=30)

    def emit(self, event: RunEvent) -> None:
        for tag, value in scalars(event).items():
            self.writer.add_scalar(tag, value, event.env_step)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """The same scalars to Weights & Biases (`logger.wandb=true`); `WANDB_MODE=offline` needs no network."""

    def __init__(self, run_dir: Path, project: str, config: Mapping[str, Any]) -> None:
        """One W&B run per run directory: a resumed run continues it (its id comes from the directory's path)."""
        try:
            import wandb
        except ImportError:
            raise ValueError(
                "logger.wandb=true needs wandb: pip install robot_rl[wandb] (or set logger.wandb=false)"
            ) from None
        self.wandb = wandb
        path = str(Path(run_dir).resolve())
        run_id = f"{Path(path).name[:40]}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
        self.run = wandb.init(
            project=project,
            dir=str(run_dir),
            config=dict(config),
            name=Path(path).name,
            id="".join(c if c.isalnum() or c in "-_" else "_" for c in run_id),
            resume="allow",
        )

    def emit(self, event: RunEvent) -> None:
        values = scalars(event)
        if values:
            self.run.log({**values, "env_step": event.env_step})

    def close(self) -> None:
        self.run.finish()


def make_sinks(
    logger_cfg: Mapping[str, Any] | None,
    run_dir: Path,
    log: Callable[[str], None],
    resume_step: int = 0,
    who: str = "train",
    config: Mapping[str, Any] | None = None,
) -> Sinks:
    """The run's sinks from the `logger` config group (absent: the progress line and TensorBoard)."""
    logger_cfg = dict(logger_cfg or {})
    unknown = set(logger_cfg) - {"tensorboard", "wandb", "wandb_project"}
    if unknown:
        raise ValueError(
            f"unknown logger key(s) {sorted(unknown)}: use logger.tensorboard, logger.wandb, logger.wandb_project"
        )
    sinks: list[Sink] = [ProgressSink(log, who)]
    if logger_cfg.get("tensorboard", True):
        sinks.append(TensorBoardSink(Path(run_dir) / TB_DIR, resume_step))
    if logger_cfg.get("wandb", False):
        sinks.append(WandbSink(Path(run_dir), str(logger_cfg.get("wandb_project") or "robot_rl"), config or {}))
    return Sinks(sinks)
