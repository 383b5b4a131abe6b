"""The teleop and reward_classifier nodes as real processes over real DDS: the keyboard through a
pseudo-terminal into Joy messages and RosTeleopDevice (staleness, label edges, terminal restored);
the classifier node scoring a sim bridge's camera frames exactly as SuccessClassifier does in this
process; one-line errors with exit status 2 for a missing classifier or device.

Every process of this module runs in its own ROS domain (ROS_DOMAIN_ID from the pid); the process
harness is tests/ros_processes.py.
"""

from __future__ import annotations

import math
import os
import pty
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_processes import Nodes, Probe, ros_session  # noqa: E402

from robot_rl.data.schema import EpisodeLabel  # noqa: E402
from robot_rl.ros import contract  # noqa: E402

DOMAIN = 100 + os.getpid() % 100  # this module's own DDS domain (tests/test_ros.py uses 40..89)
NS = "/robot"
TINY = dict(channels=8, strides=[2, 2], spatial_features=2, bottleneck=16)


@pytest.fixture
def ros(tmp_path, monkeypatch):
    """Node processes and a recording probe in this module's domain (tests/ros_processes.py)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the node processes (two CPUs, benchmarks beside us)
    with ros_session(DOMAIN, tmp_path, Recorder) as session:
        yield session


class Recorder(Probe):
    """The probe, also recording every message of typed topics with its arrival time."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id)
        self.lock = threading.Lock()
        self.messages: dict[str, list[tuple[float, object]]] = {}

    def record(self, msg_type, topic: str, qos) -> None:
        self.messages[topic] = []

        def on_message(msg, topic=topic):
            with self.lock:
                self.messages[topic].append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, on_message, qos)

    def got(self, topic: str) -> list[tuple[float, object]]:
        with self.lock:
            return list(self.messages[topic])


def stop(nodes: Nodes, name: str) -> int:
    """SIGINT (a node's clean shutdown); its exit status."""
    nodes.kill(name, signal.SIGINT)
    return nodes.procs[name].returncode


def wait_for(condition, timeout: float, what: str, nodes: Nodes) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for name, proc in nodes.procs.items():
            assert proc.poll() is None, f"{what}: node {name} exited ({proc.returncode}):\n{nodes.log(name)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "\n".join(map(nodes.log, nodes.procs))
        time.sleep(0.005)


def run_to_exit(nodes: Nodes, module: str, *params: str) -> tuple[int | None, str]:
    """Start a node that should fail; its exit status and output."""
    proc = nodes.start(module, module, *params)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        pass  # still running: the fixture stops it, and the status None fails the test
    return proc.poll(), nodes.log(module)


# ------------------------------------------------------------------------------------------ teleop


def test_keyboard_teleop_node_to_ros_teleop_device(ros):
    from sensor_msgs.msg import Joy

    from robot_rl.teleop.devices import make_device

    nodes, probe = ros
    topic = contract.join(NS, contract.TELEOP.name)
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    device = None
    typing = threading.Event()

    def hold_key() -> None:  # what a terminal's key repeat sends while "w" is held
        while typing.is_set():
            os.write(master, b"w")
            time.sleep(0.02)

    try:
        probe.record(Joy, topic, contract.qos("command"))
        device = make_device("ros", namespace=NS, max_age=0.25)
        nodes.start(
            "teleop",
            "teleop",
            "device:=keyboard",
            f"tty:={os.ttyname(slave)}",
            "rate_hz:=20.0",
            "overrides:=['teleop.speed=0.5']",
            f"robot_namespace:={NS}",
        )
        wait_for(lambda: probe.got(topic) and device.received, 30, "the teleop node's first Joy", nodes)
        _, first = probe.got(topic)[-1]
        assert list(first.axes) == [0, 0, 0, 0] and list(first.buttons) == [0, 0]  # nobody typed: idle
        assert device.read().active is False
        assert not termios.tcgetattr(slave)[3] & termios.ECHO  # the node put its terminal in cbreak mode

        # hold "w": the Joy stream and the device carry TCP +x at the configured speed, active
        typing.set()
        writer = threading.Thread(target=hold_key, daemon=True)
        writer.start()
        wait_for(lambda: any(m.axes[0] == 0.5 for _, m in probe.got(topic)), 10, "a +x command", nodes)
        deadline = time.monotonic() + 5.0
        while (cmd := device.read()).action[0] != 0.5:
            assert time.monotonic() < deadline, "RosTeleopDevice never read the +x command"
            time.sleep(0.002)
        typing.clear()
        writer.join()
        np.testing.assert_allclose(cmd.action, [0.5, 0, 0, 0])
        assert cmd.active and cmd.action.dtype == np.float32
        moving = [m for _, m in probe.got(topic) if m.axes[0] != 0]
        assert all(list(m.axes) == [0.5, 0, 0, 0] and list(m.buttons) == [1, 0] for m in moving)
        assert abs(moving[-1].header.stamp.sec + moving[-1].header.stamp.nanosec * 1e-9 - time.time()) < 10  # now

        # one "y" press: one Joy carries SUCCESS, and the device reports it once
        seen = len(probe.got(topic))
        device.reset()
        os.write(master, b"y")
        labels = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            labels.append(device.read().label)
            time.sleep(0.005)
        assert labels.count(EpisodeLabel.SUCCESS) == 1 and set(labels) <= {EpisodeLabel.NONE, EpisodeLabel.SUCCESS}
        assert [m.buttons[1] for _, m in probe.got(topic)[seen:] if m.buttons[1]] == [1]

        # Space latches control (active, still); then the node stops: the device goes idle after max_age
        os.write(master, b" ")
        wait_for(lambda: device.read().active, 5, "the latched command", nodes)
        node = nodes.procs["teleop"]
        node.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10.0
        while device.read().active:
            assert time.monotonic() < deadline, "RosTeleopDevice stayed active after its commands stopped"
            time.sleep(0.002)
        idle = time.monotonic()
        assert node.wait(10) == 0, nodes.log("teleop")
        idle_after = idle - probe.got(topic)[-1][0]  # since the last command arrived
        assert 0.2 <= idle_after <= 0.25 + 0.3, idle_after
        cmd = device.read()
        assert not cmd.active and not cmd.action.any()
        assert termios.tcgetattr(slave) == before  # the node restored the terminal on shutdown
    finally:
        typing.clear()
        nodes.stop_all()
        if device is not None:
            device.close()
        os.close(master)
        os.close(slave)


def test_teleop_node_missing_device_is_one_line(ros, tmp_path):
    code, out = run_to_exit(ros[0], "teleop", "device:=gamepad", f"overrides:=['teleop.path={tmp_path}/js0']")
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "] error: no gamepad at" in lines[0], (code, out)


# ------------------------------------------------------------------------------ reward classifier


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory) -> Path:
    """An untrained tiny classifier on 64x64 front and wrist frames (plumbing, not accuracy); its last
    layer is scaled up so that different frames give clearly different probabilities."""
    import torch

    from robot_rl.agents.encoders import EncoderConfig
    from robot_rl.reward.model import SuccessClassifier

    torch.manual_seed(0)
    model = SuccessClassifier(
        {"image/front": (64, 64, 3), "image/wrist": (64, 64, 3)}, EncoderConfig(**TINY), hidden=16
    )
    with torch.no_grad():
        model.head[-1].weight.mul_(20.0)
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    model.save(path)
    return path


def test_reward_classifier_node_scores_bridge_frames(gl, ros, classifier_file):
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32

    from robot_rl.reward.model import SuccessClassifier
    from robot_rl.ros.frames import image_to_array, stamp_seconds

    nodes, probe = ros
    classifier = SuccessClassifier.load(classifier_file)
    topics = {key: contract.join(NS, key) for key in classifier.image_keys}  # image/front -> /robot/image/front
    out = contract.join(NS, contract.SUCCESS_PROBABILITY.name)
    sensor = contract.qos("sensor", reliable_sensors=True)  # every frame, so that every score can be checked
    for topic in topics.values():
        probe.record(Image, topic, sensor)
    probe.record(Float32, out, contract.qos("command"))
    nodes.start(
        "bridge",
        "bridge",
        "mode:=free",
        "reliable_sensors:=true",
        "overrides:=['task=pick_cube_vision','task.image_size=[64,64]']",
        namespace=NS,
    )
    wait_for(lambda: all(probe.got(t) for t in topics.values()), 60, "the bridge's camera frames", nodes)
    # the node starts once this process receives frames, so it scores no frame this process misses
    nodes.start(
        "reward_classifier",
        "reward_classifier",
        f"classifier:={classifier_file}",
        f"robot_namespace:={NS}",
        "reliable_sensors:=true",
    )
    wait_for(lambda: len(probe.got(out)) >= 3, 60, "success probabilities", nodes)
    for _ in range(2):  # new cube positions: new frames, new probabilities
        assert probe.trigger(contract.join(NS, contract.RESET.name)).success
        n = len(probe.got(out))
        wait_for(
            lambda: len(probe.got(out)) >= n + 3,  # noqa: B023 (waited for here)
            10,
            "probabilities after a reset",
            nodes,
        )
    for name in ("reward_classifier", "bridge"):
        assert stop(nodes, name) == 0, nodes.log(name)

    frames: dict[float, dict[str, np.ndarray]] = {}
    for key, topic in topics.items():
        for _, msg in probe.got(topic):
            frames.setdefault(stamp_seconds(msg.header.stamp), {})[key] = image_to_array(msg).copy()
    complete = [f for _, f in sorted(frames.items()) if len(f) == len(topics)]
    expected = classifier.probabilities({k: np.stack([f[k] for f in complete]) for k in classifier.image_keys})
    published = np.array([m.data for _, m in probe.got(out)], np.float64)
    assert len(published) >= 9 and all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in published)
    # each published probability is the classifier's on a frame set this process received, in stamp order
    index = 0
    for p in published:
        while index < len(expected) and abs(expected[index] - p) > 1e-5:
            index += 1
        assert index < len(expected), f"published {p} is not the classifier's probability of any later frame set"
    assert np.ptp(published) > 1e-3  # the scene changed, and so did the score


def test_reward_classifier_missing_file_is_one_line(ros, tmp_path):
    code, out = run_to_exit(ros[0], "reward_classifier", f"classifier:={tmp_path}/none/classifier.pt")
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "] error: no success classifier at" in lines[0], (code, out)
