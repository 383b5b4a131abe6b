"""RosTeleopDevice: a teleop device read from a ROS 2 topic, so the person's device can be plugged into
another machine than the actor (the `teleop` node in ros_ws publishes it).

Topic `<namespace>/teleop/command` (sensor_msgs/Joy, contract TELEOP): axes = the action (x, y, z,
gripper) in [-1, 1]; buttons = [active (0/1), label (0 none, 1 success, 2 failure, 3 discard)].

- `read()` returns the newest command while it is fresher than `max_age` seconds, measured on this
  machine's clock from its arrival (not the header stamp, so clock skew between the teleop machine and
  this one cannot make every command stale or fresh); older (the teleop node stopped or the network
  dropped) reads as idle: zero action, not active. A person never keeps control through a dead link.
- labels are edges: every message that carries one queues it, and each `read()` reports one queued
  label, so a label is reported once even when several messages arrive between reads.
rclpy is imported lazily; the node spins in its own context and thread (like RosRobot).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from robot_rl.data.schema import EpisodeLabel
from robot_rl.ros import contract
from robot_rl.teleop.device import DeviceCommand, TeleopDevice

LABELS = {int(label): label for label in EpisodeLabel}


class RosTeleopDevice(TeleopDevice):
    """Teleop commands from `<namespace>/teleop/command` (see the module docstring)."""

    def __init__(
        self,
        namespace: str = contract.DEFAULT_ROBOT_NAMESPACE,
        max_age: float = 0.25,
        node_name: str = "robot_rl_teleop_client",
    ) -> None:
        """`namespace`: the robot's namespace the teleop node publishes in; `max_age`: s, the oldest
        command `read()` still acts on."""
        contract.require_rclpy()
        from sensor_msgs.msg import Joy

        from robot_rl.ros.node import BackgroundNode

        if not max_age > 0:
            raise ValueError(f"ros teleop max_age={max_age}: must be > 0 seconds")
        self.namespace = namespace
        self.max_age = float(max_age)
        self.topic = contract.join(namespace, contract.TELEOP.name)
        self._lock = threading.Lock()
        self._latest: tuple[float, np.ndarray, bool] | None = None  # (arrival, action, active)
        self._labels: deque[EpisodeLabel] = deque()
        self.received = 0
        self._ros = BackgroundNode(node_name)
        self.node = self._ros.node
        self.node.create_subscription(Joy, self.topic, self._on_command, contract.qos(contract.TELEOP.qos))

    def _on_command(self, msg) -> None:
        action = np.zeros(4, np.float32)
        axes = np.clip(np.nan_to_num(np.asarray(msg.axes[:4], np.float32)), -1.0, 1.0)
        action[: len(axes)] = axes
        buttons = list(msg.buttons)
        active = bool(buttons[0]) if buttons else False
        label = LABELS.get(int(buttons[1]), EpisodeLabel.NONE) if len(buttons) > 1 else EpisodeLabel.NONE
        with self._lock:
            self._latest = (time.monotonic(), action, active)
            if label != EpisodeLabel.NONE:
                self._labels.append(label)
            self.received += 1

    def read(self) -> DeviceCommand:
        with self._lock:
            latest = self._latest
            label = self._labels.popleft() if self._labels else EpisodeLabel.NONE
        if latest is None or time.monotonic() - latest[0] > self.max_age or not latest[2]:
            return DeviceCommand(np.zeros(4, np.float32), label=label)
        return DeviceCommand(latest[1].copy(), active=True, label=label)

    def reset(self) -> None:
        """Drop labels pressed before the episode began."""
        with self._lock:
            self._labels.clear()

    def close(self) -> None:
        self._ros.close()
