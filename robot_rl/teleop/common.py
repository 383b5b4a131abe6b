"""Pieces shared by the hardware teleop drivers: the device error, deadzones, operator frame, actions."""

from __future__ import annotations

import math

import numpy as np


class DeviceError(ValueError):
    """A teleop device is missing, unreadable or gone; the message names the device and the fix."""


def apply_deadzone(values: np.ndarray, deadzone: float) -> np.ndarray:
    """Zero |v| <= deadzone and rescale the rest so the output still runs continuously from 0 to ±1."""
    v = np.clip(np.asarray(values, np.float64), -1.0, 1.0)
    if deadzone <= 0.0:
        return v
    mag = np.maximum(np.abs(v) - deadzone, 0.0) / (1.0 - deadzone)
    return np.sign(v) * mag


def operator_to_base(motion: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Rotate (forward, left, up) in the operator's frame into the robot base frame (x, y, z).

    `yaw_deg` is the direction the operator faces, measured from the base +x axis about +z: 0 when
    standing behind the robot looking along +x, 180 when facing the robot from the front.
    """
    m = np.asarray(motion, np.float64)
    if yaw_deg == 0.0:
        return m.copy()
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([c * m[0] - s * m[1], s * m[0] + c * m[1], m[2]])


def make_action(motion: np.ndarray, gripper: float) -> np.ndarray:
    """float32[4] in [-1, 1]: TCP delta (x, y, z) and the gripper command."""
    action = np.zeros(4, np.float32)
    action[:3] = np.clip(motion, -1.0, 1.0)
    action[3] = np.clip(gripper, -1.0, 1.0)
    return action


def gripper_command(close: bool, open_: bool) -> float:
    """+1 close, -1 open, 0 keep (also when both are asked for)."""
    return float(close) - float(open_)
