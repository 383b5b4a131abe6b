"""`robot-rl record-demos teleop=<device>`: a person's demonstrations, driven as a person drives them.

`robot-rl record-demos` runs as a child process. The keyboard is a pseudo-terminal that is the child's stdin
(what a terminal sends while a key is held: the key, repeated); the console is the page's WebSocket
protocol spoken by a `websockets` client; the robot is the in-process simulator, the firmware-in-the-loop
serial rig (robot.port=sim) or a ROS 2 bridge (with the keyboard on the ROS teleop node). The stores are
read back to check what a person did: the held keys' actions on the intervention steps, the arm moving
that way, in real time, the labels, which episodes are kept, and that `robot-rl train demos=` takes them.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_proc import RobotRlProcess, robot_rl

from robot_rl.cli import main as cli_main
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeLabel, EpisodeSource
from robot_rl.envs.realtime import Pacer

pytestmark = pytest.mark.timeout(180)

DOMAIN = 90 + os.getpid() % 10  # own DDS domain (0..101 are safe on Linux; test_ros uses 40..89)
SHORT = ["task.max_steps=60"]  # a forgotten label ends an episode in 6 s, not 10
FORWARD, LEFT, UP = np.array([1, 0, 0, 0], np.float32), np.array([0, 1, 0, 0], np.float32), np.eye(4)[2]


class Recording(RobotRlProcess):
    """`robot-rl record-demos *args` in the background: its output lines as they come; with `tty`, its
    stdin is a pseudo-terminal the test types on."""

    def __init__(self, *args: object, tty: bool = True, env: dict | None = None) -> None:
        self.master = None
        stdin = None
        if tty:
            self.master, stdin = pty.openpty()
        super().__init__("record-demos", *args, stdin=stdin if tty else None, env=env)
        if tty:
            os.close(stdin)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def hold(self, key: bytes, seconds: float) -> None:
        """A held key as a terminal sends it once its key repeat runs: the key every 40 ms."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.type(key)
            time.sleep(0.04)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.master is not None:
            os.close(self.master)

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_store(out: Path) -> tuple[dict, list[dict]]:
    log = EpisodeLog(out / "episodes.zarr")
    return log.episode_meta(), [log.episode(i) for i in range(log.num_episodes)]


def assert_driven(episode: dict, held: np.ndarray, axis: int, min_move: float) -> None:
    """The person held the key for `held`: those steps are interventions executing it (the others hold still:
    zero action, which keeps the gripper; on a hardware robot the safety layer may cut the key's action short
    near the workspace's wall, and says so in data/safety), the hold-still policy proposed zeros throughout, the
    TCP moved along `axis` by more than `min_move` metres, and the steps came at the robot's 10 Hz control rate."""
    action, policy = episode["action"], episode["policy_action"]
    intervention = episode["intervention"].astype(bool)
    assert not policy.any(), "the hold-still policy only ever proposes zeros"
    assert not action[~intervention].any(), "while nobody drives the robot holds still"
    pressed = np.all(action == held, axis=1)
    along = np.all((action * held >= 0) & (np.abs(action) <= np.abs(held)), axis=1)  # the key's way, no further
    driven = pressed | ((episode["safety"] != 0) & along)  # the key's action, or what the safety layer let run
    assert pressed.any() and driven.sum() >= 5 and np.all(intervention[driven]), (pressed, driven, intervention)
    assert np.all(driven | ~action.any(axis=1)), f"only the held key's action or stillness: {action}"
    tcp = np.concatenate([episode["observation/state"][:, axis], episode["next_observation/state"][-1:, axis]])
    assert tcp[-1] - tcp[0] > min_move, tcp
    assert 0.08 < float(np.median(np.diff(episode["timestamp"]))) < 0.2, np.diff(episode["timestamp"])


def test_pacer_ticks_on_a_fixed_grid_and_restarts_after_a_late_step():
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    pacer = Pacer(0.1, clock=lambda: now[0], sleep=sleep)
    pacer.wait()  # the first step runs at once
    now[0] += 0.03  # a step of 30 ms: wait the other 70
    pacer.wait()
    now[0] += 0.25  # a late step (a person paused): no catching up, the grid restarts
    pacer.wait()
    now[0] += 0.01
    pacer.wait()
    pacer.restart()
    pacer.wait()
    assert slept == [0.07, 0.09]
    with pytest.raises(ValueError, match="must be > 0"):
        Pacer(0.0)


def test_pacer_runs_a_step_early_when_woken_and_keeps_the_rate():
    now = [100.0]
    ticks = []

    def woken_after_20_ms(s):  # the console's sleep: a key press arrives 20 ms into the wait
        now[0] += min(s, 0.02)

    pacer = Pacer(0.1, clock=lambda: now[0], sleep=woken_after_20_ms)
    for _ in range(4):
        pacer.wait()
        ticks.append(round(now[0] - 100.0, 6))
    assert ticks == [0.0, 0.02, 0.04, 0.06]  # each woken 20 ms in: the step runs then, not at the tick
    assert pacer._next == pytest.approx(100.4)  # but the schedule still allows one step per period


def test_keyboard_on_the_sim_keeps_the_success_and_drops_the_failure(tmp_path):
    out = tmp_path / "demos"
    with Recording(f"out={out}", "teleop=keyboard", "episodes=1", *SHORT) as rec:
        hint = rec.wait_for(r"teleop=keyboard on robot=mujoco .*label: y success, n failure")
        assert "Ctrl-C" in hint.string
        rec.wait_for(r"episode 1: go")
        rec.type(b"n")  # failure
        rec.wait_for(r"episode 1: dropped \(labelled failure")
        rec.wait_for(r"episode 2: go")
        rec.hold(b"w", 1.2)  # forward
        rec.type(b"y")
        assert rec.finish() == 0, rec.output
        assert re.search(r"episode 2: kept as demo 1/1 \(labelled success, \d+ steps, \d+ driven\)", rec.output)
    meta, episodes = read_store(out)
    assert len(episodes) == 1
    assert meta["source"][0] == EpisodeSource.DEMO and meta["label"][0] == EpisodeLabel.SUCCESS and meta["success"][0]
    assert meta["intervention_steps"][0] == episodes[0]["intervention"].sum() >= 5
    assert_driven(episodes[0], FORWARD, axis=0, min_move=0.05)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recorded"] == 1 and summary["dropped"] == 1 and summary["episodes_finished"] == 2
    assert summary["labels"] == {"success": 1, "failure": 1, "discard": 0, "none": 0}
    assert summary["teleop"] == "keyboard" and summary["keep"] == "success" and not summary["interrupted"]


def test_keep_all_logs_every_label_and_train_copies_the_demos(tmp_path):
    out = tmp_path / "demos"
    with Recording(f"out={out}", "teleop=keyboard", "episodes=3", "keep=all", *SHORT) as rec:
        rec.wait_for(r"episode 1: go")
        rec.type(b"n")  # failure
        rec.wait_for(r"episode 2: go")
        rec.type(b"\x7f")  # Backspace: discard
        rec.wait_for(r"episode 3: go")
        rec.hold(b"w", 1.0)
        rec.type(b"y")
        assert rec.finish() == 0, rec.output
        assert "episode 1: kept as demo 1/3 (labelled failure" in rec.output
        assert "episode 2: kept as demo 2/3 (labelled discard" in rec.output
    meta, episodes = read_store(out)
    labels = [EpisodeLabel.FAILURE, EpisodeLabel.DISCARD, EpisodeLabel.SUCCESS]
    assert list(meta["label"]) == labels and list(meta["success"]) == [False, False, True]
    assert list(meta["source"]) == [EpisodeSource.DEMO] * 3
    assert_driven(episodes[2], FORWARD, axis=0, min_move=0.05)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recorded"] == summary["episodes_in_store"] == 3 and summary["dropped"] == 0

    run = tmp_path / "run"
    proc = robot_rl(
        "train",
        f"demos={out}",
        f"run_dir={run}",
        "steps=30",
        "task.max_steps=15",
        "runtime.learning_starts=10",
        "runtime.eval_every=30",
        "runtime.eval_episodes=1",
        "agent.compile=false",
        "agent.batch_size=16",
        "agent.utd=1",
        "logger.tensorboard=false",
        check=True,
    )
    assert f"copied 3 demo episodes from {out}" in proc.stdout
    assert json.loads((run / "summary.json").read_text())["demo_episodes"] == 3
    train_meta, train_episodes = read_store(run)
    demo = np.flatnonzero(train_meta["source"] == EpisodeSource.DEMO)
    assert list(train_meta["label"][demo]) == labels  # the person's labels travel with the demos
    assert list(train_meta["length"][demo]) == list(meta["length"])
    np.testing.assert_array_equal(train_episodes[demo[2]]["action"], episodes[2]["action"])


def test_console_page_drives_labels_and_ctrl_c_keeps_the_committed_demo(tmp_path):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    out = tmp_path / "demos"
    with Recording(f"out={out}", "teleop=console", "console.port=0", "episodes=3", *SHORT, tty=False) as rec:
        port = int(rec.wait_for(r"\[console\] open http://127\.0\.0\.1:(\d+)/").group(1))
        driving, stop = threading.Event(), threading.Event()
        with connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}") as ws:
            assert json.loads(ws.recv())["type"] == "hello"
            ws.send(json.dumps({"type": "lease", "robot": "robot", "take": True}))

            def page() -> None:  # the page's teleop message every 20 ms while it holds the lease
                seq = 0
                while not stop.is_set():
                    seq += 1
                    message = {"type": "teleop", "robot": "robot", "seq": seq, "active": driving.is_set()}
                    try:
                        ws.send(json.dumps({**message, "action": LEFT.tolist(), "speed": 1.0}))
                    except ConnectionClosed:  # the recording ended
                        return
                    time.sleep(0.02)

            def drain() -> None:
                try:
                    while True:
                        ws.recv()
                except ConnectionClosed:  # the recording ended
                    pass

            sender = threading.Thread(target=page, daemon=True)
            threading.Thread(target=drain, daemon=True).start()
            sender.start()
            try:
                rec.wait_for(r"episode 1: go")
                driving.set()
                time.sleep(1.0)
                driving.clear()
                ws.send(json.dumps({"type": "label", "robot": "robot", "label": "success"}))
                rec.wait_for(r"episode 1: kept as demo 1/3 \(labelled success")
                rec.wait_for(r"episode 2: go")
                driving.set()
                time.sleep(0.5)
                rec.proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of episode 2
                assert rec.finish() == 130, rec.output
            finally:
                stop.set()
                sender.join(5)
        assert "stopped (Ctrl-C): 1 demos kept of 1 episodes" in rec.output
    meta, episodes = read_store(out)
    assert len(episodes) == 1 and meta["label"][0] == EpisodeLabel.SUCCESS  # episode 2 was dropped
    assert_driven(episodes[0], LEFT, axis=1, min_move=0.05)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["recorded"] == 1 and summary["labels"]["success"] == 1


def test_a_robot_that_goes_away_cuts_the_episode_and_the_recording_goes_on(tmp_path, monkeypatch):
    """In process, the keyboard on a pty (teleop.fd): the robot is lost at the 3rd control step (episode 1 ends
    there and, unlabelled, is dropped), the next episode is driven and kept; a robot that never comes back
    ends the recording with its error after MAX_LOSSES tries."""
    from robot_rl.commands import record_demos as command
    from robot_rl.config import compose
    from robot_rl.robots.base import RobotUnavailable
    from robot_rl.robots.mujoco import MujocoRobot

    lines: list[str] = []
    monkeypatch.setattr(command, "log", lambda msg: lines.append(msg))
    original, calls, lose = MujocoRobot.apply_action, [0], [lambda n: n == 3]

    def apply_action(self, *args, **kwargs):
        calls[0] += 1
        if lose[0](calls[0]):
            raise RobotUnavailable("serial link lost (unplugged)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MujocoRobot, "apply_action", apply_action)
    master, slave = pty.openpty()

    def person() -> None:
        deadline = time.monotonic() + 60
        while not any("episode 2: go" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        _hold(master, b"w", 1.0)
        os.write(master, b"y")

    out = tmp_path / "demos"
    overrides = [f"out={out}", "teleop=keyboard", f"+teleop.fd={slave}", "episodes=1", *SHORT]
    try:
        typist = threading.Thread(target=person, daemon=True)
        typist.start()
        summary = command.record_demos(compose("record_demos", overrides))
        typist.join(10)
        text = "\n".join(lines)
        assert "the robot went away at step 2 of episode 1: serial link lost (unplugged)" in text, text
        assert "episode 1: dropped (unlabelled (time limit or reset), the robot went away, 2 steps" in text, text
        assert summary["recorded"] == 1 and summary["dropped"] == 1 and summary["labels"]["success"] == 1
        meta, episodes = read_store(out)
        assert len(episodes) == 1 and meta["label"][0] == EpisodeLabel.SUCCESS
        assert_driven(episodes[0], FORWARD, axis=0, min_move=0.05)

        lose[0] = lambda n: True  # the robot never comes back
        lines.clear()
        with pytest.raises(RobotUnavailable, match="unplugged"):
            command.record_demos(compose("record_demos", overrides))
        assert sum("went away at step 0" in line for line in lines) == command.MAX_LOSSES + 1
        assert len(EpisodeLog(out / "episodes.zarr")) == 1  # the kept demo stays
    finally:
        os.close(master)
        os.close(slave)


def test_keyboard_on_the_serial_rig(tmp_path, fw_binary):
    """robot=serial robot.port=sim: the firmware in the loop, the SO-101 plant; the person raises the gripper."""
    out = tmp_path / "demos"
    with Recording(f"out={out}", "robot=serial", "teleop=keyboard", "episodes=1", *SHORT) as rec:
        rec.wait_for(r"episode 1: go", timeout=120)
        rec.hold(b"r", 1.0)  # raise
        rec.type(b"y")
        assert rec.finish() == 0, rec.output
    meta, episodes = read_store(out)
    assert len(episodes) == 1 and meta["label"][0] == EpisodeLabel.SUCCESS
    assert_driven(episodes[0], UP.astype(np.float32), axis=2, min_move=0.02)


def test_ros_bridge_with_the_keyboard_on_the_teleop_node(tmp_path):
    """robot=ros teleop=ros: the simulated robot behind a robot_bridge process, the person's keyboard on the
    ROS teleop node (its own terminal), record-demos between them over DDS."""
    pytest.importorskip("rclpy")
    from ros_processes import Nodes

    out, namespace = tmp_path / "demos", "/demo_arm"
    nodes = Nodes(DOMAIN, tmp_path)
    master, slave = pty.openpty()
    try:
        nodes.start("bridge", "bridge", "start_armed:=true", namespace=namespace)
        args = [f"robot.namespace={namespace}", "robot.timeout=30", f"teleop.namespace={namespace}"]
        env = {"ROS_DOMAIN_ID": str(DOMAIN)}
        with Recording(f"out={out}", "robot=ros", "teleop=ros", "episodes=1", *args, *SHORT, tty=False, env=env) as rec:
            rec.wait_for(r"waiting for the teleop node on /demo_arm/teleop/command", timeout=60)
            assert not any("episode 1: go" in line for line in rec.lines)  # nobody can drive yet
            nodes.start(
                "teleop", "teleop", "device:=keyboard", f"tty:={os.ttyname(slave)}", f"robot_namespace:={namespace}"
            )
            for episode in range(1, 4):  # on a loaded machine the bridge's stream can hiccup: then drive again
                rec.wait_for(rf"episode {episode}: go", timeout=60)  # (first: once the teleop node is heard from)
                _hold(master, b"a", 1.2)
                if any("went away at step" in line and f"episode {episode}:" in line for line in rec.lines):
                    continue
                os.write(master, b"y")
                if "kept" in rec.wait_for(rf"episode {episode}: (kept|dropped)").group(1):
                    break
            assert rec.finish() == 0, rec.output + "\n" + nodes.log("bridge") + nodes.log("teleop")
    finally:
        nodes.stop_all()
        os.close(master)
        os.close(slave)
    meta, episodes = read_store(out)
    assert len(episodes) == 1 and meta["label"][0] == EpisodeLabel.SUCCESS
    assert_driven(episodes[0], LEFT, axis=1, min_move=0.05)


def _hold(fd: int, key: bytes, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        os.write(fd, key)
        time.sleep(0.04)


@pytest.mark.parametrize(
    "args, message",
    [
        (["robot=ros"], "scripted demos need the simulator: pass teleop=<device> to record demos by hand"),
        (["robot=serial", "robot.port=/dev/ttyUSB9"], "scripted demos need the simulator"),
        (["keep=best"], "keep=best: choose one of success, all"),
        (["teleop=sim_operator"], "teleop=sim_operator is a simulated person"),
        (["teleop=joystick"], "unknown teleop 'joystick': choose one of"),
        (["teleop=keyboard", "teleop.device=wand"], "teleop=wand is no teleop device"),
        (["teleop=keyboard"], "keyboard teleop needs a terminal"),
        (["teleop=gamepad", "teleop.path=/dev/input/js97"], "no gamepad at /dev/input/js97"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # no terminal, even under pytest -s
    out = tmp_path / "demos"
    assert cli_main(["record-demos", f"out={out}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (out / "episodes.zarr").exists()
