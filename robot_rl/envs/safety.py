"""The safety layer: limits on every command a robot executes, whoever sends it (the policy, a person's
teleop device, a deployed policy). Pure numpy; imports without torch.

- `SafetyLimits`: the `safety` config group (configs/safety/default.yaml), `resolve`d against a robot and a
  task (every null filled in), `to_dict`/`from_dict` (stored in an exported policy) and `check_within`
  (deployment: this robot's limits may not be wider than the policy's).
- `SafetyLayer`: the filter itself, without an env. Each control step it takes the commanded TCP
  displacement (and rotation, and gripper command) and returns what may run.
- `SafetyWrapper`: a gym wrapper around a `RobotEnv` (the innermost wrapper, so that the actions of a
  person who takes over pass through it too) that feeds the layer from the robot and the env's actions.

The motion limits (per base-frame axis x, y, z: a Chebyshev box, not a Euclidean ball). Let `p` be the TCP
target at the start of a step, `s` the displacement the last step commanded (velocity * dt) and `u` the
displacement asked for now. The layer executes the `s'` closest to `u` with
    |s'| <= max_speed * dt                          (speed)
    |s' - s| <= max_accel * dt^2                    (acceleration)
    p + s' + D(s') <= hi  and  p + s' - D(-s') >= lo (the box, brake-feasibly)
where D(v) is the distance the target travels while braking from v at max_accel (D = 0 when one step
stops it). All three always hold together, for any input sequence, by induction: the state after each
step can brake to rest inside the box, rest is always feasible from inside the box, and a state that can
brake inside the box has an `s'` meeting every bound (braking is one). A target that starts outside the
box (the box was narrowed, a reset put it there) may only move toward it. With the defaults at 10 Hz
(max_accel * dt = 0.4 m/s > max_speed = 0.3 m/s) one step stops the target, so D = 0 and the box is a
plain clip; the acceleration limit then binds on reversals (an action going from +1 to -1 in one step).
`p` is where the robot's target will be when it adds the step's displacement: its `tcp_target`, pulled
toward the measured TCP as MujocoRobot and SerialRobot re-anchor a target the arm lags behind (a robot
without a target, the ROS client: the measured TCP). Re-anchoring, and a robot that stops itself (its
target then restarts from rest), move `p` behind the layer's back; if no displacement then meets all three
bounds, the box and the speed win over the acceleration. A displacement within 1e-12 m of what was asked
runs as asked (rounding at a wall: the robot clips to its own workspace).
Orientation: the same scheme on the orientation target's offset from the home orientation, as a base-frame
rotation vector o, per axis, with `orientation_limits` as the box: the speed and acceleration limits bound
the change of o per step. The robot turns its target by a rotation w, exp(w) exp(o), so the wrapper sends the
w that moves o by exactly the layer's step (it differs from the step by about |w| |o| / 2); where that w needs
more than a full action, the step is shortened along itself until it fits. The box therefore holds exactly.
Robots that report no orientation target (the ROS client) get the layer's own sum of the offset steps it
let through since the reset (which starts at home).

Holds: a hold brakes the target to rest at max_accel (never a jump), keeps the gripper, and is reported:
a camera frame older than `max_obs_age` in the observation the next command answers (`hold_stale_obs`), a
command that comes more than `max_command_delay` after its observation (`hold_late_command`: inference or a
learner update stalled; the clock is the wall clock, a lock-stepped simulator too), a force on the hand
above `max_force` (`hold_force`, robots with `wrench()`). A NaN or infinite action (which RobotEnv's clip
would turn into a full-scale one) holds and faults (`fault_nonfinite`): the fault is latched until reset, the
episode ends (truncated) and the robot is told to `stop()`.

Gripper: an open <-> close switch less than `gripper_min_switch_s` after the last one keeps the gripper
as it is (`gripper_rate`; a chattering policy cannot wear out or drop things).

Joint margin: on robots with kinematics (MujocoRobot `kin`, SerialRobot `kinematics`: an ArmKinematics with
`jacobian` and `joint_limits`; the serial arm's calibrated limits too), when a joint is within
`joint_margin` of a limit the part of the commanded motion that would drive it further in is removed,
using the joint motion the robot's IK makes of a TCP motion to first order: 6 joints or more, J^+ of the
6-D Jacobian (the damped least-squares IK moves every joint); fewer (a position-first IK that locks a joint
at its limit and gives up the orientation, e.g. the SO-101 high above the table), only the position motion
the other joints cannot make (an outstretched arm pushed further out, the base turned past its limit). The
braking constraint has priority: a moving target brakes first, so a joint may enter the margin by the
braking distance. Robots without kinematics (the ROS bridge client) skip this: the bridge's robot and its
firmware enforce joint limits.

What each step did is in its StepInfo: `safety_actions` (names, robot_rl.data.schema.SafetyAction) and
`executed_action` (the action that ran, when the layer changed it); the same bits go to the log (data/safety),
where per-episode counts come from.

Not covered: a task's reset procedure (task.reset: `robot.reset` and the physical reset's moves) commands the
robot directly, at its own `reset_step` / `reset_joint_speed`, clipped to the robot's workspace.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.config import UserError, log
from robot_rl.data.schema import SafetyAction, StepInfo, safety_names
from robot_rl.robots.base import Robot

AUTO = "auto"
HARDWARE_ROBOTS = ("serial", "ros")  # `enabled: auto` turns the layer on for these `robot.name`s
_HARDWARE_CLASSES = {"SerialRobot": "serial", "RosRobot": "ros"}
_TOL = 1e-12  # m (rad) per step: a change smaller than this is rounding, not a safety action
_REBASE_TOL = 1e-9  # m: a robot target this far from where the layer left it was moved by the robot itself

_HOLDS = int(SafetyAction.HOLD_STALE_OBS | SafetyAction.HOLD_LATE_COMMAND | SafetyAction.HOLD_FORCE)


def _floats(value: Any, n: int, what: str) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        out = []
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise UserError(f"safety.{what}={value!r}: give {n} finite numbers")
    return out


@dataclass
class SafetyLimits:
    """The `safety` config group (configs/safety/default.yaml); `resolve` fills every null in."""

    enabled: bool | str = AUTO  # auto: on for hardware robots (robot.name serial or ros), off in the simulator
    workspace: list[list[float]] | None = None  # [[xlo, ylo, zlo], [xhi, yhi, zhi]] m, TCP target; null: robot's
    orientation_limits: list[float] | None = None  # rad half-widths (base x, y, z) around home; null: task's
    max_speed: float | None = None  # m/s per base axis of the TCP target; null: task.action_scale / control_dt
    max_accel: float = 4.0  # m/s^2 per base axis
    max_angular_speed: float | None = None  # rad/s per axis; null: task.rotation_scale / control_dt
    max_angular_accel: float = 20.0  # rad/s^2 per axis
    gripper_min_switch_s: float = 0.3  # s at least between open <-> close switches
    joint_margin: float = 0.05  # rad from a joint limit: motion driving a joint further in is removed
    max_obs_age: float = 0.25  # s: an observation whose camera frame is older -> hold
    max_command_delay: float = 0.3  # s between an observation and the command answering it -> hold
    max_force: float | None = None  # N on the hand (robot.wrench()); null: no limit

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SafetyLimits:
        """From the `safety` group as a plain mapping (None: the defaults); an unknown key or a bad value is
        a one-line UserError."""
        data = dict(data or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise UserError(f"unknown safety key(s) {unknown}: use {', '.join(names)} (configs/safety/default.yaml)")
        return cls(**data)

    @classmethod
    def from_config(cls, node: Any) -> SafetyLimits:
        """From a config's `safety` node (an OmegaConf DictConfig, a mapping or None: the defaults, as for a run
        configured before the safety layer existed)."""
        if node is not None:
            from omegaconf import OmegaConf

            if OmegaConf.is_config(node):
                node = OmegaConf.to_container(node, resolve=True)
        return cls.from_dict(node)

    @classmethod
    def defaults_for(cls, robot: Any, task: Any, robot_name: str | None = None) -> SafetyLimits:
        """The default limits resolved for `robot` and `task` (what a run without a `safety` group ran under)."""
        return cls().resolve(robot, task, robot_name)

    def validate(self) -> None:
        """One-line UserError naming the first bad value."""
        enabled = self.enabled
        if isinstance(enabled, str) and enabled.lower() in ("true", "false", AUTO):
            self.enabled = AUTO if enabled.lower() == AUTO else enabled.lower() == "true"
        elif not isinstance(enabled, bool):
            raise UserError(f"safety.enabled={enabled!r}: use auto, true or false")
        if self.workspace is not None:
            box = self.workspace
            if not isinstance(box, (list, tuple)) or len(box) != 2:
                raise UserError(f"safety.workspace={box!r}: give [[xlo, ylo, zlo], [xhi, yhi, zhi]] in metres")
            lo, hi = _floats(box[0], 3, "workspace[0]"), _floats(box[1], 3, "workspace[1]")
            if any(a > b for a, b in zip(lo, hi)):
                raise UserError(f"safety.workspace={[lo, hi]}: each low must be <= its high")
            self.workspace = [lo, hi]
        if self.orientation_limits is not None:
            limits = _floats(self.orientation_limits, 3, "orientation_limits")
            if min(limits) < 0:
                raise UserError(f"safety.orientation_limits={limits}: half-widths are >= 0 (rad)")
            self.orientation_limits = limits
        for name, optional, strict in (
            ("max_speed", True, True),
            ("max_accel", False, True),
            ("max_angular_speed", True, True),
            ("max_angular_accel", False, True),
            ("gripper_min_switch_s", False, False),
            ("joint_margin", False, False),
            ("max_obs_age", False, True),
            ("max_command_delay", False, True),
            ("max_force", True, True),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (strict and number == 0):
                bound = "> 0" if strict else ">= 0"
                null = " (or null)" if optional else ""
                raise UserError(f"safety.{name}={value!r}: give a finite number {bound}{null}")
            setattr(self, name, number)

    # ------------------------------------------------------------------ resolving
    @property
    def resolved(self) -> bool:
        return isinstance(self.enabled, bool) and None not in (
            self.workspace,
            self.orientation_limits,
            self.max_speed,
            self.max_angular_speed,
        )

    def is_enabled(self, robot_name: str) -> bool:
        """Whether the layer runs for a robot of this `robot.name` (auto: the hardware robots)."""
        if self.enabled == AUTO:
            return robot_name in HARDWARE_ROBOTS
        return bool(self.enabled)

    def resolve(self, robot: Any, task: Any, robot_name: str | None = None) -> SafetyLimits:
        """A copy with every null filled from `robot` (workspace, control_dt) and `task` (action and rotation
        scales, rotation limits): the workspace and orientation boxes are intersected with the robot's and
        the task's own (which the robot clips to anyway); `enabled: auto` becomes true or false
        (`robot_name`: the config's robot.name; default: from the robot's type)."""
        dt = float(robot.control_dt)
        lo, hi = (np.asarray(b, np.float64) for b in robot.workspace)
        if self.workspace is not None:
            lo, hi = np.maximum(lo, self.workspace[0]), np.minimum(hi, self.workspace[1])
            if np.any(lo > hi):
                raise UserError(
                    f"safety.workspace {self.workspace} does not overlap the robot's workspace "
                    f"{[list(map(float, b)) for b in robot.workspace]}: fix safety.workspace or robot.workspace"
                )
        task_limits = np.asarray(getattr(task, "rotation_limits", (math.pi,) * 3), np.float64)
        orientation = (
            task_limits if self.orientation_limits is None else np.minimum(task_limits, self.orientation_limits)
        )
        if robot_name is None:
            robot_name = _HARDWARE_CLASSES.get(type(robot).__name__, "mujoco")
        return replace(
            self,
            enabled=self.is_enabled(robot_name),
            workspace=[[float(v) for v in lo], [float(v) for v in hi]],
            orientation_limits=[float(v) for v in orientation],
            max_speed=float(self.max_speed if self.max_speed is not None else task.action_scale / dt),
            max_angular_speed=float(
                self.max_angular_speed
                if self.max_angular_speed is not None
                else getattr(task, "rotation_scale", 0.1) / dt
            ),
        )

    # ------------------------------------------------------------------ storing and comparing
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (what an exported policy's metadata holds)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = [list(map(float, v)) if isinstance(v, (list, tuple)) else float(v) for v in value]
            out[f.name] = value
        return out

    def check_within(self, other: SafetyLimits, what: str = "the policy") -> None:
        """UserError (one line, every excess) when these limits are wider than `other`'s (both resolved): a
        larger workspace or orientation box, higher speeds or accelerations, a smaller joint margin or gripper
        switch time, longer observation ages or command delays, or no force limit / a higher one."""
        if not (self.resolved and other.resolved):
            raise ValueError("check_within compares resolved limits: call resolve(robot, task) first")
        wider: list[str] = []
        lo, hi = np.asarray(self.workspace[0]), np.asarray(self.workspace[1])
        olo, ohi = np.asarray(other.workspace[0]), np.asarray(other.workspace[1])
        if np.any(lo < olo - 1e-9) or np.any(hi > ohi + 1e-9):
            wider.append(
                f"safety.workspace {_fmt(self.workspace)} is wider than {what} allows {_fmt(other.workspace)}: "
                "narrow safety.workspace (or robot.workspace)"
            )
        if np.any(np.asarray(self.orientation_limits) > np.asarray(other.orientation_limits) + 1e-9):
            wider.append(
                f"safety.orientation_limits {_fmt(self.orientation_limits)} are wider than {what} allows "
                f"{_fmt(other.orientation_limits)}: narrow safety.orientation_limits"
            )
        for name, higher_is_wider in (
            ("max_speed", True),
            ("max_accel", True),
            ("max_angular_speed", True),
            ("max_angular_accel", True),
            ("max_obs_age", True),
            ("max_command_delay", True),
            ("gripper_min_switch_s", False),
            ("joint_margin", False),
        ):
            mine, theirs = float(getattr(self, name)), float(getattr(other, name))
            if (mine > theirs * (1 + 1e-9) + 1e-12) if higher_is_wider else (mine < theirs * (1 - 1e-9) - 1e-12):
                verb, fix = ("higher", "lower") if higher_is_wider else ("lower", "raise")
                wider.append(f"safety.{name} {mine:g} is {verb} than {what} allows ({theirs:g}): {fix} safety.{name}")
        if other.max_force is not None and (self.max_force is None or self.max_force > other.max_force):
            mine = "no limit" if self.max_force is None else f"{self.max_force:g} N"
            wider.append(f"safety.max_force {mine} exceeds {what}'s {other.max_force:g} N: set safety.max_force")
        if wider:
            raise UserError("; ".join(wider))


def _fmt(values: Any) -> str:
    return str(np.round(np.asarray(values, np.float64), 4).tolist())


# ====================================================================================== the filter
def brake_cap(budget: float, accel: float) -> float:
    """The largest displacement per step `s >= 0` from which braking at `accel` (displacement per step, per
    step) stops within `budget` (m, or rad) including the step itself: s + D(s) <= budget, where
    D(s) = sum_{j>=1} max(s - j*accel, 0). On [k a, (k+1) a] the left side is (k+1) s - a k (k+1) / 2."""
    if budget <= 0.0:
        return 0.0
    k = math.floor((math.sqrt(1.0 + 8.0 * budget / accel) - 1.0) / 2.0)
    if accel * k * (k + 1) / 2 > budget:  # float rounding of the square root
        k -= 1
    k = max(k, 0)
    if accel * (k + 1) * (k + 2) / 2 <= budget:
        k += 1
    return budget / (k + 1) + accel * k / 2


def braking_distance(speed: float, accel: float) -> float:
    """D(speed): how far a target moving `speed` (>= 0, per step) goes after this step while braking at `accel`."""
    n = math.ceil(speed / accel) - 1 if speed > 0 else 0
    return max(n * speed - accel * n * (n + 1) / 2, 0.0)


_CLIP_BOX, _CLIP_SPEED, _CLIP_ACCEL = (
    int(SafetyAction.CLIP_BOX),
    int(SafetyAction.CLIP_SPEED),
    int(SafetyAction.CLIP_ACCEL),
)
_CLIP_ORIENTATION, _GRIPPER_RATE = int(SafetyAction.CLIP_ORIENTATION), int(SafetyAction.GRIPPER_RATE)
_JOINT_MARGIN, _FAULT = int(SafetyAction.JOINT_MARGIN), int(SafetyAction.FAULT_NONFINITE)
_HOLD_STALE, _HOLD_LATE = int(SafetyAction.HOLD_STALE_OBS), int(SafetyAction.HOLD_LATE_COMMAND)
_HOLD_FORCE = int(SafetyAction.HOLD_FORCE)


def _axes(
    p: list[float],
    s: list[float],
    u: list[float],
    lo: list[float],
    hi: list[float],
    smax: float,
    accel: float,
) -> tuple[list[float], int]:
    """Per axis: the displacement closest to `u` within the speed, acceleration and (brake-feasible) box bounds,
    from position `p` after the displacement `s`; and the clip bits (CLIP_BOX for the box). When something
    other than the layer moved `p` so that no displacement meets all three (a robot re-anchoring its target
    toward the arm, the exact composition of rotations), the box and the speed win over the acceleration.
    Plain floats: three axes cost less in Python than in numpy."""
    one_step = accel >= smax  # one step stops any allowed motion: the box is a plain bound
    out, bits = [0.0, 0.0, 0.0], 0
    for i in range(3):
        pi, si, ui, loi, hii = p[i], s[i], u[i], lo[i], hi[i]
        inside_hi, inside_lo = pi <= hii, pi >= loi
        up = (hii - pi if one_step else brake_cap(hii - pi, accel)) if inside_hi else 0.0  # outside: only toward it
        down = (pi - loi if one_step else brake_cap(pi - loi, accel)) if inside_lo else 0.0
        box_hi, box_lo = min(up, smax), max(-down, -smax)  # never empty: 0 is in it
        high, low = min(box_hi, si + accel), max(box_lo, si - accel)
        empty = low > high  # only when something else moved the target
        if empty:  # the box and the speed win
            o = min(max(min(max(ui, si - accel), si + accel), box_lo), box_hi)
        else:
            o = min(max(ui, low), high)
        if inside_hi and o > hii - pi:  # rounding: never past a wall the target was inside of
            o = hii - pi
        if inside_lo and o < loi - pi:
            o = loi - pi
        if abs(o - ui) <= _TOL:  # rounding at a wall the motion just reaches: the command runs as given
            o = ui
        out[i] = o
        if o != ui:  # which bound cut it: the box first, then the speed, else the acceleration
            above = o < ui
            if empty or abs(o - (up if above else -down)) <= _TOL:
                bits |= _CLIP_BOX
            elif abs(o - (smax if above else -smax)) <= _TOL:
                bits |= _CLIP_SPEED
            else:
                bits |= _CLIP_ACCEL
    return out, bits


def _snap(out: list[float], wanted: list[float], scale: float | None) -> list[float]:
    """`out` onto the float32 action grid of `scale`: unchanged entries exactly as asked (they came from such
    an action), changed ones rounded toward zero (never past a bound the layer computed)."""
    if scale is None:
        return out
    for i, (o, w) in enumerate(zip(out, wanted)):
        if o != w:
            x = o / scale
            x32 = np.float32(x)
            if abs(float(x32)) > abs(x):
                x32 = np.nextafter(x32, np.float32(0))
            out[i] = float(x32) * scale
    return out


def _finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


@dataclass
class SafetyCommand:
    """What the layer lets run this step."""

    delta: np.ndarray  # float64[3]: the TCP target displacement (m)
    rot_delta: np.ndarray | None  # float64[3]: the rotation (base-frame rotation vector, rad); None without
    gripper: float | None  # the gripper command to run (-1 open .. +1 closed); None when none was given
    bits: int  # SafetyAction bits: what the layer changed (0: the command runs as given)
    action: np.ndarray | None  # float32[3 or 6]: delta (and rot_delta) as a normalised action (scaled, bits != 0)
    fault: bool  # a fault is latched (NaN/inf input): the episode must end and the robot stop


class SafetyLayer:
    """The per-step filter (see the module docstring), numpy in and out, plain floats inside.

    `limits`: resolved SafetyLimits; `control_dt`: s per step; `rotation`: commands carry a rotation.
    `action_scale` / `rotation_scale` (m / rad per unit action): commands are float32 actions times these
    (RobotEnv); a displacement the layer changes is then rounded toward zero onto that float32 grid, so the
    command that runs never exceeds a limit by rounding (and `SafetyCommand.action` holds that action).
    """

    def __init__(
        self,
        limits: SafetyLimits,
        control_dt: float,
        rotation: bool = False,
        action_scale: float | None = None,
        rotation_scale: float | None = None,
    ) -> None:
        if not limits.resolved:
            raise ValueError("SafetyLayer needs resolved limits: SafetyLimits.resolve(robot, task)")
        dt = float(control_dt)
        if not dt > 0:
            raise ValueError(f"control_dt {control_dt} must be > 0")
        self.limits, self.dt, self.rotation = limits, dt, bool(rotation)
        self.lo, self.hi = ([float(v) for v in b] for b in limits.workspace)
        self.step_max = float(limits.max_speed) * dt  # m per step
        self.step_accel = float(limits.max_accel) * dt * dt  # m per step, per step
        self.orient_hi = [float(v) for v in limits.orientation_limits]
        self.orient_lo = [-v for v in self.orient_hi]
        self.rot_step_max = float(limits.max_angular_speed) * dt
        self.rot_step_accel = float(limits.max_angular_accel) * dt * dt
        self.switch_steps = float(limits.gripper_min_switch_s) / dt - 1e-9
        self.action_scale = None if action_scale is None else float(action_scale)
        self.rotation_scale = None if rotation_scale is None else float(rotation_scale)
        self.velocity = [0.0, 0.0, 0.0]  # the last step's displacement (m per step)
        self.angular = [0.0, 0.0, 0.0]  # the last step's rotation (rad per step)
        self.fault = False
        self.steps_since_switch = math.inf

    def reset(self) -> None:
        """A new episode: at rest, no fault, the gripper free to switch."""
        self.rebase()
        self.fault = False
        self.steps_since_switch = math.inf

    def rebase(self) -> None:
        """The robot moved its target itself (it stopped, or was reset): its motion restarts from rest."""
        self.velocity = [0.0, 0.0, 0.0]
        self.angular = [0.0, 0.0, 0.0]

    # ------------------------------------------------------------------ one step
    def filter(
        self,
        position: np.ndarray,
        delta: np.ndarray,
        orientation: np.ndarray | None = None,
        rot_delta: np.ndarray | None = None,
        gripper: float | None = None,
        previous_gripper: float | None = None,
        hold: int = 0,
        joint_rows: np.ndarray | None = None,
    ) -> SafetyCommand:
        """The command to run this step, and the layer's state advanced past it.

        `position`: the TCP target (m, base frame) the displacement `delta` adds to; `orientation`: the
        orientation target's offset from home (rotation vector, rad) that `rot_delta` adds to (rotation
        only). `gripper`: the gripper command asked for, `previous_gripper` the one running. `hold`:
        SafetyAction hold bits the caller found (stale observation, late command, force): the step brakes.
        `joint_rows` (m x 3, or m x 6 with rotation): motions t = [delta, rot_delta] must keep
        `joint_rows @ t >= 0` (the joint-margin constraints; see the module docstring)."""
        self.steps_since_switch += 1
        bits = int(hold) & _HOLDS
        p, u = np.asarray(position, np.float64).tolist(), np.asarray(delta, np.float64).tolist()
        finite = _finite(p) and _finite(u)
        q = w = None
        if self.rotation:
            q, w = np.asarray(orientation, np.float64).tolist(), np.asarray(rot_delta, np.float64).tolist()
            finite = finite and _finite(q) and _finite(w)
        if gripper is not None:
            finite = finite and math.isfinite(gripper)
        if not finite:
            self.fault = True
        if self.fault:
            bits |= _FAULT
            p = [min(max(v, lo), hi) if math.isfinite(v) else lo for v, lo, hi in zip(p, self.lo, self.hi)]
            q = [0.0, 0.0, 0.0] if q is not None and not _finite(q) else q
        holding = bits != 0
        asked_u, asked_w = u, w  # on the action grid: what _snap keeps as it is
        if holding:
            u = [0.0, 0.0, 0.0]
            w = None if w is None else [0.0, 0.0, 0.0]
        elif joint_rows is not None and len(joint_rows):
            u, w, cut = _joint_margin(u, w, joint_rows)
            if cut:
                bits |= _JOINT_MARGIN
        out, why = _axes(p, self.velocity, u, self.lo, self.hi, self.step_max, self.step_accel)
        if not holding:
            bits |= why
        out = _snap(out, asked_u, self.action_scale)
        rot_out = None
        if self.rotation:
            rot_out, why = _axes(
                q, self.angular, w, self.orient_lo, self.orient_hi, self.rot_step_max, self.rot_step_accel
            )
            if not holding:
                bits |= (why & ~_CLIP_BOX) | (_CLIP_ORIENTATION if why & _CLIP_BOX else 0)
            rot_out = _snap(rot_out, asked_w, self.rotation_scale)
        run_gripper = gripper
        if gripper is not None:
            previous = gripper if previous_gripper is None or not math.isfinite(previous_gripper) else previous_gripper
            if holding:
                run_gripper = previous
            elif (gripper > 0.0) != (previous > 0.0):
                if self.steps_since_switch < self.switch_steps:
                    run_gripper = previous
                    bits |= _GRIPPER_RATE
                else:
                    self.steps_since_switch = 0
        self.velocity = out
        if rot_out is not None:
            self.angular = rot_out
        action = None
        if bits and self.action_scale is not None:
            values = [v / self.action_scale for v in out]
            if rot_out is not None and self.rotation_scale is not None:
                values += [v / self.rotation_scale for v in rot_out]
            action = np.clip(np.array(values, np.float32), -1.0, 1.0)
        return SafetyCommand(
            np.array(out), None if rot_out is None else np.array(rot_out), run_gripper, bits, action, self.fault
        )


def _joint_margin(u: list[float], w: list[float] | None, rows: np.ndarray) -> tuple[list, list | None, bool]:
    """(u, w) with the motion that breaks `rows @ [u, w] >= 0` removed: repeated projection onto the most
    violated half-space (all pass through rest, so rest is the fallback)."""
    t = np.array(u + w if w is not None and rows.shape[1] == 6 else u, np.float64)
    g = rows[:, : len(t)]
    norms = np.einsum("ij,ij->i", g, g)
    keep = norms > 1e-12
    if not keep.any():
        return u, w, False
    g, norms = g[keep], norms[keep]
    changed = False
    for _ in range(4 * len(g) + 4):
        r = g @ t
        worst = int(np.argmin(r))
        if r[worst] >= -_TOL:
            break
        t = t - (r[worst] / norms[worst]) * g[worst]
        changed = True
    else:
        if (g @ t < -_TOL).any():
            t = np.zeros_like(t)
    if not changed:
        return u, w, False
    return t[:3].tolist(), (t[3:].tolist() if len(t) == 6 else w), True


# ====================================================================================== the wrapper
def _kinematics(robot: Any) -> Any:
    """The robot's ArmKinematics (jacobian, joint_limits), or None."""
    for name in ("kin", "kinematics"):
        kin = getattr(robot, name, None)
        if kin is not None and hasattr(kin, "jacobian") and hasattr(kin, "joint_limits"):
            return kin
    return None


def _motion_map(kin: Any, q: np.ndarray) -> np.ndarray:
    """n x 6: the joint motion the robot's IK makes, to first order, of a TCP motion [delta; rotation]."""
    jac = kin.jacobian(q)
    n = jac.shape[1]
    if n >= 6:
        return np.linalg.pinv(jac, rcond=1e-4)
    jp, jo = jac[:3], jac[3:]
    pos = np.linalg.pinv(jp, rcond=1e-6)  # position first (n x 3)
    null = np.eye(n) - pos @ jp
    rot = null @ np.linalg.pinv(jo @ null, rcond=1e-6)  # the orientation in what the position leaves free
    return np.hstack((pos - rot @ jo @ pos, rot))


def _margin_rows(kin: Any, q: np.ndarray, near_lo: np.ndarray, near_hi: np.ndarray, n_move: int) -> np.ndarray:
    """Rows g (m x n_move) with the allowed TCP motions t = [delta(, rotation)] being g @ t >= 0, for the joints
    `near_lo` / `near_hi` within the margin of their low / high limit.

    Arms of 6 joints or more (a damped least-squares IK over every joint): a joint's motion is J^+ t, and motion
    driving a near joint further in is removed. Arms of fewer (a position-first IK that locks a joint at its
    limit and gives up the orientation there, like the SO-101 holding the gripper down high above the table):
    only position motion the other joints cannot make is restricted (pushing an outstretched arm further out,
    turning the base past its limit): the part of J_p^+ t outside what the free joints reach."""
    n = len(q)
    if n >= 6:
        motion = _motion_map(kin, q)[:, :n_move]
        return np.vstack((motion[near_lo], -motion[near_hi]))
    jp = kin.jacobian(q)[:3]
    near = near_lo | near_hi
    reach = np.linalg.pinv(jp[:, ~near], rcond=1e-6) if (~near).any() else np.zeros((0, 3))
    outside = np.eye(3) - jp[:, ~near] @ reach  # projector onto what the free joints cannot do
    motion = np.linalg.pinv(jp, rcond=1e-6) @ outside  # n x 3
    rows = np.vstack((motion[near_lo], -motion[near_hi]))
    return np.hstack((rows, np.zeros((len(rows), n_move - 3))))


class SafetyWrapper(gym.Wrapper):
    """The safety layer around a RobotEnv (see the module docstring): wrap it first, so that every wrapper's
    actions (a person's teleop too) pass through it. `limits` is resolved here against the env's robot and
    task (it is then `self.limits`). `clock` (s): the time source of the late-command check. The first hold
    or fault of each kind is logged (`log`) with its cause and fix; every one is in the step's StepInfo."""

    def __init__(
        self,
        env: gym.Env,
        limits: SafetyLimits | None = None,
        robot_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = log,
    ) -> None:
        super().__init__(env)
        base = env.unwrapped
        robot, task = getattr(base, "robot", None), getattr(base, "task", None)
        if robot is None or task is None:
            raise ValueError(f"the safety layer wraps a RobotEnv (a robot and a task), not {type(base).__name__}")
        self.robot, self.task, self.base, self.clock = robot, task, base, clock
        self.limits = (limits or SafetyLimits()).resolve(robot, task, robot_name)
        self.rotation = bool(task.rotation)
        self.layer = SafetyLayer(
            self.limits, robot.control_dt, self.rotation, task.action_scale, getattr(task, "rotation_scale", None)
        )
        self.n_move = 6 if self.rotation else 3
        self.kin = _kinematics(robot) if self.limits.joint_margin > 0 else None
        if self.kin is not None:
            lo, hi = (np.asarray(b, np.float64).copy() for b in self.kin.joint_limits)
            calibration = getattr(robot, "calibration", None)  # a serial arm's measured limits
            joints = getattr(calibration, "joints", None)
            if joints:
                n = len(lo)
                lo = np.maximum(lo, [j.pos_min for j in joints[:n]])
                hi = np.minimum(hi, [j.pos_max for j in joints[:n]])
            self.joint_lo, self.joint_hi = lo + self.limits.joint_margin, hi - self.limits.joint_margin
        self.reports_orientation = type(robot).rotation_to_home is not Robot.rotation_to_home
        if self.limits.max_force is not None and robot.wrench() is None:
            raise UserError(
                f"safety.max_force={self.limits.max_force:g} N but {type(robot).__name__} has no force-torque sensor "
                "(wrench): set safety.max_force=null"
            )
        self._reanchor = float(getattr(robot, "reanchor_dist", 0.0) or 0.0)
        self._workspace = getattr(robot, "workspace", None)  # the box a robot with a TCP target clips it into
        self._orientation = np.zeros(3)  # the layer's own orientation estimate (robots that report none)
        self._expected: np.ndarray | None = None  # where the last command left the robot's target
        self.last_reference: np.ndarray | None = None  # the TCP target the last step's displacement was added to
        self._obs_time: float | None = None
        self._stale = False
        self.log, self._told = log, 0  # the hold/fault kinds already logged

    @property
    def fault(self) -> bool:
        """A fault is latched (until reset)."""
        return self.layer.fault

    # ------------------------------------------------------------------ gym
    def reset(self, **kwargs: Any):
        observation, info = self.env.reset(**kwargs)
        self.layer.reset()
        self._orientation[:] = 0.0
        self._expected = None
        self._stale = self.robot.frame_age_s() > self.limits.max_obs_age  # NaN (unknown) is not stale
        self._obs_time = self.clock()
        return observation, info

    def step(self, action: np.ndarray):
        raw = np.asarray(action, dtype=np.float32)
        if raw.shape != self.action_space.shape:
            return self.env.step(action)  # RobotEnv's one-line shape error
        limits, robot = self.limits, self.robot
        hold = _HOLD_STALE if self._stale else 0
        delay = 0.0 if self._obs_time is None else self.clock() - self._obs_time
        if delay > limits.max_command_delay:
            hold |= _HOLD_LATE
        force = 0.0
        if limits.max_force is not None:
            wrench = robot.wrench()
            force = 0.0 if wrench is None else math.hypot(*np.asarray(wrench, np.float64)[:3].tolist())
            if force > limits.max_force:
                hold |= _HOLD_FORCE
        state = robot.read_state()
        position = self.last_reference = self._reference(state.tcp_pos)
        clipped = np.clip(raw, -1.0, 1.0)  # RobotEnv's own clip
        if not np.isfinite(raw).all():  # NaN or +-inf (which a clip would hide): the layer faults
            clipped = raw
        delta = clipped[:3].astype(np.float64) * self.task.action_scale
        orientation = rot_delta = None
        if self.rotation:
            rot_delta = clipped[3:6].astype(np.float64) * self.task.rotation_scale
            orientation = self._orientation_offset()
        previous = float(self.base.gripper)
        wanted = float(clipped[-1])
        gripper = self.task.gripper_command(wanted, previous) if math.isfinite(wanted) else wanted
        rows = self._joint_rows(np.asarray(state.joint_pos, np.float64)) if self.kin is not None else None
        command = self.layer.filter(position, delta, orientation, rot_delta, gripper, previous, hold, rows)

        executed = action
        if command.bits:
            executed = np.where(np.isfinite(clipped), clipped, 0.0).astype(np.float32)
            executed[: self.n_move] = command.action
            if command.gripper != gripper:
                executed[-1] = np.float32(previous)
        if self.rotation and not command.fault:
            rotation, offset_step = self._exact_rotation(orientation, command.rot_delta)
            executed = np.array(executed, dtype=np.float32)
            executed[3:6] = rotation / self.task.rotation_scale
        observation, reward, terminated, truncated, info = self.env.step(executed)

        if getattr(robot, "tcp_target", None) is not None:
            self._expected = position + command.delta
            if self._workspace is not None:  # the robot clips its target into its workspace after adding the step
                self._expected = np.clip(self._expected, self._workspace[0], self._workspace[1])
        if self.rotation and not self.reports_orientation and not command.fault:
            self._orientation += offset_step
        step = StepInfo.of(info)
        if command.bits or (self.rotation and not np.array_equal(executed, raw)):
            step.executed_action = executed  # what ran: a rotation differs from the request by the composition
        if command.bits:
            step.safety_actions = safety_names(command.bits)
            if command.bits & (_HOLDS | _FAULT) & ~self._told:
                self._tell(command.bits & (_HOLDS | _FAULT) & ~self._told, delay, force, raw)
        self._stale = step.frame_age_s > limits.max_obs_age
        self._obs_time = self.clock()
        if command.fault:
            robot.stop()
            truncated = truncated or not terminated
        return observation, reward, terminated, truncated, info

    # ------------------------------------------------------------------ the robot's side
    def _reference(self, measured: np.ndarray) -> np.ndarray:
        """Where the robot's TCP target will be when it adds this step's displacement: its target, pulled
        toward the measured TCP as the robot itself re-anchors a target the arm lags behind (MujocoRobot,
        SerialRobot); the measured TCP for a robot without a target (the ROS client)."""
        target = getattr(self.robot, "tcp_target", None)
        if target is None:
            return np.asarray(measured, np.float64)
        target = np.asarray(target, np.float64)
        if self._expected is not None and np.abs(target - self._expected).max() > _REBASE_TOL:
            self.layer.rebase()  # stopped (robot.stop()) or otherwise moved by the robot: restart from rest
        if self._reanchor > 0:
            offset = target - measured
            dist = math.sqrt(float(offset @ offset))
            if dist > self._reanchor:
                target = measured + offset * (self._reanchor / dist)
        return target

    def _exact_rotation(self, offset: np.ndarray, offset_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The layer bounds the orientation target's offset from home (a rotation vector) per axis; the robot
        turns its target by a rotation w: exp(w) exp(offset). The w that moves the offset by exactly
        `offset_step` is log(exp(offset + step) exp(offset)^T); where that needs more than a full action (the
        composition adds about |step| |offset| / 2), the step is shortened along itself (so it stays inside
        the box and under the speed) until it fits. Returns (w, the offset step it makes), and keeps the
        layer's last angular step consistent with it."""
        from robot_rl.robots.mujoco import mat_to_rotvec, rotvec_to_mat  # rotation tasks only

        start = rotvec_to_mat(offset)
        for _ in range(40):
            rotation = mat_to_rotvec(rotvec_to_mat(offset + offset_step) @ start.T)
            if np.abs(rotation).max() <= self.task.rotation_scale:
                break
            offset_step = offset_step * 0.9
        else:  # pragma: no cover - 0.9**40 of a step always fits
            rotation, offset_step = np.zeros(3), np.zeros(3)
        self.layer.angular = offset_step.tolist()
        return rotation, offset_step

    def _orientation_offset(self) -> np.ndarray:
        """The orientation target's offset from home (base-frame rotation vector)."""
        if not self.reports_orientation:
            return self._orientation
        to_home = self.robot.rotation_to_home()
        return np.zeros(3) if to_home is None else -np.asarray(to_home, np.float64)

    def _joint_rows(self, q: np.ndarray) -> np.ndarray | None:
        """The joint-margin constraints for joints at `q` (None when no joint is within the margin)."""
        near_lo, near_hi = q < self.joint_lo, q > self.joint_hi
        if not (near_lo.any() or near_hi.any()):
            return None
        return _margin_rows(self.kin, q, near_lo, near_hi, self.n_move)

    def _tell(self, bits: int, delay: float, force: float, action: np.ndarray) -> None:
        """Log the first hold or fault of each kind: what happened and what to do."""
        self._told |= bits
        limits = self.limits
        if bits & _HOLD_LATE:
            self.log(
                f"[safety] held the arm: a command came {delay * 1e3:.0f} ms after its observation "
                f"(safety.max_command_delay {limits.max_command_delay * 1e3:.0f} ms): the policy, or the learner "
                "between steps, is too slow for the robot (device=cuda, a smaller agent.utd); logged once, every "
                "hold is in the episode log (data/safety)"
            )
        if bits & _HOLD_STALE:
            self.log(
                f"[safety] held the arm: the observation's camera frame was older than safety.max_obs_age "
                f"{limits.max_obs_age * 1e3:.0f} ms: check the cameras (robot.cameras) and the USB bus; logged once"
            )
        if bits & _HOLD_FORCE:
            self.log(
                f"[safety] held the arm: {force:.1f} N on the hand (safety.max_force {limits.max_force:g} N); "
                "logged once"
            )
        if bits & _FAULT:
            self.log(
                f"[safety] fault: a non-finite action {np.asarray(action).tolist()}: the episode ends and the "
                "robot is stopped (every later NaN/inf too); logged once"
            )
