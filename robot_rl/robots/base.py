"""The Robot interface shared by the MuJoCo, serial and ROS robots."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class RobotUnavailable(RuntimeError):
    """The robot cannot be commanded now (no bridge or link, disarmed, e-stopped, faulted); the message
    says why and what to do."""


@dataclass
class RobotState:
    """Proprioception read once per control step (SI units, base frame)."""

    tcp_pos: np.ndarray  # float64[3], metres
    tcp_vel: np.ndarray  # float64[3], m/s
    gripper_opening: float  # metres between the finger pads
    joint_pos: np.ndarray  # float64[n_joints], radians
    joint_vel: np.ndarray  # float64[n_joints], rad/s


class Robot(ABC):
    """An arm with a parallel gripper, commanded in end-effector deltas at a fixed control rate."""

    #: control period in seconds (one `apply_action` call lasts this long)
    control_dt: float
    #: workspace box for the TCP target: (low[3], high[3]) in metres
    workspace: tuple[np.ndarray, np.ndarray]
    #: distance between the finger pads when fully open, metres
    gripper_max_opening: float
    #: whether `apply_action` takes a rotation (6-DoF end-effector control)
    supports_rotation: bool = False
    #: orientation limits for the TCP target: half-widths (radians) of a box around the home orientation,
    #: in rotation-vector coordinates of the offset from home, base frame (x, y, z); a 6-DoF task sets it
    orientation_limits: np.ndarray = np.full(3, np.pi)

    @abstractmethod
    def reset(self, tcp_pos: np.ndarray | None = None) -> RobotState:
        """Move to the home pose (or to `tcp_pos` with the home orientation), gripper open."""

    @abstractmethod
    def apply_action(self, tcp_delta: np.ndarray, gripper: float, rot_delta: np.ndarray | None = None) -> RobotState:
        """Shift the TCP target by `tcp_delta` metres (clipped to the workspace), command the
        gripper (-1 open .. +1 closed), run one control period and return the new state.

        `rot_delta` (robots with `supports_rotation` only): a rotation vector in radians, base frame
        (axis * angle), applied to the orientation target before the current one (R <- exp(rot_delta) R);
        the target is then clipped to `orientation_limits` around the home orientation. None keeps the
        orientation target (position-only tasks never pass it)."""

    @abstractmethod
    def read_state(self) -> RobotState:
        """The current proprioception."""

    def rotation_to_home(self) -> np.ndarray | None:
        """The rotation (base-frame rotation vector, rad) that turns the orientation target back to the home
        orientation; None when the robot does not rotate (or its target is home already)."""
        return None

    def tcp_quat(self) -> np.ndarray | None:
        """TCP orientation as a quaternion (w, x, y, z) in the base frame; None when not reported."""
        return None

    def wrench(self) -> np.ndarray | None:
        """Force (N) and torque about the TCP (N m) on the hand, base frame, float64[6]; None without
        a force-torque sensor."""
        return None

    def frame_age_s(self) -> float:
        """Age (s) of the oldest camera frame `render` returned since the last `apply_action`/`reset`: what
        the observation's images lag behind the world; NaN when no camera was read (or frames are rendered
        on demand, as in the sim)."""
        return float("nan")

    def stop(self) -> None:
        """Hold still (hardware: stop the actuators); default does nothing."""

    def close(self) -> None:
        """Release resources."""
