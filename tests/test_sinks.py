"""Run events reach their sinks: the progress line, TensorBoard under <run_dir>/tb, W&B when asked."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from robot_rl.config import compose
from robot_rl.data.schema import EpisodeEnd, EpisodeSource, EvalEvent, InterventionEnd, InterventionStart, StepEvent
from robot_rl.runtime.sinks import ProgressSink, Sinks, make_sinks

SHORT = [
    "steps=300",
    "num_demos=2",
    "teleop=sim_operator",
    "teleop.rule=schedule",
    "teleop.start_step=5",
    "agent.compile=false",
    "agent.utd=1",
    "agent.batch_size=64",
    "runtime.torch_threads=1",
    "runtime.learning_starts=50",
    "runtime.log_every=100",
    "runtime.eval_every=150",
    "runtime.eval_episodes=2",
    "runtime.checkpoint_every=100",
]


def scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_writes_tensorboard_scalars_and_a_resume_appends(tmp_path):
    """A short `robot-rl train` with a simulated operator: <run_dir>/tb holds eval success and return,
    episode returns and intervention counts, critic loss, Q, temperature and updates/s, with sensible
    values; resuming the finished run with more steps appends without writing a step twice."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "robot_rl.cli", "train", f"run_dir={run}", *SHORT]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[train] step 100/300 |" in done.stdout and "[eval] step 300: success" in done.stdout
    values = scalars(run / "tb")
    for tag in (
        "eval/success_rate",
        "eval/mean_return",
        "episode/return",
        "episode/length",
        "episode/success",
        "episode/interventions",
        "episode/intervention_steps",
        "train/critic_loss",
        "train/q",
        "train/temperature",
        "train/updates_per_s",
        "train/interventions",
        "train/intervention_steps",
    ):
        assert values.get(tag), f"no {tag} in {sorted(values)}"
    assert [step for step, _ in values["eval/success_rate"]] == [200, 300]
    assert all(0.0 <= v <= 1.0 for _, v in values["eval/success_rate"])
    assert [step for step, _ in values["train/q"]] == [100, 200, 300]
    assert all(math.isfinite(v) for tag in ("train/critic_loss", "train/q") for _, v in values[tag])
    assert values["train/critic_loss"][-1][1] >= 0.0 and 0.0 < values["train/temperature"][-1][1] < 1.0
    assert values["train/updates_per_s"][-1][1] > 0.0
    # the simulated operator steps in at step 5 of every episode: each episode shows its take-over
    summary = json.loads((run / "summary.json").read_text())
    episodes = values["episode/interventions"]
    assert len(episodes) == summary["episodes"] and all(v >= 1 for _, v in episodes)
    assert sum(v for _, v in episodes) == summary["interventions"]
    assert sum(v for _, v in values["episode/intervention_steps"]) == summary["intervention_steps"]
    assert sum(v for _, v in values["train/interventions"]) == summary["interventions"]
    assert sum(v for _, v in values["episode/length"]) == 300

    more = subprocess.run(
        [*cmd[: -len(SHORT)], *[a if a != "steps=300" else "steps=400" for a in SHORT]],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert more.returncode == 0, more.stderr[-2000:]
    after = scalars(run / "tb")
    steps = [step for step, _ in after["episode/return"]]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # appended, nothing written twice
    assert steps[: len(values["episode/return"])] == [step for step, _ in values["episode/return"]]
    assert [step for step, _ in after["eval/success_rate"]] == [200, 300, 400]


def test_progress_sink_keeps_the_eval_line_and_sinks_fan_out(tmp_path):
    lines: list[str] = []
    seen: list[object] = []

    class Recorder:
        def emit(self, event):
            seen.append(event)

        def close(self):
            seen.append("closed")

    sinks = Sinks([ProgressSink(lines.append), Recorder()])
    events = [
        StepEvent(1, 0, 0, 0.0, True, False),
        InterventionStart(1, 0, 0),
        InterventionEnd(3, 0, 2, 2),
        EpisodeEnd(3, 0, EpisodeSource.ONLINE, 3, 1.0, True, 1, 2, False),
        EvalEvent(3, 0.5, 1.25, 4),
    ]
    for event in events:
        sinks.emit(event)
    sinks.close()
    assert seen == [*events, "closed"]
    assert lines == ["[eval] step 3: success 50% return 1.25 over 4 episodes"]


def test_logger_config_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown logger key") as err:
        make_sinks({"tensorbord": True}, tmp_path, print)
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    with pytest.raises(ValueError, match=r"pip install robot_rl\[wandb\]") as err:
        make_sinks({"tensorboard": False, "wandb": True}, tmp_path, print)
    assert "\n" not in str(err.value)
    cfg = compose("train", [])
    assert cfg.logger.tensorboard is True and cfg.logger.wandb is False


def test_wandb_offline_sink_logs_without_a_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sinks = make_sinks(
        {"tensorboard": False, "wandb": True, "wandb_project": "robot_rl_test"},
        tmp_path / "run",
        print,
        config={"seed": 0},
    )
    sinks.emit(EvalEvent(100, 0.75, 2.0, 4))
    sinks.emit(EpisodeEnd(100, 3, EpisodeSource.ONLINE, 50, 1.0, True, 0, 0, False))
    sinks.close()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
