"""Per-arm calibration: how each servo's ticks map to the arm model's joint angles, and its limits.

A calibration file (JSON) belongs to one physical arm (`robot.id`) of one model (`robot.model`):
    {"format": "robot_rl.calibration", "version": 1, "arm": "so101", "id": "lab-left",
     "ticks_per_rev": 4096,
     "joints": [{"name": "shoulder_pan", "servo_id": 1, "direction": 1, "offset_ticks": 2051,
                 "pos_min": -1.9, "pos_max": 1.9}, ..., {"name": "gripper", ...}]}
Joint angles are the model's (radians, the MJCF's zero pose); servo ticks = offset_ticks + direction *
angle * ticks_per_rev / 2pi (the firmware applies it; robot_rl/hardware/protocol.py CONFIG_JOINT). The
last joint is the gripper servo, in the model's jaw angle (0 = closed).
`robot-rl calibrate robot=serial` writes the file (robot_rl/commands/calibrate.py).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from robot_rl.config import UserError
from robot_rl.data.files import write_atomic

FORMAT = "robot_rl.calibration"
VERSION = 1
TICKS_PER_REV = 4096  # Feetech STS3215 (and most bus servos of its class)
CENTER_TICKS = TICKS_PER_REV // 2


@dataclass(frozen=True)
class JointCalibration:
    """One servo: its bus id, the tick reading at the model's zero angle, its sense, and its limits (rad)."""

    name: str
    servo_id: int
    direction: int
    offset_ticks: int
    pos_min: float
    pos_max: float


@dataclass(frozen=True)
class Calibration:
    arm: str
    id: str
    joints: tuple[JointCalibration, ...]
    ticks_per_rev: int = TICKS_PER_REV

    def save(self, path: str | os.PathLike) -> Path:
        """Write the file atomically (parents created); its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "format": FORMAT,
            "version": VERSION,
            "arm": self.arm,
            "id": self.id,
            "ticks_per_rev": self.ticks_per_rev,
            "joints": [asdict(j) for j in self.joints],
        }
        write_atomic(path, json.dumps(body, indent=1) + "\n")
        return path


def default_path(arm: str, arm_id: str) -> Path:
    """Where `robot-rl calibrate` keeps an arm's file: `$ROBOT_RL_CALIBRATION_DIR` or
    ~/.config/robot_rl/calibration, named <arm>-<id>.json."""
    root = os.environ.get("ROBOT_RL_CALIBRATION_DIR") or Path.home() / ".config" / "robot_rl" / "calibration"
    return Path(root) / f"{arm}-{arm_id}.json"


def load_calibration(path: str | os.PathLike, arm: str, joint_names: tuple[str, ...]) -> Calibration:
    """The calibration in `path`, checked against the arm model `arm` with servos for `joint_names`
    (arm joints, then the gripper); UserError naming the problem and the fix otherwise."""
    path = Path(path)
    fix = f"run `robot-rl calibrate robot=serial robot.model={arm}` to write it"
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"calibration file {path} not found: {fix}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"calibration file {path} is unreadable ({err}): {fix} again") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise UserError(f"{path} is not a robot_rl calibration file: {fix}")
    if body.get("version") != VERSION:
        raise UserError(
            f"calibration file {path} has version {body.get('version')}, this robot_rl reads {VERSION}: {fix}"
        )
    if body.get("arm") != arm:
        raise UserError(f"calibration file {path} is for arm {body.get('arm')!r}, not {arm!r}: {fix}")
    try:
        joints = tuple(JointCalibration(**j) for j in body["joints"])
        calibration = Calibration(arm, str(body.get("id", "")), joints, int(body.get("ticks_per_rev", TICKS_PER_REV)))
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"calibration file {path} is malformed ({err}): {fix} again") from None
    check_calibration(calibration, joint_names, str(path))
    return calibration


def check_calibration(calibration: Calibration, joint_names: tuple[str, ...], where: str) -> None:
    """UserError unless the joints are `joint_names` in order with sane values."""
    names = tuple(j.name for j in calibration.joints)
    if names != tuple(joint_names):
        raise UserError(f"{where} calibrates joints {list(names)}, the arm has {list(joint_names)}: recalibrate")
    ids = [j.servo_id for j in calibration.joints]
    if len(set(ids)) != len(ids) or not all(0 <= i < 0xFE for i in ids):
        raise UserError(f"{where} has servo ids {ids}: they must be distinct, 0..253")
    for j in calibration.joints:
        values = (j.pos_min, j.pos_max)
        if j.direction not in (-1, 1) or not all(math.isfinite(v) for v in values) or j.pos_min >= j.pos_max:
            raise UserError(
                f"{where}: joint {j.name} has direction {j.direction} and limits {values}: "
                "direction must be +1 or -1 and pos_min < pos_max (finite): recalibrate"
            )
        if not 0 <= j.offset_ticks < calibration.ticks_per_rev:
            raise UserError(f"{where}: joint {j.name} offset {j.offset_ticks} outside 0..{calibration.ticks_per_rev}")


def servo_joints(arm_joints: tuple[str, ...]) -> tuple[str, ...]:
    """The servos of an arm, in bus order: its joints, then the gripper."""
    return (*arm_joints, "gripper")
