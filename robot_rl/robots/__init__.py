"""Robot registry: `make_robot(name, **cfg)` (implementations are imported when built: mujoco loads
MuJoCo, serial pyserial, ros rclpy)."""

from __future__ import annotations

from robot_rl.robots.base import Robot

ROBOTS = ("mujoco", "serial", "ros")
SIM_ROBOTS = ("mujoco",)  # the in-process simulator


def is_simulated(robot_cfg) -> bool:
    """Whether a `robot` config drives no real arm: the in-process sim, or the serial arm's firmware-in-the-loop
    rig (`port: sim`). A ROS bridge may be either: it counts as real."""
    name = robot_cfg.get("name", "mujoco")
    return name in SIM_ROBOTS or (name == "serial" and str(robot_cfg.get("port")) == "sim")


def make_robot(name: str, **cfg) -> Robot:
    """The robot `name`: "mujoco" (MujocoRobot, the in-process sim), "serial" (SerialRobot, our firmware
    over a serial port; the envs of one process share the robot on a port) or "ros" (RosRobot, a client of
    a robot bridge over ROS 2), built with keyword config `cfg`."""
    if name == "mujoco":
        from robot_rl.robots.mujoco import MujocoRobot

        return MujocoRobot(**cfg)
    if name == "serial":
        from robot_rl.robots.serial import SerialRobot

        return SerialRobot.shared(**cfg)
    if name == "ros":
        from robot_rl.robots.ros import RosRobot

        return RosRobot(**cfg)
    raise ValueError(f"unknown robot {name!r}; known robots: {', '.join(ROBOTS)}")


__all__ = ["Robot", "ROBOTS", "SIM_ROBOTS", "is_simulated", "make_robot"]
