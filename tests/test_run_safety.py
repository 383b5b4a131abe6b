"""A run survives careless and hostile use (issue 10): refused commands change nothing, checkpoints cannot
run code, a killed run resumes as the run that was never killed, and file-system faults are one clear
line. Every command runs as a real `robot-rl` process; kills are real SIGKILLs (failpoints place them)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_proc import robot_rl
from fs_faults import remount, tmpfs

from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter

FAST = [
    "agent.compile=false",
    "agent.batch_size=64",
    "agent.utd=2",
    "runtime.learning_starts=50",
    "runtime.eval_episodes=2",
    "runtime.log_every=100",
    "num_demos=2",
]


def one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def digest(path: Path) -> str:
    """Every file's relative path and bytes under `path` (lock files aside: taking a lock is allowed)."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".lock")):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    proc = robot_rl("train", f"run_dir={run}", "steps=120", *FAST)
    assert proc.returncode == 0, proc.stderr
    return run


def copy_run(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


# ------------------------------------------------------------------ class 1: a refused command changes nothing
def test_incompatible_checkpoint_is_refused_before_anything_changes(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    before = digest(run)
    proc = robot_rl("train", f"run_dir={run}", "steps=240", "agent.hidden_dims=[64,64]", *FAST)
    one_line_error(proc, "incompatible checkpoint")
    assert digest(run) == before  # config.yaml included: still the run's own config
    assert "hidden_dims:\n  - 256" in (run / "config.yaml").read_text()


def test_train_is_refused_while_another_process_holds_the_run_or_its_log(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    before = digest(run)
    log = EpisodeLog(run / "episodes.zarr")
    with EpisodeLogWriter(run / "episodes.zarr", log.obs_spec, log.action_spec["shape"][0]):
        proc = robot_rl("train", f"run_dir={run}", "steps=240", *FAST)
    one_line_error(proc, "already open by another writer")
    assert digest(run) == before
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from robot_rl.runtime.run_dir import RunLock; "
            "lock = RunLock(sys.argv[1]).__enter__(); print('held', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (["train", f"run_dir={run}", "steps=240", *FAST], ["eval", f"run_dir={run}", "episodes=1"]):
            one_line_error(robot_rl(*args), f"is in use by another process (pid {holder.pid})")
    finally:
        holder.kill()
        holder.wait()
    assert digest(run) == before


# ------------------------------------------------------------------ class 3: a checkpoint cannot run code
def crafted_checkpoint(good: Path, out: Path, marker: Path) -> None:
    """`good` with its pickle replaced by one that would create `marker` through os.system."""

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("data.pkl"):
                data = pickle.dumps({"agent": Evil()}, protocol=2)
            zout.writestr(name, data)


def test_a_crafted_checkpoint_is_refused_without_running(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    marker = tmp_path / "pwned"
    crafted_checkpoint(trained / "checkpoint.pt", run / "checkpoint.pt", marker)
    with pytest.raises(pickle.UnpicklingError):  # the file really is an exploit for a full unpickler
        torch.load(run / "checkpoint.pt", weights_only=True)
    before = digest(run)
    for args in (["eval", f"run_dir={run}", "episodes=1"], ["train", f"run_dir={run}", "steps=240", *FAST]):
        one_line_error(robot_rl(*args), "holds more than weights")
        assert not marker.exists()
    assert digest(run) == before


# ------------------------------------------------------------------ class 4: resume is the same run
RESUME = ["steps=800", "runtime.eval_every=200", "runtime.checkpoint_every=120", *FAST]
# demo recording, before the first checkpoint, mid-checkpoint write, mid-eval, training, summary write:
# each fires early in its process, so that every one lands before the run ends
KILLS = [
    "commit:demo:1",
    "commit:online:1",
    "write:checkpoint.pt:1",
    "commit:eval:1",
    "commit:online:2",
    "write:summary.json",
]


def comparable(run: Path) -> tuple[dict, dict]:
    """summary.json without wall-clock fields, and the final weights."""
    summary = json.loads((run / "summary.json").read_text())
    for key in ("wall_s", "time_split", "run_dir"):
        summary.pop(key)
    for result in [*summary["evals"], summary["final_eval"]]:
        result.pop("wall_s")
    agent = torch.load(run / "checkpoint.pt", weights_only=True)["agent"]
    return summary, {f"{m}.{k}": v for m in ("actor", "critic", "target_critic") for k, v in agent[m].items()}


def test_a_run_killed_at_every_phase_resumes_into_the_run_never_killed(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert robot_rl("train", f"run_dir={whole}", *RESUME).returncode == 0
    for failpoint in KILLS:
        proc = robot_rl("train", f"run_dir={killed}", *RESUME, env={"ROBOT_RL_FAILPOINT": failpoint})
        assert proc.returncode == -signal.SIGKILL, (failpoint, proc.stdout, proc.stderr)
    # and one kill at a random moment of a real process
    proc = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.cli", "train", f"run_dir={killed}", *RESUME],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(float(np.random.default_rng().uniform(2.0, 6.0)))
    proc.kill()
    proc.wait()
    proc = robot_rl("train", f"run_dir={killed}", *RESUME)
    assert proc.returncode == 0 and "resuming" in proc.stdout, proc.stderr
    assert not list(killed.glob("*.tmp"))
    (summary_w, weights_w), (summary_k, weights_k) = comparable(whole), comparable(killed)
    assert summary_k == summary_w
    assert summary_k["demo_episodes"] == 2 and summary_k["env_steps"] == 800
    assert [e["env_steps"] for e in summary_k["evals"]] == [200, 400, 600, 800]
    assert all(torch.equal(weights_w[k], weights_k[k]) for k in weights_w)
    # the killed run's log holds the same episodes: nothing lost, nothing twice
    meta_w = EpisodeLog(whole / "episodes.zarr").episode_meta()
    meta_k = EpisodeLog(killed / "episodes.zarr").episode_meta()
    for key in ("source", "length", "success", "eval_step"):
        assert np.array_equal(meta_w[key], meta_k[key]), key


def test_the_last_episode_is_cut_at_the_step_budget(trained):
    summary = json.loads((trained / "summary.json").read_text())
    log = EpisodeLog(trained / "episodes.zarr")
    meta = log.episode_meta()
    online = np.flatnonzero(meta["source"] == 1)
    assert summary["env_steps"] == 120 == int(meta["length"][online].sum())
    assert log.episode(int(online[-1]))["truncated"][-1] or log.episode(int(online[-1]))["terminated"][-1]


# ------------------------------------------------------------------ class 5: environment faults
@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "run_dir={file}"], "is a file, not a directory"),
        (["train", "run_dir={file}/run"], "inside a file"),
        (["train", "run_dir={tmp}/r", "runtime.eval_every=0"], "runtime.eval_every=0 must be at least 1"),
        (["train", "run_dir={tmp}/r", "runtime.checkpoint_every=-5"], "runtime.checkpoint_every=-5 must be at least 1"),
        (["train", "run_dir={tmp}/r", "runtime.log_every=0"], "runtime.log_every=0 must be at least 1"),
        (["train", "run_dir={tmp}/r", "runtime.eval_episodes=0"], "runtime.eval_episodes=0 must be at least 1"),
        (["train", "run_dir={tmp}/r", "runtime.learning_starts=-1"], "runtime.learning_starts=-1 must be 0 or more"),
        (["train", "run_dir={tmp}/r", "num_demos=-3"], "num_demos=-3 must be a non-negative integer"),
        (["record-demos", "out={tmp}/d", "episodes=-1"], "episodes=-1 must be an integer >= 1"),
        (["eval", "run_dir={tmp}/r", "episodes=0"], "episodes=0 must be an integer >= 1"),
        (["record-labels", "out={tmp}/l", "episodes=-2"], "episodes=-2 must be an integer >= 1"),
    ],
)
def test_bad_inputs_are_one_line_errors_that_change_nothing(args, message, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = robot_rl(*[a.format(tmp=tmp_path, file=tmp_path / "file") for a in args], timeout=120)
    one_line_error(proc, message)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_only_install_is_one_line(tmp_path):
    proc = robot_rl("train", f"run_dir={tmp_path / 'r'}", "device=cuda")
    one_line_error(proc, "device=cuda but this torch sees no CUDA")
    assert not (tmp_path / "r").exists()


def test_a_read_only_run_dir_is_one_line_and_untouched(trained, tmp_path):
    with tmpfs(tmp_path / "ro", "20m") as mount:
        run = copy_run(trained, mount / "run")
        (mount / "empty").mkdir()
        before = digest(run)
        remount(mount, "ro")
        one_line_error(robot_rl("train", f"run_dir={mount / 'empty'}", *FAST), "Read-only file system")
        one_line_error(robot_rl("train", f"run_dir={run}", "steps=240", *FAST), "Read-only file system")
        one_line_error(robot_rl("train", f"run_dir={mount / 'new'}", *FAST), "Read-only file system")
        assert digest(run) == before


def test_a_full_disk_is_one_line_leaves_no_temp_files_and_keeps_finished_episodes(tmp_path):
    with tmpfs(tmp_path / "small", "3m") as mount:
        run = mount / "run"
        proc = robot_rl(
            "train",
            f"run_dir={run}",
            "steps=5000",
            "runtime.checkpoint_every=100",
            "agent.hidden_dims=[512,512]",
            *FAST,
        )
        one_line_error(proc, "disk full")
        assert "free space and rerun" in proc.stderr
        leftovers = [p for p in run.rglob("*") if p.name.endswith((".tmp", ".partial")) or ".creating-" in p.name]
        assert leftovers == []
        log = EpisodeLog(run / "episodes.zarr")
        assert log.num_episodes >= 1
        for i in range(log.num_episodes):  # every finished episode reads back, finite
            assert np.isfinite(log.episode(i)["observation/state"]).all()
        # once there is room again the run resumes from what was kept
        remount(mount, "size=64m")
        proc = robot_rl(
            "train", f"run_dir={run}", "steps=300", "runtime.checkpoint_every=100", "agent.hidden_dims=[512,512]", *FAST
        )
        assert proc.returncode == 0 and "resuming" in proc.stdout, proc.stderr
