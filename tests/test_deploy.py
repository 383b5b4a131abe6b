"""`robot-rl deploy`: an exported policy on the sim and on the serial rig (the real firmware behind a
pseudo-terminal) through the safety layer, from an install without torch; checks before any motion,
activation, faults, logs and videos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeSource, SafetyAction
from tests.cli_proc import REPO, robot_rl

DEPLOY_PYTHON = REPO / ".venv-deploy" / "bin" / "python"
# pick_cube policies on the so101 arm, exported (`robot-rl export`) from runs that reached 90% eval success in
# the in-process sim and 95% on the serial rig (README, SO-101 learning curves, seed 0)
TRAINED = REPO / "tests" / "data" / "pick_cube_so101.onnx"
TRAINED_ON_SERIAL = REPO / "tests" / "data" / "pick_cube_so101_serial.onnx"
SO101 = ["robot.model=so101"]


def deploy_venv(*args: object, timeout: float = 600, stdin=None) -> subprocess.CompletedProcess:
    """`robot-rl *args` in the deploy-only virtual environment (`make deploy-venv`: the deploy extra, no torch)."""
    assert DEPLOY_PYTHON.exists(), "no .venv-deploy: run `make deploy-venv` (make test does)"
    return subprocess.run(
        [str(DEPLOY_PYTHON), "-m", "robot_rl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """A short pick_cube run on the so101 sim whose safety limits allow anything the policy does (so that
    deploy and eval take the same actions) and its ONNX export."""
    run = tmp_path_factory.mktemp("deploy") / "run"
    robot_rl(
        "train",
        f"run_dir={run}",
        "steps=150",
        "num_demos=2",
        "runtime.eval_every=1000",
        "runtime.eval_episodes=1",
        "agent.compile=false",
        "task.max_steps=30",
        "safety.max_accel=1000",
        *SO101,
        check=True,
    )
    robot_rl("export", f"run_dir={run}", check=True)
    assert (run / "policy.onnx").is_file()
    return run


def test_the_deploy_venv_has_no_torch_and_training_says_what_to_install():
    proc = subprocess.run([str(DEPLOY_PYTHON), "-c", "import torch"], capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr
    proc = deploy_venv("train", "steps=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and 'pip install "robot_rl[train]"' in proc.stderr


def test_a_trained_policy_deployed_on_the_sim_from_the_deploy_venv(tmp_path):
    """The exported pick_cube policy (trained to 90% eval success) on the in-process sim: it succeeds, every
    step is logged as a deploy episode with its safety bits, and the video plays."""
    out = tmp_path / "sim"
    proc = deploy_venv("deploy", f"policy={TRAINED}", *SO101, "episodes=20", "seed=1", f"out={out}", "video=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = summary_of(out)
    assert summary["episodes"] == 20 and summary["success_rate"] >= 0.8, summary
    assert summary["faults"] == 0 and summary["inference_ms"]["median"] < 5.0
    log = EpisodeLog(out / "episodes.zarr")
    assert log.num_episodes == 20
    meta = log.episode_meta()
    assert (meta["source"] == int(EpisodeSource.DEPLOY)).all()
    assert int(np.count_nonzero(log.read("safety"))) == summary["safety_steps"] == int(meta["safety_steps"].sum())
    (video,) = summary["videos"]
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(video)
    info = next(reader)
    frames = sum(1 for _ in reader)
    assert frames == int(meta["length"][0]) + 1 and info["size"][0] >= 256


def test_a_trained_policy_deployed_on_the_serial_rig_from_the_deploy_venv(tmp_path):
    """robot=serial: the real firmware (host build) behind a pseudo-terminal, its servos a MuJoCo plant."""
    out = tmp_path / "serial"
    policy = f"policy={TRAINED_ON_SERIAL}"
    proc = deploy_venv("deploy", policy, "robot=serial", "episodes=5", "seed=2", f"out={out}", "activate=now")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = summary_of(out)
    assert summary["episodes"] == 5 and summary["success_rate"] >= 3 / 5, summary
    assert EpisodeLog(out / "episodes.zarr").num_episodes == 5


def test_deploy_takes_the_training_policys_actions_on_the_same_starts(short_run, tmp_path):
    """eval (PyTorch) and deploy (onnxruntime, safety layer on, limits as wide as the run's) on the same seeds:
    the same episodes, step for step."""
    robot_rl("eval", f"run_dir={short_run}", "episodes=3", "seed=5", check=True)
    out = tmp_path / "deploy"
    robot_rl("deploy", f"policy={short_run / 'policy.onnx'}", *SO101, "episodes=3", "seed=5", f"out={out}", check=True)
    evals = EpisodeLog(short_run / "episodes.zarr")
    deployed = EpisodeLog(out / "episodes.zarr")
    eval_ids = [i for i, s in enumerate(evals.episode_meta()["source"]) if s == int(EpisodeSource.EVAL)][-3:]
    for deploy_index, eval_index in enumerate(eval_ids):
        a, b = evals.episode(eval_index), deployed.episode(deploy_index)
        assert len(a["action"]) == len(b["action"])
        np.testing.assert_allclose(a["policy_action"], b["policy_action"], atol=1e-4)
        np.testing.assert_allclose(a["observation/state"], b["observation/state"], atol=1e-4)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("robot-rl deploy: error:"), err
    for word in words:
        assert word in err, err
    return err


def test_bad_policy_files_are_refused_before_the_robot_opens(short_run, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    truncated = tmp_path / "truncated.onnx"
    data = (short_run / "policy.onnx").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for bad in (corrupt, truncated, tmp_path / "missing.onnx"):
        out = tmp_path / f"out_{bad.stem}"
        one_line_error(robot_rl("deploy", f"policy={bad}", *SO101, f"out={out}"), str(bad))
        assert not out.exists()  # nothing logged: the robot never opened


def test_a_policy_for_another_robot_or_wider_limits_is_refused_and_nothing_moves(short_run, tmp_path):
    policy = short_run / "policy.onnx"
    out = tmp_path / "out"
    one_line_error(robot_rl("deploy", f"policy={policy}", "robot.model=panda", f"out={out}"), "robot.model=so101")
    one_line_error(robot_rl("deploy", f"policy={policy}", *SO101, "robot.control_dt=0.05", f"out={out}"), "0.1")
    wide = "robot.workspace=[[0.0,-0.5,0.0],[0.6,0.5,0.6]]"
    one_line_error(robot_rl("deploy", f"policy={policy}", *SO101, wide, f"out={out}"), "workspace")
    one_line_error(robot_rl("deploy", f"policy={policy}", *SO101, "safety.max_accel=5000", f"out={out}"), "max_accel")
    assert not (out / "episodes.zarr").exists()


def test_a_policy_whose_observations_differ_from_the_envs_is_refused(short_run, tmp_path):
    """A policy file whose observation spec is not the env's (another task config): one line, no motion."""
    import onnx

    model = onnx.load(str(short_run / "policy.onnx"))
    (entry,) = [p for p in model.metadata_props if p.key == "robot_rl"]
    meta = json.loads(entry.value)
    meta["observation"]["state"]["shape"] = [14]
    for key in ("low", "high"):
        if meta["observation"]["state"].get(key) is not None:
            meta["observation"]["state"][key] = meta["observation"]["state"][key] + [0.0] * 4
    entry.value = json.dumps(meta)
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    out = tmp_path / "out"
    one_line_error(robot_rl("deploy", f"policy={other}", *SO101, f"out={out}"), "state")
    assert not (out / "episodes.zarr").exists()


def test_hardware_needs_a_person_to_activate(short_run, tmp_path):
    policy = short_run / "policy.onnx"
    err = one_line_error(
        robot_rl("deploy", f"policy={policy}", "robot=serial", "robot.port=/dev/ttyUSB9", "activate=now")
    )
    assert "activate=prompt" in err
    # stdin is not a terminal: nobody can be asked
    one_line_error(robot_rl("deploy", f"policy={policy}", "robot=serial", "activate=prompt"), "terminal")


def test_prompt_activation_on_the_serial_rig(short_run, tmp_path):
    """activate=prompt asks in the terminal: `no` stops before any motion, `yes` runs."""
    policy = short_run / "policy.onnx"
    for answer, episodes in (("no", 0), ("yes", 1)):
        primary, secondary = os.openpty()
        out = tmp_path / answer
        os.write(primary, f"{answer}\n".encode())
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "robot_rl.cli",
                "deploy",
                f"policy={policy}",
                "robot=serial",
                "episodes=1",
                "activate=prompt",
                f"out={out}",
            ],
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        os.close(primary)
        os.close(secondary)
        assert "Type yes to activate" in proc.stdout
        assert summary_of(out)["episodes"] == episodes, proc.stdout + proc.stderr
        assert proc.returncode == (1 if episodes == 0 else 0)


def test_a_policy_that_outputs_nan_faults_holds_and_stops(short_run, tmp_path):
    """A policy whose action is NaN: the safety layer holds, the episode ends at once, the run stops (nobody
    to confirm in the sim), exit status 1."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(short_run / "policy.onnx"))
    for init in model.graph.initializer:  # poison the last bias: every action becomes NaN
        values = numpy_helper.to_array(init)
        if values.ndim == 1 and values.dtype == np.float32:
            last = init
    last.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(last), np.nan), last.name))
    nan_policy = tmp_path / "nan.onnx"
    onnx.save(model, str(nan_policy))
    out = tmp_path / "out"
    proc = robot_rl("deploy", f"policy={nan_policy}", *SO101, "episodes=3", f"out={out}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = summary_of(out)
    assert summary["faults"] == 1 and summary["episodes"] == 1 and summary["safety"]["fault_nonfinite"] >= 1
    episode = EpisodeLog(out / "episodes.zarr").episode(0)
    assert len(episode["action"]) == 1 and episode["truncated"][-1]
    assert episode["safety"][0] & int(SafetyAction.FAULT_NONFINITE)
    assert np.isfinite(episode["action"]).all()  # what was executed: a hold, never the NaN


def test_console_activation_waits_for_the_page_to_arm(short_run, tmp_path):
    """activate=console: the loop waits, disarmed, until a page takes control and arms; then it runs."""
    import time

    from websockets.sync.client import connect

    from tests.console_proc import console_process

    out = tmp_path / "out"
    policy = short_run / "policy.onnx"
    with console_process("deploy", f"policy={policy}", *SO101, "episodes=2", "activate=console", f"out={out}") as proc:
        port = int(proc.wait_for(r"\[console\] open http://127\.0\.0\.1:(\d+)/", 120).group(1))
        proc.wait_for(r"starts disarmed", 30)
        time.sleep(1.0)
        assert EpisodeLog(out / "episodes.zarr").num_episodes == 0 and proc.proc.poll() is None  # nothing moved
        with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:
            assert json.loads(ws.recv())["type"] == "hello"
            ws.send(json.dumps({"type": "lease", "robot": "robot", "take": True}))
            ws.send(json.dumps({"type": "arm", "robot": "robot", "on": True}))
            assert proc.finish(120) == 0, proc.output
    assert summary_of(out)["episodes"] == 2
