"""SerialRobot through the real firmware: the host build behind its pseudo-terminal, driven with pyserial,
its servo bus answered by the MuJoCo plant of the SO-101 (the simulated rig, robot.port=sim).

Watchdog, e-stop latch and limits are checked against the plant's ground truth (the joints themselves),
not only against what the firmware reports; unplug/replug runs inside a real training run."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from robot_rl.cli import main as cli_main
from robot_rl.config import UserError, compose
from robot_rl.hardware import protocol as P
from robot_rl.hardware.calibration import load_calibration
from robot_rl.hardware.firmware import CommandRefused
from robot_rl.robots.base import RobotUnavailable
from robot_rl.robots.serial import SerialRobot

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def robot():
    robot = SerialRobot(port="sim")
    try:
        robot.reset()
        yield robot
    finally:
        robot.close()


@pytest.fixture
def slow_robot():
    robot = SerialRobot(port="sim", joint_speed=0.5)  # slow joints: a motion outlasts the watchdog period
    try:
        robot.reset()
        yield robot
    finally:
        robot.close()


def settle(robot: SerialRobot, seconds: float):
    """Read the state for `seconds` (heartbeats keep the watchdog fed while the arm gets there)."""
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        state = robot.read_state()
        time.sleep(0.02)
    return state


def truth(robot: SerialRobot) -> np.ndarray:
    """The plant's joint angles (ground truth), arm joints in order."""
    angles = robot.rig.plant.joint_positions()
    return np.array([angles[name] for name in robot.arm.arm_joints])


def test_tracks_tcp_deltas_and_reports_the_plant(robot) -> None:
    start = robot.read_state().tcp_pos
    for _ in range(5):
        robot.apply_action(np.array([0.01, 0.0, 0.0]), -1.0)
    state = settle(robot, 0.5)
    assert np.allclose(state.tcp_pos, start + [0.05, 0.0, 0.0], atol=0.004)
    q_true = truth(robot)
    assert np.allclose(state.joint_pos, q_true, atol=0.01)  # the calibration maps servo ticks to model angles
    assert robot.object_pos("cube")[2] == pytest.approx(0.0125, abs=0.003)
    image = robot.render("front", 64, 80)
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8 and image.std() > 1
    assert 0.0 <= robot.frame_age_s() < 1.0
    stats = robot.link.stats.summary()
    assert stats["bad_frames"] == 0 and stats["rtt_n"] > 50


def test_watchdog_stops_the_arm_within_one_period(slow_robot) -> None:
    robot = slow_robot
    fw = robot.firmware
    q = np.array([j.pos for j in fw.heartbeat().joints])
    before = truth(robot)[0]
    target = q.copy()
    target[0] += 0.19  # 0.38 s of motion at 0.5 rad/s, within one step
    fw.command(target)
    last = time.monotonic()
    fw.drain_faults()
    trip = None
    while trip is None and time.monotonic() - last < 1.0:
        robot.link.poll(0.002)
        trip = next((f for f in robot.link.drain_faults() if f.code == P.Fault.WATCHDOG), None)
    seen = time.monotonic() - last
    assert trip is not None, "no watchdog report within 1 s of silence"
    assert trip.detail <= 100  # the firmware's own clock: within one period
    assert seen <= 0.100 + 0.03  # as the host saw it (pty and scheduling included)
    at_trip = truth(robot)[0]
    time.sleep(0.3)
    held = truth(robot)[0]
    assert abs(held - at_trip) < 0.01  # the arm stopped at the trip...
    assert 0.0 < abs(held - before) < 0.1  # ...well short of the target it was moving to
    state = fw.heartbeat()
    assert state.mode == P.Mode.ARMED and state.flags & P.FLAG_TORQUE
    assert fw.counters()["watchdog_trips"] >= 1
    robot.apply_action(np.zeros(3), -1.0)  # the next command resumes from where it held


def test_watchdog_torque_off_disarms() -> None:
    robot = SerialRobot(port="sim", stop_action="torque_off")
    try:
        robot.reset()
        robot.apply_action(np.zeros(3), -1.0)
        time.sleep(0.25)  # silence: more than one watchdog period
        state = robot.firmware.heartbeat()
        assert state.mode == P.Mode.DISARMED and not state.flags & P.FLAG_TORQUE
        assert not any(s["torque"] for s in robot.rig.plant.servos())
        with pytest.raises(RobotUnavailable, match="disarmed"):
            robot.apply_action(np.zeros(3), -1.0)
        robot.reset()  # re-arms from where the arm is
        assert robot.firmware.heartbeat().mode == P.Mode.ARMED
    finally:
        robot.close()


def test_estop_latches_until_cleared_after_release(robot) -> None:
    rig, fw = robot.rig, robot.firmware
    rig.press_estop(True)
    time.sleep(0.05)
    with pytest.raises(RobotUnavailable, match="e-stop latched"):
        robot.apply_action(np.zeros(3), -1.0)
    assert not any(s["torque"] for s in rig.plant.servos())  # torque off at once
    with pytest.raises(CommandRefused):
        fw.arm()
    with pytest.raises(CommandRefused, match="still pressed"):
        fw.clear()
    rig.press_estop(False)
    time.sleep(0.05)
    state = fw.heartbeat()
    assert state.mode == P.Mode.ESTOP  # released is not cleared
    with pytest.raises(RobotUnavailable, match="clear=true"):
        robot.reset()  # the robot never clears its own e-stop
    rejected = fw.command(np.array([j.pos for j in state.joints]))
    assert rejected.flags & P.FLAG_REJECTED
    fw.clear()
    assert fw.heartbeat().mode == P.Mode.DISARMED  # cleared leaves it disarmed
    robot.reset()  # arms again and moves
    assert fw.heartbeat().mode == P.Mode.ARMED
    fw.estop()  # the command latches it too
    assert fw.heartbeat().mode == P.Mode.ESTOP
    assert fw.counters()["estops"] == 2


def test_limits_hold_whatever_the_host_sends(robot) -> None:
    fw, cal = robot.firmware, robot.calibration
    low = np.array([j.pos_min for j in cal.joints])
    high = np.array([j.pos_max for j in cal.joints])
    q0 = np.array([j.pos for j in fw.heartbeat().joints])
    for bad in (math.nan, math.inf, -math.inf):
        target = q0.copy()
        target[2] = bad
        assert fw.command(target).flags & P.FLAG_REJECTED
    assert fw.command(q0[:3]).flags & P.FLAG_REJECTED  # wrong joint count
    time.sleep(0.1)
    assert np.allclose(truth(robot), q0[:-1], atol=0.02)  # nothing moved
    samples = []
    for huge in (1e9, -1e9, 50.0):
        target = np.full(6, huge)
        t_end = time.monotonic() + 0.6
        while time.monotonic() < t_end:
            state = fw.command(target)
            assert state.flags & P.FLAG_CLAMPED
            samples.append((time.monotonic(), truth(robot)))
            time.sleep(0.01)
    q = np.array([s for _, s in samples])
    assert np.all(q >= low[:-1] - 0.03) and np.all(q <= high[:-1] + 0.03)
    dt = np.diff([t for t, _ in samples])
    speed = np.abs(np.diff(q, axis=0)) / dt[:, None]
    assert np.percentile(speed, 95) <= robot.joint_speed * 1.3  # enforced by the firmware
    counters = fw.counters()
    assert counters["rejected_commands"] >= 4 and counters["clamped_targets"] > 0


def test_unplug_and_replug_mid_episode_while_training(tmp_path, monkeypatch) -> None:
    from robot_rl.runtime.embedded import train

    calls = {"n": 0}
    original = SerialRobot.apply_action

    def apply_action(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 60:  # online, mid-episode: pull the plug, put it back 1.5 s later
            self.rig.unplug(True)
            threading.Timer(1.5, self.rig.unplug, (False,)).start()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SerialRobot, "apply_action", apply_action)
    run_dir = tmp_path / "run"
    cfg = compose(
        "train",
        [
            "robot=serial",
            "steps=120",
            "num_demos=2",
            f"run_dir={run_dir}",
            "runtime.eval_every=120",
            "runtime.eval_episodes=2",
            "runtime.learning_starts=32",
            "runtime.checkpoint_every=60",
            "agent.utd=1",
            "logger.tensorboard=false",
        ],
    )
    summary = train(cfg)
    assert calls["n"] > 60
    assert summary["robot_losses"] >= 1
    assert summary["env_steps"] == 120 and summary["final_eval"]["episodes"] == 2
    from robot_rl.data.episode_log import EpisodeLog
    from robot_rl.data.log_check import check_log

    assert check_log(run_dir / "episodes.zarr")["ok"]
    log = EpisodeLog(run_dir / "episodes.zarr")
    meta = log.episode_meta()
    lengths = np.asarray(meta["length"])
    online = np.asarray(meta["source"]) == 1
    assert lengths[online].sum() == 120  # every executed step of every episode is in the log, the cut one too
    assert SerialRobot._open == {}  # closed with the run


def test_calibrate_finds_the_rig_calibration_and_the_robot_uses_it(tmp_path, capsys) -> None:
    out = tmp_path / "so101-bench.json"
    assert cli_main(["calibrate", "robot.port=sim", "robot.id=bench", f"out={out}"]) == 0
    cal = load_calibration(
        out, "so101", ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
    )
    robot = SerialRobot(port="sim", calibration=str(out))  # the same rig seed: the same hidden calibration
    try:
        truth_cal = robot.rig.true_calibration()
        for joint, (servo_id, offset, direction) in zip(cal.joints, truth_cal, strict=True):
            assert joint.servo_id == servo_id and joint.direction == direction
            assert abs(joint.offset_ticks - offset) <= 2
        robot.reset(np.array([0.2, 0.05, 0.06]))
        assert np.allclose(settle(robot, 0.3).tcp_pos, [0.2, 0.05, 0.06], atol=0.004)
    finally:
        robot.close()


def test_check_hardware_reports_and_exits_zero(capsys) -> None:
    assert cli_main(["check-hardware", "robot.port=sim", "samples=50"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["firmware"]["protocol"] == P.PROTOCOL_VERSION and report["firmware"]["servos"] == 6
    assert report["mode"] == "disarmed" and not report["estop_input"]
    assert report["rate_hz"]["achieved"] > 80 and report["round_trip_ms"]["p50"] < 5


def test_bad_ports_and_calibrations_are_one_line_errors(tmp_path, capsys) -> None:
    with pytest.raises(UserError, match=r"robot-rl calibrate robot=serial"):
        SerialRobot(port="/dev/ttyUSB97", calibration=str(tmp_path / "missing.json"))
    cal = tmp_path / "cal.json"
    cal.write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        SerialRobot(port="/dev/ttyUSB97", calibration=str(cal))
    good = tmp_path / "good.json"
    assert cli_main(["calibrate", "robot.port=sim", f"out={good}"]) == 0
    assert cli_main(["check-hardware", "robot.port=/dev/ttyUSB97"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/dev/ttyUSB97" in err[0] and "plugged in" in err[0]
    with pytest.raises(UserError, match="/dev/ttyUSB97"):
        SerialRobot(port="/dev/ttyUSB97", calibration=str(good))
    with pytest.raises(UserError, match="arm 'panda'|not 'panda'"):
        load_calibration(good, "panda", ("a",))


def test_a_bench_arm_takes_images_from_its_cameras(tmp_path) -> None:
    """A serial port that is not the rig (here the rig's firmware, addressed by its port path as a bench
    arm is): images come from OpenCV cameras (a video file stands in for the USB camera), their age is
    logged with each step, and a task that needs object poses names what is missing."""
    import cv2

    from robot_rl.envs.robot_env import RobotEnv
    from robot_rl.robots.kinematics import ArmKinematics
    from robot_rl.robots.serial import rig_calibration, sim_rig
    from robot_rl.tasks import make_task

    video = tmp_path / "front.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(60):
        writer.write(np.full((120, 160, 3), (i * 4) % 255, np.uint8))
    writer.release()
    with sim_rig("so101") as rig:
        path = rig_calibration(ArmKinematics("so101"), rig).save(tmp_path / "cal.json")  # as calibrate writes it
        robot = SerialRobot(
            port=str(rig.link_path),
            calibration=str(path),
            render_size=(48, 64),
            cameras={"front": {"source": str(video)}, "wrist": {"source": str(video)}},
        )
        try:
            assert not hasattr(robot, "object_pos")  # no tracker on a bench
            with pytest.raises(UserError, match="object_pos"):
                RobotEnv(robot, make_task("pick_cube")).reset()
            image = robot.render("wrist", 48, 64)
            assert image.shape == (48, 64, 3)
            robot.reset()
            robot.apply_action(np.zeros(3), -1.0)
            robot.render("front", 48, 64)
            robot.render("wrist", 48, 64)
            assert 0.0 <= robot.frame_age_s() < 0.25
            with pytest.raises(ValueError, match="render_size"):
                robot.render("front", 32, 32)
        finally:
            robot.close()
