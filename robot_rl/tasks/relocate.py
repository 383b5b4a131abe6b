"""Relocate the cube between two regions of pick_cube's table: a forward/backward task pair for reset-free practice.

`direction: forward` moves the cube from region A to region B, `backward` from B to A (FastRLAP / RoboFuME's
idea: each direction's policy undoes the other's work, so a person resets the scene only after a failure;
robot_rl/runtime/reset_free.py trains the pair). Regions are squares of half-width `region_half_width` around
`region_a` / `region_b` (x, y centres, m) inside the arm's cube area (`cube_x_range` x `cube_y_range`); left
null they come from it: both at the area's middle x, at y = -+0.8 of its half-width, half-width 0.2 of it
(Panda: (0.5, -0.08) and (0.5, 0.08), 2 cm; SO-101: (0.18, -0.056) and (0.18, 0.056), 1.4 cm).

State `float32[12]`: pick_cube's 10 values (robot_rl/tasks/pick_cube.py) then the goal region's centre (x, y),
so that one network could serve both directions (here each direction trains its own agent).
Success: the cube's centre inside the goal square, resting on the table (within `rest_tol` of its resting
height) and let go (gripper opening at least the cube's width + `release_margin`). Sparse reward: 1 on success,
which terminates the episode.

Resets. The standard reset (evals, demos, a run that resets every episode) is pick_cube's with the cube placed
at random in the start square (A forward, B backward). With `keep_scene` set (the reset-free trainer sets it)
a reset moves the arm only: the physical reset procedure (release, lift, traverse, descend to the start TCP;
robot_rl/tasks/reset.py) whatever `reset_mode` says, the cube staying where the last episode left it. Then
`failure` checks the scene; a failure (or an arm reset that gave up) falls back to the standard reset, the
sim's stand-in for a person, and is reported in `person_reset` for the trainer to count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import gymnasium as gym
import numpy as np

from robot_rl.robots.arms import ArmModel
from robot_rl.robots.base import Robot
from robot_rl.tasks.base import Expert
from robot_rl.tasks.pick_cube import PickCubeTask
from robot_rl.tasks.reset import ResetError, ResetProcedure, ResetResult

DIRECTIONS = ("forward", "backward")
GOAL_DIM = 2  # the goal region's centre (x, y) appended to pick_cube's state


class _KeepObjects:
    """A robot whose `reset` (a joint-space move of the arm; in the sim `mj_resetData`, which would put every
    object back too) leaves the named objects where they are: what a real arm's home move does."""

    def __init__(self, robot: Robot, names: Sequence[str]) -> None:
        self._robot, self._names = robot, tuple(names)

    def __getattr__(self, name: str):
        return getattr(self._robot, name)

    def reset(self, tcp_pos: np.ndarray | None = None):
        poses = [(n, self._robot.object_pos(n), self._robot.object_quat(n)) for n in self._names]
        state = self._robot.reset(tcp_pos=tcp_pos)
        for name, pos, quat in poses:
            self._robot.set_object_pose(name, pos, quat)
        return state


class RelocateTask(PickCubeTask):
    """Carry the cube from the start region to the goal region and put it down there (see the module docstring)."""

    def __init__(
        self,
        direction: str = "forward",
        region_a: Sequence[float] | None = None,
        region_b: Sequence[float] | None = None,
        region_half_width: float | None = None,
        reach_margin: float = 0.05,
        rest_tol: float = 0.004,
        release_margin: float = 0.01,
        **pick_cube,
    ) -> None:
        """`direction` forward (A -> B) | backward (B -> A); `region_a`, `region_b`: (x, y) centres (m) and
        `region_half_width` (m), null = from the arm's cube area; `reach_margin` (m): how far outside the cube
        area (and never outside the workspace) the cube still counts as in reach; `rest_tol` (m) and
        `release_margin` (m): success's resting and let-go tests. Every other key is pick_cube's."""
        if direction not in DIRECTIONS:
            raise ValueError(f"relocate direction must be forward or backward, got {direction!r}: set task.direction")
        if pick_cube.get("reward", "sparse") != "sparse":
            raise ValueError(
                f"relocate has a sparse reward only, got reward={pick_cube['reward']!r}: set task.reward=sparse"
            )
        for key, value in (("region_a", region_a), ("region_b", region_b)):
            if value is not None and (len(value) != 2 or not np.all(np.isfinite(np.asarray(value, float)))):
                raise ValueError(f"relocate {key} must be 2 numbers (x, y centre in m) or null, got {list(value)}")
        if region_half_width is not None and not region_half_width > 0:
            raise ValueError(f"relocate region_half_width must be > 0 m (or null), got {region_half_width}")
        for key, value in (("reach_margin", reach_margin), ("rest_tol", rest_tol), ("release_margin", release_margin)):
            if not value >= 0:
                raise ValueError(f"relocate {key} must be >= 0 m, got {value}")
        self.direction = direction
        self._regions_given = (region_a, region_b, region_half_width)
        self.reach_margin, self.rest_tol, self.release_margin = (
            float(reach_margin),
            float(rest_tol),
            float(release_margin),
        )
        self.keep_scene = False  # the reset-free trainer's switch: resets move the arm only (module docstring)
        self.person_reset: str | None = None  # why the last keep_scene reset fell back to the standard reset
        self._bound = False
        super().__init__(**pick_cube)
        # the arm-only reset: the physical procedure with the task's settings (no teleport of the cube)
        self.arm_resetter = ResetProcedure(replace(self.resetter.cfg, mode="physical"))

    # ------------------------------------------------------------------ regions
    def use_arm(self, arm: ArmModel) -> None:
        """pick_cube's per-arm defaults, then the regions (null ones from the cube area), checked against it
        once a robot's arm is bound (the constructor's Panda defaults are provisional)."""
        super().use_arm(arm)
        low, high = self.cube_low, self.cube_high
        mid, half = (low + high) / 2, (high - low) / 2
        given_a, given_b, given_hw = self._regions_given
        # the defaults rounded to 0.1 mm: figures a person reads (0.02, not 0.020000000000000004)
        default_a, default_b = (
            np.round([mid[0], mid[1] - 0.8 * half[1]], 4),
            np.round([mid[0], mid[1] + 0.8 * half[1]], 4),
        )
        self.region_a = np.asarray(given_a if given_a is not None else default_a, np.float64)
        self.region_b = np.asarray(given_b if given_b is not None else default_b, np.float64)
        self.region_half_width = float(given_hw if given_hw is not None else round(0.2 * half[1], 4))
        hw = self.region_half_width
        if np.all(np.abs(self.region_a - self.region_b) < 2 * hw):
            raise ValueError(
                f"relocate regions overlap: A {self.region_a.tolist()} and B {self.region_b.tolist()} with "
                f"half-width {hw} m; move task.region_a / task.region_b apart or shrink task.region_half_width"
            )
        if not self._bound:
            return
        for key, centre in (("region_a", self.region_a), ("region_b", self.region_b)):
            if np.any(centre - hw < low - 1e-9) or np.any(centre + hw > high + 1e-9):
                raise ValueError(
                    f"relocate {key} {centre.tolist()} +- {hw} m leaves the {arm.name} cube area x "
                    f"{low[0]}..{high[0]}, y {low[1]}..{high[1]}: move it inside or shrink task.region_half_width"
                )

    def bind(self, robot: Robot) -> None:
        """Take the robot arm's defaults and check the regions against its cube area (once)."""
        arm = getattr(robot, "arm", None)
        if not self._bound and isinstance(arm, ArmModel):
            self._bound, self.arm = True, None  # re-derive and check even when the arm is the provisional one
            self.use_arm(arm)

    @property
    def start_region(self) -> np.ndarray:
        """Centre (x, y) of the square the cube starts in: A forward, B backward."""
        return self.region_a if self.direction == "forward" else self.region_b

    @property
    def goal_region(self) -> np.ndarray:
        """Centre (x, y) of the square the cube must end in: B forward, A backward."""
        return self.region_b if self.direction == "forward" else self.region_a

    def in_region(self, robot: Robot, centre: np.ndarray) -> bool:
        """Is the cube's centre (x, y) inside the square of `region_half_width` around `centre`?"""
        xy = robot.object_pos(self.cube_name)[:2]
        return bool(np.all(np.abs(xy - centre) <= self.region_half_width))

    def reach_box(self, robot: Robot) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) x, y where the cube counts as in reach: the cube area grown by `reach_margin`, within
        the workspace."""
        lo, hi = robot.workspace
        return (
            np.maximum(self.cube_low - self.reach_margin, np.asarray(lo)[:2]),
            np.minimum(self.cube_high + self.reach_margin, np.asarray(hi)[:2]),
        )

    # ------------------------------------------------------------------ Task
    def observation_space(self, robot: Robot) -> gym.spaces.Dict:
        """pick_cube's state space plus the goal centre, bounded by the cube area."""
        box = super().observation_space(robot)["state"]
        low = np.concatenate([box.low, self.cube_low]).astype(np.float32)
        high = np.concatenate([box.high, self.cube_high]).astype(np.float32)
        return gym.spaces.Dict({"state": gym.spaces.Box(low, high, shape=low.shape, dtype=np.float32)})

    def observe(self, robot: Robot) -> dict[str, np.ndarray]:
        state = super().observe(robot)["state"]
        return {"state": np.concatenate([state, self.goal_region.astype(np.float32)])}

    def state_noise_std(self) -> np.ndarray:
        """pick_cube's observation noise; none on the goal centre (a constant of the episode)."""
        return np.concatenate([super().state_noise_std(), np.zeros(GOAL_DIM, np.float32)])

    def sample_cube_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random resting pose in the start square."""
        hw = self.region_half_width
        xy = rng.uniform(self.start_region - hw, self.start_region + hw)
        yaw = rng.uniform(-self.cube_yaw_range, self.cube_yaw_range) if self.cube_yaw_range > 0 else 0.0
        return np.array([xy[0], xy[1], self.rest_z]), np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])

    def resting(self, robot: Robot) -> bool:
        """The cube rests on the table (centre within `rest_tol` of its resting height) and the gripper has let
        go of it (opening at least the cube's width + `release_margin`)."""
        on_table = abs(float(robot.object_pos(self.cube_name)[2]) - self.rest_z) <= self.rest_tol
        let_go = robot.read_state().gripper_opening >= 2 * self.cube_half_size + self.release_margin
        return bool(on_table and let_go)

    def evaluate(self, robot: Robot) -> tuple[float, bool, bool]:
        """Sparse: 1 and terminated once the cube rests, let go, inside the goal square."""
        success = self.in_region(robot, self.goal_region) and self.resting(robot)
        return (1.0 if success else 0.0), success, success

    def progress(self, robot: Robot) -> float:
        """Minus the TCP-to-cube distance, minus twice the cube's distance (x, y) to the goal centre (m)."""
        cube = robot.object_pos(self.cube_name)
        reach = float(np.linalg.norm(cube - robot.read_state().tcp_pos))
        return -reach - 2.0 * float(np.linalg.norm(cube[:2] - self.goal_region))

    def failure(self, robot: Robot) -> str | None:
        """Why no policy can go on from this scene, as "<kind>: <details>" (None when it can): the cube off the
        table (centre below the table top), out of reach (outside `reach_box`), or stuck in the gripper (near the
        TCP, or lifted off the table, after the arm's reset released and lifted)."""
        cube = robot.object_pos(self.cube_name)
        if cube[2] < self.table_z:
            return f"cube off the table: z {cube[2]:.3f} m"
        lo, hi = self.reach_box(robot)
        if np.any(cube[:2] < lo) or np.any(cube[:2] > hi):
            return (
                f"cube out of reach: at x {cube[0]:.3f}, y {cube[1]:.3f} (reach x {lo[0]:.2f}..{hi[0]:.2f}, "
                f"y {lo[1]:.2f}..{hi[1]:.2f})"
            )
        if np.linalg.norm(cube - robot.read_state().tcp_pos) < 0.03 or cube[2] > self.rest_z + 2 * self.cube_half_size:
            return f"cube stuck in the gripper: at {np.round(cube, 3).tolist()}"
        return None

    def reset(self, robot: Robot, rng: np.random.Generator) -> ResetResult:
        """The standard reset (pick_cube's, the cube in the start square), or with `keep_scene` the arm's
        physical reset alone, falling back to the standard one on a `failure` (noted in `person_reset`)."""
        self.person_reset = None
        if not self.keep_scene:
            return super().reset(robot, rng)
        self.bind(robot)
        tcp = self.start_tcp + rng.uniform(-self.start_noise, self.start_noise, size=3)
        try:
            result = self.arm_resetter.run(_KeepObjects(robot, [self.cube_name]), tcp)
        except ResetError as err:
            self.person_reset = f"arm reset failed: {err}"
        else:
            self.person_reset = self.failure(robot)
            if self.person_reset is None:
                return result
        return super().reset(robot, rng)

    def expert(self, env, noise: float = 0.0, rng: np.random.Generator | None = None) -> Expert:
        """The scripted relocate expert (pick, carry, place, release; robot_rl/tasks/relocate_expert.py)."""
        from robot_rl.tasks.relocate_expert import ScriptedRelocateExpert

        return ScriptedRelocateExpert(env, noise=noise, rng=rng)
