"""Automatic resets: a reset procedure any Robot can execute, with failure detection and retries.

Two modes:
  - "state": `robot.reset(tcp)` puts the arm at the start pose directly (in sim a state reset, a
    teleport: the fastest; on hardware a joint-space move, slow) and the scene is placed.
  - "physical": the motions a real arm makes, through the Robot interface only (`apply_action`
    with TCP deltas + gripper, `read_state`): open the gripper (release what it holds), lift to a
    safe height, traverse above the start TCP, descend to it, settle. The scene (an object to put
    back) is placed by the task's `place` hook once the arm is lifted clear: in sim a state reset of
    the object (no arm motion can put a cube at a random pose); on hardware a human or a fixture.
    A full reset (`robot.reset(tcp)`: a joint-space move to the home orientation and posture at
    safe height above the start TCP; sim: a state reset) runs every `full_reset_every` episodes
    once the arm is lifted clear, and first thing on the first episode, before every retry and after
    a reset that gave up (the arm's state is then untrusted). It goes to the point above the start
    rather than to joint home (`robot.reset()`) because the sim's home TCP lies above the workspace
    box, so the first TCP delta after it would snap the target 17 cm down in one control step.

Every attempt ends with a check (TCP within `pos_tol` of the start TCP, gripper open, TCP speed
below `vel_tol`, plus the task's scene check); a failed attempt is retried after a full reset, up
to `max_retries` times, then `ResetError` says what failed and how to fix it, in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robot_rl.robots.base import Robot, RobotState

MODES = ("state", "physical")
STALL = 1e-3  # m per control step: the gripper has stopped opening
ROT_STEP = 0.15  # rad per control step: how fast a physical reset turns a 6-DoF TCP back home

#: a scene hook: put the objects back (called once the arm is clear)
PlaceFn = Callable[[], None]
#: a scene check: None when the scene is in its start state, else (what is wrong, the fix), one line each
CheckFn = Callable[[], "tuple[str, str] | None"]


class ResetError(RuntimeError):
    """The robot could not be reset after all retries; the message names the failure and the fix."""


@dataclass
class ResetConfig:
    """Reset procedure settings (SI units; lengths in metres, speeds in m/s)."""

    mode: str = "state"
    #: physical mode: full reset (robot.reset: joint-space move) every N episodes; 0 = only on
    #: the first episode, before a retry and after a reset that gave up
    full_reset_every: int = 50
    #: failed attempts retried (each after a full reset) before ResetError
    max_retries: int = 2
    #: TCP height the arm lifts to before traversing (m)
    safe_height: float = 0.25
    #: largest TCP move per control step during reset motions (m)
    step: float = 0.03
    #: the start TCP must be reached within this distance (m)
    pos_tol: float = 0.01
    #: the TCP must be slower than this at the end of the reset (m/s)
    vel_tol: float = 0.02
    #: the gripper counts as open when within this of its full opening (m)
    gripper_tol: float = 0.005
    #: most control steps for one motion (release, lift, traverse, descend) before it fails
    move_steps: int = 40

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"reset_mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.full_reset_every < 0 or self.max_retries < 0:
            raise ValueError(
                f"full_reset_every and max_reset_retries must be >= 0 (got {self.full_reset_every}, {self.max_retries})"
            )
        for name in ("step", "pos_tol", "vel_tol", "gripper_tol"):
            if getattr(self, name) <= 0:
                raise ValueError(f"reset {name} must be > 0, got {getattr(self, name)}")
        if self.move_steps < 1:
            raise ValueError(f"reset move_steps must be >= 1, got {self.move_steps}")


@dataclass
class ResetResult:
    """What one reset did: attempts made (1 = no retry), wall seconds, whether a full reset (joint
    home or state reset) ran, control steps executed, and the reason of each failed attempt."""

    attempts: int
    seconds: float
    full_reset: bool
    steps: int = 0
    failures: list[str] = field(default_factory=list)


class _AttemptFailed(Exception):
    """One reset attempt failed; the message is the reason, `fix` the remedy."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.fix = fix


class ResetProcedure:
    """Runs resets for one robot and counts episodes for the periodic full reset."""

    def __init__(self, cfg: ResetConfig | None = None) -> None:
        self.cfg = cfg or ResetConfig()
        self.episodes = 0  # resets run so far (one per episode)
        self._steps = 0
        self._gave_up = False  # the last reset raised ResetError

    def recovery_due(self) -> bool:
        """Is the robot's state untrusted (first episode, or the last reset gave up)? Then a
        physical reset starts with a full reset instead of moving from wherever the arm is."""
        return self.episodes == 0 or self._gave_up

    def full_reset_due(self) -> bool:
        """Physical mode: is this episode's reset a full one (first episode, every
        `full_reset_every` episodes, after a reset that gave up)?"""
        every = self.cfg.full_reset_every
        return self.recovery_due() or (every > 0 and self.episodes % every == 0)

    def run(
        self, robot: Robot, start_tcp: np.ndarray, place: PlaceFn | None = None, check: CheckFn | None = None
    ) -> ResetResult:
        """Reset `robot` to TCP `start_tcp` (gripper open, at rest) and the scene via `place`,
        verified by the built-in checks and `check`; retries, then raises ResetError."""
        cfg = self.cfg
        t0 = time.perf_counter()
        self._steps = 0
        target = np.clip(np.asarray(start_tcp, dtype=np.float64), *robot.workspace)
        failures: list[str] = []
        full_any = False
        try:
            for attempt in range(1, cfg.max_retries + 2):
                recover = attempt > 1 or self.recovery_due()
                full = cfg.mode == "state" or recover or self.full_reset_due()
                full_any |= full
                try:
                    self._attempt(robot, target, recover, full, place, check)
                except _AttemptFailed as err:
                    failures.append(str(err))
                    if attempt > cfg.max_retries:
                        self._gave_up = True
                        raise ResetError(
                            f"reset failed {attempt} times (task.max_reset_retries={cfg.max_retries}, "
                            f"mode {cfg.mode}): {err}; fix: {err.fix}"
                        ) from None
                    continue
                self._gave_up = False
                return ResetResult(attempt, time.perf_counter() - t0, full_any, self._steps, failures)
        finally:
            self.episodes += 1
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ one attempt
    def _attempt(
        self, robot: Robot, target: np.ndarray, recover: bool, full: bool, place: PlaceFn | None, check: CheckFn | None
    ) -> None:
        """State mode: one `robot.reset(target)`. Physical mode: [recover] release, lift, gripper
        open (else fail), [full reset], place the scene, traverse, descend, settle. A full reset is
        `robot.reset` to the point at safe height above the start (joint-space, home orientation and
        posture seed), first thing when the state is untrusted (`recover`), else once lifted clear."""
        cfg = self.cfg
        if cfg.mode == "state":
            robot.reset(tcp_pos=target)
            if place is not None:
                place()
            self._check(robot.read_state(), robot.gripper_max_opening, target, check)
            return
        safe = max(cfg.safe_height, float(target[2]))
        above = np.clip(np.array([target[0], target[1], safe]), *robot.workspace)
        if recover:
            robot.reset(tcp_pos=above)
        self._release(robot)
        cmd = robot.read_state().tcp_pos  # where the TCP target path starts
        cmd = self._path(robot, cmd, np.array([cmd[0], cmd[1], max(safe, cmd[2])]), "lifting")
        self._release(robot, "after lifting")
        if full and not recover:
            cmd = robot.reset(tcp_pos=above).tcp_pos
        if place is not None:
            place()  # the arm is lifted clear of the scene
        cmd = self._path(robot, cmd, np.array([target[0], target[1], cmd[2]]), "traversing")
        self._path(robot, cmd, target, "descending to the start TCP")
        self._settle(robot, target)
        self._check(robot.read_state(), robot.gripper_max_opening, target, check)

    def _act(self, robot: Robot, delta: np.ndarray) -> RobotState:
        self._steps += 1
        back = robot.rotation_to_home() if getattr(robot, "supports_rotation", False) else None
        if back is not None:  # a 6-DoF episode left the TCP turned: turn it home on the way, ROT_STEP at a time
            angle = float(np.linalg.norm(back))
            return robot.apply_action(delta, -1.0, back * min(1.0, ROT_STEP / angle) if angle > 0 else back)
        return robot.apply_action(delta, -1.0)  # the gripper stays open through every reset motion

    def _release(self, robot: Robot, what: str | None = None) -> None:
        """Open the gripper in place until it is open or stops opening. With `what` (a phase name)
        a gripper that is not then open fails the attempt (a jam); without, the arm goes on (a
        finger pressed against the object opens once the arm lifts)."""
        need = robot.gripper_max_opening - self.cfg.gripper_tol
        s = robot.read_state()
        for i in range(self.cfg.move_steps):
            if s.gripper_opening >= need:
                return
            prev = s.gripper_opening
            s = self._act(robot, np.zeros(3))
            if i >= 1 and s.gripper_opening - prev < STALL:
                break
        if what is not None and s.gripper_opening < need:
            raise _AttemptFailed(
                f"gripper did not open {what} ({s.gripper_opening:.3f} m, need >= {need:.3f} m)",
                "check the gripper for a jam or an object stuck between the fingers",
            )

    def _path(self, robot: Robot, cmd: np.ndarray, goal: np.ndarray, what: str) -> np.ndarray:
        """Ramp the commanded TCP `cmd` to `goal` in straight steps of at most `cfg.step` (a
        trajectory, not a servo loop: no overshoot); fails when the measured TCP falls more than
        2 steps behind (the arm is blocked). Returns the new commanded TCP."""
        cfg = self.cfg
        goal = np.clip(goal, *robot.workspace)
        cmd = cmd.copy()
        for _ in range(cfg.move_steps):
            err = goal - cmd
            dist = float(np.linalg.norm(err))
            if dist <= 0.1 * cfg.pos_tol:  # close enough: the settle corrects the rest
                return cmd
            delta = err if dist <= cfg.step else err * (cfg.step / dist)
            cmd += delta
            s = self._act(robot, delta)
            lag = float(np.linalg.norm(cmd - s.tcp_pos))
            if lag > 2 * cfg.step + cfg.pos_tol:  # well beyond tracking lag + a target offset
                raise _AttemptFailed(
                    f"arm blocked while {what}: TCP {np.round(s.tcp_pos, 3).tolist()} is {lag:.3f} m behind "
                    f"its commanded path",
                    "clear the arm's path (and check the workspace bounds)",
                )
        raise _AttemptFailed(
            f"{what} needs more than {cfg.move_steps} steps of {cfg.step} m",
            "raise task.reset_move_steps or task.reset_step",
        )

    def _settle(self, robot: Robot, goal: np.ndarray) -> None:
        """Hold until the TCP is at rest; if it rests off `goal` (the robot's target was offset from
        its TCP when the path began), correct by the measured error. Ends within half the check's
        tolerances."""
        cfg = self.cfg
        s = robot.read_state()
        for _ in range(cfg.move_steps):
            err = goal - s.tcp_pos
            dist = float(np.linalg.norm(err))
            still = float(np.linalg.norm(s.tcp_vel)) <= 0.5 * cfg.vel_tol
            if still and dist <= 0.5 * cfg.pos_tol:
                return
            delta = np.zeros(3)
            if still:
                delta = err if dist <= cfg.step else err * (cfg.step / dist)
            s = self._act(robot, delta)
        # the check that follows reports what is off

    def _check(self, s: RobotState, max_opening: float, target: np.ndarray, check: CheckFn | None) -> None:
        """Did the reset reach a valid start state? Raises _AttemptFailed naming what is wrong."""
        cfg = self.cfg
        off = float(np.linalg.norm(s.tcp_pos - target))
        if off > cfg.pos_tol:
            raise _AttemptFailed(
                f"TCP ended {off:.3f} m from the start TCP {np.round(target, 3).tolist()} (tolerance {cfg.pos_tol} m)",
                "clear the arm's path (an obstacle, a protective stop), or raise task.reset_pos_tol",
            )
        need = max_opening - cfg.gripper_tol
        if s.gripper_opening < need:
            raise _AttemptFailed(
                f"gripper not open at the start ({s.gripper_opening:.3f} m, need >= {need:.3f} m)",
                "check the gripper for a jam or an object stuck between the fingers",
            )
        speed = float(np.linalg.norm(s.tcp_vel))
        if speed > cfg.vel_tol:
            raise _AttemptFailed(
                f"arm still moving at the start ({speed:.3f} m/s, tolerance {cfg.vel_tol} m/s)",
                "check the controller gains, or raise task.reset_vel_tol",
            )
        problem = check() if check is not None else None
        if problem is not None:
            raise _AttemptFailed(*problem)
