"""RosTeleopDevice: a teleop device read from a ROS 2 topic, so the person's device can be plugged into
another machine than the actor (the `teleop` node in ros_ws publishes it, and so does the web console's
`console` node).

Topic `<namespace>/teleop/command` (sensor_msgs/Joy, contract TELEOP): axes = the action (x, y, z,
gripper) in [-1, 1]; buttons = [active (0/1), code]: 0 nothing, 1 success, 2 failure, 3 discard (an
episode label), 4 end the episode now (`END_EPISODE`: truncated, unlabelled; the env then resets the
robot). `header.frame_id` names the sender.

- `read()` returns the newest command while it is fresher than `max_age` seconds, measured on this
  machine's clock from its arrival (not the header stamp, so clock skew between the teleop machine and
  this one cannot make every command stale or fresh); older (the sender stopped or the network
  dropped) reads as idle: zero action, not active. A person never keeps control through a dead link.
- several senders (a SpaceMouse's teleop node and the web console, told apart by `header.frame_id`) do
  not fight: each sender's newest command is kept, and the device is active while any fresh one is
  active (the most recent active command drives). An idle sender never takes control from an active one.
- labels and end-episode are edges: every message that carries one queues it, and each `read()` reports
  one queued label (and any end-episode request), so each is reported once even when several messages
  arrive between reads.
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
END_EPISODE = 4  # buttons[1]: end the episode now (the console's reset)
MAX_SENDERS = 16  # senders remembered (the least recently heard is forgotten first)
MAX_QUEUED = 16  # labels queued between reads (anyone can publish: never unbounded)


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
        self._latest: dict[str, tuple[float, np.ndarray, bool]] = {}  # sender -> (arrival, action, active)
        self._labels: deque[EpisodeLabel] = deque(maxlen=MAX_QUEUED)
        self._end_episode = False
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
        code = int(buttons[1]) if len(buttons) > 1 else 0
        label = LABELS.get(code, EpisodeLabel.NONE)
        sender = str(msg.header.frame_id)[:64]
        with self._lock:
            self._latest.pop(sender, None)  # re-inserted last: the dict stays ordered by arrival
            self._latest[sender] = (time.monotonic(), action, active)
            while len(self._latest) > MAX_SENDERS:
                del self._latest[next(iter(self._latest))]
            if label != EpisodeLabel.NONE:
                self._labels.append(label)
            elif code == END_EPISODE:
                self._end_episode = True
            self.received += 1

    def read(self) -> DeviceCommand:
        now = time.monotonic()
        with self._lock:
            label = self._labels.popleft() if self._labels else EpisodeLabel.NONE
            end, self._end_episode = self._end_episode, False
            driving = [
                (arrival, action)
                for arrival, action, active in self._latest.values()
                if active and now - arrival <= self.max_age
            ]
        if not driving:
            return DeviceCommand(np.zeros(4, np.float32), label=label, end_episode=end)
        return DeviceCommand(max(driving, key=lambda d: d[0])[1].copy(), active=True, label=label, end_episode=end)

    def reset(self) -> None:
        """Drop labels and end-episode requests made before the episode began."""
        with self._lock:
            self._labels.clear()
            self._end_episode = False

    def close(self) -> None:
        self._ros.close()
