"""`robot-rl calibrate robot=serial robot.port=/dev/ttyUSB0 robot.id=<name>`: calibrate a serial arm.

With the arm disarmed (torque off, so it can be moved by hand) a person
  1. puts it in the model's zero pose (the pose sim/<model>_pick_cube.xml shows at zero angles, jaw
     closed) -> each servo's offset (its tick reading there);
  2. turns every joint (and the jaw) about +30 degrees, the way the model's joint axes point ->
     each servo's direction;
  3. moves every joint through its whole range -> the limits (kept inside the model's).
The result goes to `out` (default ~/.config/robot_rl/calibration/<model>-<id>.json), which SerialRobot loads.
On the simulated rig (`robot.port=sim`) the plant's hand does the posing, and the result is compared
with the plant's hidden calibration.
"""

from __future__ import annotations

import math
import select
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from robot_rl.commands.check_hardware import open_firmware
from robot_rl.config import UserError, log
from robot_rl.hardware.calibration import (
    CENTER_TICKS,
    TICKS_PER_REV,
    Calibration,
    JointCalibration,
    default_path,
    servo_joints,
)
from robot_rl.hardware.firmware import FirmwareClient, JointConfig
from robot_rl.robots.arms import get_arm
from robot_rl.robots.kinematics import ArmKinematics
from robot_rl.robots.serial import servo_ranges

CONFIG = "calibrate"
TURN = math.radians(30)  # how far step 2 turns each joint
MIN_TURN_TICKS = 100  # a joint that moved less in step 2 was not turned
RAD_TO_TICKS = TICKS_PER_REV / (2 * math.pi)


class Person:
    """Asks a person at the terminal to pose the arm; reads the servos meanwhile."""

    def pose(self, what: str, angles: list[float] | None) -> None:
        input(f"{what}, then press Enter ")

    def sweep(self, what: str, ranges: list[tuple[float, float]], sample) -> None:
        print(f"{what}; press Enter when done", flush=True)
        while not select.select([sys.stdin], [], [], 0.02)[0]:
            sample()
        sys.stdin.readline()

    def done(self) -> None:
        pass


class RigHand(Person):
    """The simulated rig's plant holds the limp arm where a person would put it."""

    def __init__(self, rig) -> None:
        self.rig = rig

    def _hold(self, angles: list[float]) -> None:
        servos = self.rig.true_calibration()
        self.rig.plant.hold({sid: a for (sid, _, _), a in zip(servos, angles, strict=True)})
        time.sleep(0.05)  # a few firmware ticks read the new pose

    def pose(self, what: str, angles: list[float] | None) -> None:
        log(f"[calibrate] rig: {what}")
        self._hold(angles)

    def sweep(self, what: str, ranges: list[tuple[float, float]], sample) -> None:
        log(f"[calibrate] rig: {what}")
        for fraction in np.linspace(0.0, 1.0, 11):
            self._hold([lo + (hi - lo) * fraction for lo, hi in ranges])
            sample()

    def done(self) -> None:
        self.rig.plant.hold(None)


def read_ticks(fw: FirmwareClient) -> np.ndarray:
    """Every servo's position in raw ticks (the firmware is configured with offset 2048, direction +1)."""
    state = fw.heartbeat()
    return np.array([CENTER_TICKS + j.pos * RAD_TO_TICKS for j in state.joints])


def calibrate(cfg: DictConfig) -> tuple[Calibration, Path]:
    """Run the three steps (module docstring) and save the calibration; returns it and its path."""
    arm = get_arm(cfg.robot.model)
    names = servo_joints(arm.arm_joints)
    model_ranges = servo_ranges(ArmKinematics(arm))
    with ExitStack() as stack:
        fw, port, rig = open_firmware(cfg, stack)
        hand: Person = RigHand(rig) if rig is not None else Person()
        stack.callback(hand.done)
        hello = fw.hello()
        if hello.n_joints != len(names):
            raise UserError(f"the firmware on {port} drives {hello.n_joints} servos, arm {arm.name} has {len(names)}")
        fw.disarm()  # torque off: the arm is moved by hand (an e-stop or fault may stay latched: harmless here)
        for i in range(len(names)):  # raw readings: offset at the centre, direction +1, no limits to speak of
            fw.configure_joint(JointConfig(joint=i, servo_id=i + 1, pos_min=-math.pi, pos_max=math.pi))
        time.sleep(0.02)  # the next tick reads with this configuration
        hand.pose("put the arm in its zero pose (jaw closed)", [0.0] * len(names))
        zero = read_ticks(fw)
        hand.pose(f"turn every joint and the jaw about +{math.degrees(TURN):.0f} degrees", [TURN] * len(names))
        turned = read_ticks(fw) - zero
        still = [n for n, t in zip(names, turned, strict=True) if abs(t) < MIN_TURN_TICKS]
        if still:
            raise UserError(f"joints {still} did not move in step 2: turn each joint about 30 degrees and rerun")
        directions = np.sign(turned).astype(int)
        low, high = np.full(len(names), np.inf), np.full(len(names), -np.inf)

        def sample() -> None:
            ticks = read_ticks(fw)
            np.minimum(low, ticks, out=low)
            np.maximum(high, ticks, out=high)

        hand.sweep("move every joint through its whole range", model_ranges, sample)
    joints = []
    for i, name in enumerate(names):
        offset = int(round(zero[i])) % TICKS_PER_REV
        ends = sorted(directions[i] * (t - offset) / RAD_TO_TICKS for t in (low[i], high[i]))
        model_lo, model_hi = model_ranges[i]
        pos_min, pos_max = max(ends[0], model_lo), min(ends[1], model_hi)
        if pos_max - pos_min < 0.1:
            raise UserError(f"joint {name} moved over {ends} rad only in step 3: sweep its whole range and rerun")
        joints.append(JointCalibration(name, i + 1, int(directions[i]), offset, pos_min, pos_max))
    calibration = Calibration(arm.name, str(cfg.robot.id), tuple(joints))
    out = Path(cfg.out).expanduser() if cfg.out else default_path(arm.name, str(cfg.robot.id))
    return calibration, calibration.save(out)


def run(cfg: DictConfig) -> None:
    calibration, path = calibrate(cfg)
    for j in calibration.joints:
        log(
            f"{j.name:14s} servo {j.servo_id}  direction {j.direction:+d}  offset {j.offset_ticks:4d} ticks  "
            f"range [{j.pos_min:+.3f}, {j.pos_max:+.3f}] rad"
        )
    log(f"[calibrate] wrote {path}: SerialRobot loads it (robot.calibration={path} or robot.id={calibration.id})")
