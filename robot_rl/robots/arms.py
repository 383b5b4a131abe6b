"""Arm descriptions: what differs between the arms robot_rl drives (pure data, no MuJoCo import).

`ARMS` maps an arm name to its `ArmModel`: the MJCF scene, joint and actuator names, home posture,
gripper range and the real gripper joint's map, the default TCP workspace box, and pick_cube's
defaults for that arm (cube area, start TCP, lift height, cube size). `MujocoRobot(model=name)` builds
the simulation from it, `ArmKinematics` (robot_rl/robots/kinematics.py) its kinematics, and
`PickCubeTask` fills the task keys left null from it. Lengths in metres, angles in radians, base frame
(x forward, z up, table top at z = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class ArmModel:
    """One arm: simulation names, posture and limits, gripper, and per-arm task defaults."""

    #: registry name ("panda", "so101")
    name: str
    #: MJCF scene file, looked up in the sim directory (robot_rl.robots.mujoco.sim_dir)
    mjcf: str
    #: arm joints, base to tip (the IK's joints; also the actuator names of their position servos)
    arm_joints: tuple[str, ...]
    #: the sim's finger slide joints (opening between the pads = their sum)
    finger_joints: tuple[str, ...]
    #: the sim's gripper actuator (a position target on the pads' opening, metres)
    gripper_actuator: str
    #: home joint posture (TCP pointing down); also the IK's nullspace posture
    home_q: tuple[float, ...]
    #: opening between the pads when fully open (m)
    max_opening: float
    #: default TCP workspace box (low xyz, high xyz)
    workspace: tuple[Vec3, Vec3]
    #: pick_cube defaults: cube centre area (x and y ranges), start TCP, success lift, cube half-size
    cube_x_range: tuple[float, float]
    cube_y_range: tuple[float, float]
    start_tcp: Vec3
    lift_height: float
    cube_half_size: float
    #: whether the arm can hold an arbitrary TCP orientation (6-DoF end-effector actions); a 5-joint arm
    #: holds only the gripper pointing down with a chosen yaw, so 6-DoF tasks are refused on it
    supports_rotation: bool = True
    #: the real gripper's joint: "slide" (one finger's travel, m; opening = 2 q) or "revolute" (a rotary
    #: jaw's angle, rad, 0 = closed; opening = chord at `gripper_jaw_length` from the pivot)
    gripper_joint_type: str = "slide"
    #: the real gripper joint's range (m or rad)
    gripper_joint_range: tuple[float, float] = (0.0, 0.04)
    #: revolute jaw: pivot to the pads' contact point (m)
    gripper_jaw_length: float = 0.0
    #: TCP site and hand body names in the MJCF
    tcp_site: str = "tcp"
    hand_body: str = "hand"


TABLE_Z = 0.0  # table top height in both scenes (world frame)

PANDA = ArmModel(
    name="panda",
    mjcf="panda_pick_cube.xml",
    arm_joints=tuple(f"joint{i}" for i in range(1, 8)),
    finger_joints=("finger_left", "finger_right"),
    gripper_actuator="gripper",
    home_q=(0.0, 0.0, 0.0, -1.5708, 0.0, 1.5708, -0.7854),
    max_opening=0.08,
    workspace=(
        (0.3, -0.25, TABLE_Z + 0.012),  # fingertips stay ~2 mm above the table
        (0.7, 0.25, TABLE_Z + 0.35),
    ),
    cube_x_range=(0.4, 0.6),
    cube_y_range=(-0.1, 0.1),
    start_tcp=(0.5, 0.0, 0.2),
    lift_height=0.1,
    cube_half_size=0.02,
)

# SO-101 figures: TheRobotStudio/SO-ARM100, Simulation/SO101/so101_new_calib.urdf (see
# sim/so101_pick_cube.xml). Reach with the gripper pointing down is ~0.27 m from the pan axis at the
# table and shrinks with height, hence the small cube area and workspace.
SO101 = ArmModel(
    name="so101",
    mjcf="so101_pick_cube.xml",
    arm_joints=("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"),
    finger_joints=("finger_left", "finger_right"),
    gripper_actuator="gripper",
    home_q=(0.0, -0.1168, 0.1921, 1.4955, 0.0),  # TCP at (0.18, 0, 0.1), gripper down
    max_opening=0.07,
    workspace=(
        (0.12, -0.12, TABLE_Z + 0.012),
        (0.24, 0.12, TABLE_Z + 0.15),
    ),
    cube_x_range=(0.14, 0.22),
    cube_y_range=(-0.07, 0.07),
    start_tcp=(0.18, 0.0, 0.1),
    lift_height=0.1,
    cube_half_size=0.0125,
    supports_rotation=False,
    gripper_joint_type="revolute",
    gripper_joint_range=(-0.174533, 1.74533),  # -10 .. 100 deg
    gripper_jaw_length=0.08,
)

ARMS: dict[str, ArmModel] = {arm.name: arm for arm in (PANDA, SO101)}


def get_arm(name: str | ArmModel) -> ArmModel:
    """The arm registered as `name` (an ArmModel passes through); ValueError naming the known arms."""
    if isinstance(name, ArmModel):
        return name
    try:
        return ARMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(ARMS)} (robot.model)") from None


def gripper_opening_from_joint(arm: ArmModel, q: float) -> float:
    """Opening between the pads (m) for the real gripper joint value `q` (see `ArmModel.gripper_joint_type`)."""
    lo, hi = arm.gripper_joint_range
    q = min(max(float(q), lo), hi)
    if arm.gripper_joint_type == "slide":
        return 2.0 * q
    return 2.0 * arm.gripper_jaw_length * math.sin(max(q, 0.0) / 2.0)


def gripper_joint_from_opening(arm: ArmModel, opening: float) -> float:
    """The real gripper joint value for an opening between the pads (m), clipped to the joint's range."""
    lo, hi = arm.gripper_joint_range
    w = max(float(opening), 0.0)
    if arm.gripper_joint_type == "slide":
        q = w / 2.0
    else:
        q = 2.0 * math.asin(min(w / (2.0 * arm.gripper_jaw_length), 1.0))
    return min(max(q, lo), hi)
