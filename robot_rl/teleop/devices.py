"""Teleop devices by name: make_device("spacemouse" | "gamepad" | "keyboard" | "ros", **cfg)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from robot_rl.teleop.common import DeviceError
from robot_rl.teleop.device import TeleopDevice
from robot_rl.teleop.gamepad import Gamepad
from robot_rl.teleop.keyboard import Keyboard
from robot_rl.teleop.ros import RosTeleopDevice
from robot_rl.teleop.spacemouse import SpaceMouse

# name -> factory(**cfg) returning an open device; add entries with register_device()
DEVICES: dict[str, Callable[..., TeleopDevice]] = {
    "spacemouse": SpaceMouse,
    "gamepad": Gamepad,
    "keyboard": Keyboard,
    "ros": RosTeleopDevice,  # commands from the teleop node over ROS 2 (rclpy imported when opened)
}

__all__ = ["DEVICES", "DeviceError", "make_device", "register_device"]


def register_device(name: str, factory: Callable[..., TeleopDevice]) -> None:
    """Make `factory(**cfg)` available as make_device(name, **cfg)."""
    DEVICES[name] = factory


def make_device(name: str, **cfg) -> TeleopDevice:
    """Open the teleop device `name` with its config keys (the factory's keyword arguments).

    Unknown names and unknown config keys raise ValueError naming the choices; a missing device
    raises DeviceError (a ValueError) naming the device and the fix.
    """
    if name not in DEVICES:
        raise ValueError(f"unknown teleop device {name!r}; choose one of: {', '.join(sorted(DEVICES))}")
    factory = DEVICES[name]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a factory without an inspectable signature: let it check its own keys
        signature = None
    if signature is not None:
        try:
            signature.bind(**cfg)
        except TypeError as e:
            keys = [
                p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            raise ValueError(f"bad config for teleop device {name!r} ({e}); its keys: {', '.join(keys)}") from None
    return factory(**cfg)
