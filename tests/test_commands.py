"""The `robot-rl` commands end to end: record-demos, train (resume, SIGKILL), eval, gym, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from cli_proc import robot_rl as run_cli

from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeSource

# small, fast settings: the learner is exercised, not trained to convergence
FAST = [
    "agent.compile=false",
    "agent.batch_size=64",
    "agent.utd=2",
    "runtime.learning_starts=50",
    "runtime.eval_episodes=3",
    "runtime.log_every=100",
]


def robot_rl(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """robot-rl, failing the test on a non-zero exit unless `check=False`."""
    return run_cli(*args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demos")
    proc = robot_rl("record-demos", "task=pick_cube", "episodes=5", f"out={out}")
    assert "5 demos" in proc.stdout
    return out


def check_log_with_plain_zarr(store: Path) -> dict:
    """Episode boundaries, lengths and metadata agree, read with zarr alone."""
    root = zarr.open_group(str(store), mode="r")
    ends = root["meta/episode_ends"][:]
    lengths = root["meta/length"][: len(ends)]
    assert np.all(np.diff(np.concatenate([[0], ends])) == lengths)
    episode_id = root["data/episode_id"][: ends[-1]]
    step = root["data/step"][: ends[-1]]
    starts = np.concatenate([[0], ends[:-1]])
    for e, (s, t) in enumerate(zip(starts, ends)):
        assert np.all(step[s:t] == np.arange(t - s))
        assert np.all(episode_id[s:t] == root["meta/episode_id"][e])
    success = root["data/success"][: ends[-1]]
    assert np.array_equal(root["meta/success"][: len(ends)], [success[s:t].any() for s, t in zip(starts, ends)])
    assert root["data/observation/state"].shape[1] == 10
    return {"ends": ends, "source": root["meta/source"][: len(ends)], "success": root["meta/success"][: len(ends)]}


def test_record_demos(demos):
    summary = json.loads((demos / "summary.json").read_text())
    assert summary["recorded"] == 5 and summary["success_rate"] == 1.0
    log = check_log_with_plain_zarr(demos / "episodes.zarr")
    assert list(log["source"]) == [EpisodeSource.DEMO] * 5 and log["success"].all()


def test_train_eval_and_resume(demos, tmp_path):
    run = tmp_path / "run"
    proc = robot_rl("train", f"run_dir={run}", f"demos={demos}", "steps=300", "runtime.eval_every=200", *FAST)
    assert "copied 5 demo episodes" in proc.stdout
    assert "updates/s" in proc.stdout and "sim" in proc.stdout  # progress line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 300 and summary["critic_updates"] > 0
    assert 0.0 <= summary["success_rate"] <= 1.0 and "mean_return" in summary
    assert (run / "learning_curve.png").stat().st_size > 1000 and (run / "checkpoint.pt").exists()
    assert "agent:" in (run / "config.yaml").read_text()
    log = check_log_with_plain_zarr(run / "episodes.zarr")
    # a reader with zarr alone, in a process that never imports robot_rl
    reader = (
        "import sys, zarr; r = zarr.open_group(sys.argv[1], mode='r'); "
        "e = r['meta/episode_ends'][:]; print(len(e), int(e[-1]), 'robot_rl' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", reader, str(run / "episodes.zarr")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(len(log["ends"])), str(log["ends"][-1]), "False"]
    sources = set(log["source"].tolist())
    assert sources == {EpisodeSource.DEMO, EpisodeSource.ONLINE, EpisodeSource.EVAL}
    updates_before = summary["critic_updates"]

    proc = robot_rl("train", f"run_dir={run}", f"demos={demos}", "steps=500", "runtime.eval_every=200", *FAST)
    assert "resuming" in proc.stdout
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["env_steps"] >= 500 and resumed["critic_updates"] > updates_before
    demo_count = (check_log_with_plain_zarr(run / "episodes.zarr")["source"] == EpisodeSource.DEMO).sum()
    assert demo_count == 5  # demos are not copied twice

    proc = robot_rl("eval", f"run_dir={run}", "episodes=4")
    result = json.loads((run / "eval" / "summary.json").read_text())
    assert result["episodes"] == 4 and {"success_rate", "mean_return", "mean_steps_to_success"} <= set(result)
    assert "success" in proc.stdout


def test_sigkill_keeps_finished_episodes_and_resumes(demos, tmp_path):
    run = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "robot_rl.cli",
        "train",
        f"run_dir={run}",
        f"demos={demos}",
        "steps=3000",
        "runtime.eval_every=100000",
        "runtime.checkpoint_every=200",
        *FAST,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = run / "episodes.zarr"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # until several online episodes and a checkpoint exist
            if (run / "checkpoint.pt").exists() and store.exists() and EpisodeLog(store).num_episodes >= 10:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.5)
        time.sleep(1.3)  # land mid-episode, most likely
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    log = EpisodeLog(store)
    committed = log.num_episodes
    assert committed >= 10
    meta = check_log_with_plain_zarr(store)
    for i in range(committed):  # every finished episode is intact and self-consistent
        episode = log.episode(i)
        n = len(episode["reward"])
        assert n == log.episode_meta()["length"][i]
        assert np.isfinite(episode["observation/state"]).all()
        # a finished episode ends in success/termination or at the step limit
        assert episode["terminated"][-1] or episode["truncated"][-1]
    proc = robot_rl("train", f"run_dir={run}", f"demos={demos}", "steps=1200", "runtime.eval_every=100000", *FAST)
    assert "resuming" in proc.stdout
    after = EpisodeLog(store)
    assert after.num_episodes > committed
    # the episodes that survived the kill are unchanged by the resumed run
    for i in range(committed):
        assert np.array_equal(after.episode(i)["observation/state"], log.episode(i)["observation/state"])
    assert len(check_log_with_plain_zarr(store)["ends"]) == after.num_episodes
    assert meta["ends"][-1] <= after.episode_meta()["episode_ends"][-1]


def test_default_compiled_learner_trains(demos, tmp_path):
    """The default agent (torch.compile on) through the command."""
    run = tmp_path / "run"
    robot_rl(
        "train",
        f"run_dir={run}",
        f"demos={demos}",
        "steps=150",
        "runtime.learning_starts=50",
        "runtime.eval_episodes=2",
    )
    assert json.loads((run / "summary.json").read_text())["critic_updates"] >= 100


def test_wall_budget_stops_at_the_first_episode_end(demos, tmp_path):
    run = tmp_path / "run"
    proc = robot_rl("train", f"run_dir={run}", f"demos={demos}", "steps=5000", "runtime.max_wall_s=0", *FAST)
    summary = json.loads((run / "summary.json").read_text())
    assert "wall budget" in proc.stdout
    assert summary["episodes"] == 1 and summary["env_steps"] <= 100
    assert summary["evals"][-1]["env_steps"] == summary["env_steps"]  # the final eval still runs


def test_gym_task_trains_pendulum(tmp_path):
    run = tmp_path / "pendulum"
    robot_rl(
        "train",
        "task=gym",
        "task.env_id=Pendulum-v1",
        "num_demos=0",
        f"run_dir={run}",
        "steps=400",
        "runtime.eval_every=200",
        *FAST,
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "gym" and summary["env_steps"] >= 400
    assert EpisodeLog(run / "episodes.zarr").obs_spec["state"][0] == (3,)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "task=nope"], "unknown task 'nope': choose one of gym, peg_insert, peg_insert_vision, pick_cube"),
        (["train", "agent.nope=1"], "unknown config key 'agent.nope'"),
        (["train", "steps=abc"], "steps='abc' must be a non-negative integer"),
        (["train", "agent.utd=x", "run_dir={tmp}/u"], "bad value for agent.utd"),
        (["train", "steps"], "'steps' is not an override"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["train", "demos=/nonexistent/store", "run_dir={tmp}/r"], "/nonexistent/store"),
        (["train", "task=gym", "task.env_id=CartPole-v1", "run_dir={tmp}/c"], "not a bounded Box"),
        (["eval", "run_dir={tmp}/missing"], "holds no trained run"),
    ],
)
def test_errors_are_one_line(args, message, tmp_path):
    proc = robot_rl(*[a.format(tmp=tmp_path) for a in args], check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_store_and_incompatible_checkpoint(demos, tmp_path):
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{not json")
    proc = robot_rl("train", f"demos={bad}", f"run_dir={tmp_path / 'r'}", *FAST, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and str(bad) in proc.stderr

    run = tmp_path / "run"
    robot_rl("train", f"run_dir={run}", f"demos={demos}", "steps=60", "runtime.eval_episodes=1", *FAST)
    proc = robot_rl(
        "train", f"run_dir={run}", f"demos={demos}", "steps=120", "agent.hidden_dims=[64,64]", *FAST, check=False
    )
    assert proc.returncode == 2
    assert "incompatible checkpoint" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_vision_task_records_trains_and_evaluates(tmp_path):
    """pick_cube_vision end to end with small images: frames land in the log, the image agent trains."""
    pytest.importorskip("mujoco")
    small = ["task=pick_cube_vision", "task.image_size=[32,32]"]
    demos_dir = tmp_path / "demos"
    proc = robot_rl("record-demos", *small, "episodes=2", f"out={demos_dir}", check=False)
    if proc.returncode != 0 and "OpenGL" in proc.stderr + proc.stdout:
        pytest.skip("no OpenGL backend for offscreen rendering")
    assert proc.returncode == 0, proc.stderr
    root = zarr.open_group(str(demos_dir / "episodes.zarr"), mode="r")
    ends = root["meta/episode_ends"][:]
    frames = root["data/observation/image/front"][: ends[-1]]
    assert frames.shape[1:] == (32, 32, 3) and frames.dtype == np.uint8 and frames.std() > 5  # real pictures
    assert root["data/observation/state"].shape[1] == 7  # proprioception only: no cube position

    run = tmp_path / "run"
    # the learner takes an episode once it ends (so a discarded one never reaches it): 30-step episodes
    robot_rl(
        "train",
        *small,
        "task.max_steps=30",
        f"run_dir={run}",
        f"demos={demos_dir}",
        "steps=60",
        "runtime.learning_starts=20",
        "runtime.eval_episodes=1",
        "agent.batch_size=8",
        "agent.utd=1",
        "agent.compile=false",
        "agent.grasp_critic=true",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["critic_updates"] >= 30 and summary["task"] == "pick_cube_vision"
    robot_rl("eval", f"run_dir={run}", "episodes=1")
    assert json.loads((run / "eval" / "summary.json").read_text())["episodes"] == 1
