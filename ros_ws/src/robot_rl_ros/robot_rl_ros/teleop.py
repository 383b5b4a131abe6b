"""teleop: a person's teleop device on the ROS 2 contract (robot_rl/ros/contract.py, TELEOP).

Reads the device `rate_hz` times a second and publishes sensor_msgs/Joy on
`<robot_namespace>/teleop/command` (header stamp = now, frame_id = this node's name; axes = the action
x, y, z, gripper in [-1, 1]; buttons = [active, label]). The actor reads it with `teleop=ros`
(robot_rl.teleop.ros.RosTeleopDevice), possibly on another machine. A missing or lost device ends the
node with a one-line error (status 2).

Parameters: device (spacemouse | gamepad | keyboard, with its configs/teleop/<device>.yaml), overrides
(hydra, e.g. ['teleop.speed=0.5']), robot_namespace (default /robot), rate_hz (default 20), tty (the
keyboard's terminal device, e.g. /dev/pts/3; default: this process's stdin).
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf
from rclpy.node import Node

from robot_rl.ros import contract
from robot_rl_ros.common import run_node, string_list

NODE_DEVICES = ("spacemouse", "gamepad", "keyboard")  # "ros" would republish itself; sim_operator needs the sim


def open_device(device: str, overrides: list[str], tty: str):
    """The teleop device `device` with its config group and `overrides`; the keyboard reads `tty`."""
    from robot_rl.config import compose
    from robot_rl.teleop.devices import make_device

    if device not in NODE_DEVICES:
        raise ValueError(f"teleop device={device!r}: choose one of {', '.join(NODE_DEVICES)}")
    cfg = OmegaConf.to_container(compose("train", [f"teleop={device}", *overrides]).teleop, resolve=True)
    cfg.pop("device", None)
    fd = None
    if tty:
        if device != "keyboard":
            raise ValueError(f"teleop tty={tty!r} is for the keyboard only (device={device})")
        try:
            fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
        except OSError as err:
            raise ValueError(f"cannot open the keyboard's terminal {tty}: {err.strerror}") from None
        cfg["fd"] = fd
    try:
        return make_device(device, **cfg), fd
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


class Teleop(Node):
    def __init__(self) -> None:
        super().__init__("teleop")
        from sensor_msgs.msg import Joy

        self.Joy = Joy
        self.device = self.fd = None
        name = str(self.declare_parameter("device", "keyboard").value)
        namespace = str(self.declare_parameter("robot_namespace", contract.DEFAULT_ROBOT_NAMESPACE).value)
        rate = float(self.declare_parameter("rate_hz", 20.0).value)
        tty = str(self.declare_parameter("tty", "").value)
        if not rate > 0:
            raise ValueError(f"teleop rate_hz={rate}: must be > 0")
        self.device, self.fd = open_device(name, string_list(self, "overrides"), tty)
        self.topic = contract.join(namespace, contract.TELEOP.name)
        self.sender = self.get_fully_qualified_name()
        self.pub = self.create_publisher(Joy, self.topic, contract.qos(contract.TELEOP.qos))
        self.create_timer(1.0 / rate, self.tick)
        self.get_logger().info(f"{name} -> {self.topic} at {rate:g} Hz")

    def tick(self) -> None:
        command = self.device.read()  # a DeviceError (the device is gone) ends the node in run_node
        msg = self.Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.sender  # several senders (this node, the console) do not fight
        msg.axes = [float(a) for a in command.action]
        msg.buttons = [int(bool(command.active)), int(command.label)]
        self.pub.publish(msg)

    def shutdown(self) -> None:
        if self.device is not None:
            self.device.close()
        if self.fd is not None:
            os.close(self.fd)


def main(args: list[str] | None = None) -> None:
    run_node(Teleop, args)


if __name__ == "__main__":
    main()
