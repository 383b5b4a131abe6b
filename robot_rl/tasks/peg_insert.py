"""Insert a held square peg into a tight square hole (Panda, in-process sim, scene sim/panda_peg_insert.xml).

The peg (2 x 2 x 7 cm) is in the gripper from the start: the reset teleports the arm to a start TCP near
`start_tcp`, puts the peg between the closed pads (its centre `grasp_offset` below the TCP, shifted by up to
`grasp_noise` along the gripper axis and along the pads' faces), lets the grasp settle and checks it. The hole
fixture (a mocap body: 4 walls on the table leaving a 2.3 cm square hole, 1.5 mm clearance per side, 3.5 cm deep)
is put at a random position in `hole_x_range` x `hole_y_range` and yaw within +-`hole_yaw_range`.

Actions are always 6-DoF (float32[7]: dx, dy, dz, rx, ry, rz, gripper; robot_rl/tasks/base.py), the gripper
sticky and closed at the start: a command below -`gripper_threshold` opens it and drops the peg.

State observation `float32[22]`, SI units, base frame (x forward, z up, table top at z = 0):
    [0:3]   TCP position (m)
    [3:6]   TCP linear velocity (m/s)
    [6]     gripper opening between the pads (m)
    [7:11]  TCP orientation quaternion (w, x, y, z; w >= 0)
    [11:14] peg tip (centre of its bottom face) minus the hole entrance (centre of the hole's top face), world
            axes (m); z < 0: the tip is below the entrance
    [14:16] cos, sin of 4 x (hole yaw - peg yaw): the relative yaw modulo the square's 90 deg symmetry
    [16:22] wrist wrench: force (N) and torque about the TCP (N m), world axes, from the contacts on the hand
            and fingers (`robot.wrench()`), zeroed at reset with the peg in hand (as a real wrist force-torque
            sensor is biased after the grasp) and clipped to +-`force_limit`, +-`torque_limit`
Entries 11:16 are privileged simulator state (peg_insert_vision leaves them out).

Success: the peg tip at least `insert_depth` below the hole's top face and inside the hole. Sparse reward: 1 on
success, which ends the episode; dense: a shaped reward in [0, 1] (approach, then depth), success not ending it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import gymnasium as gym
import numpy as np

from robot_rl.config import UserError
from robot_rl.robots.base import Robot
from robot_rl.tasks.base import Expert, Task
from robot_rl.tasks.reset import ResetError, ResetResult

SCENE = "peg_insert"
PEG, FIXTURE = "peg", "fixture"
STATE_DIM = 22
STATE_LABELS = (
    *("tcp_x", "tcp_y", "tcp_z", "tcp_vx", "tcp_vy", "tcp_vz", "gripper_opening"),
    *("tcp_qw", "tcp_qx", "tcp_qy", "tcp_qz", "tip_dx", "tip_dy", "tip_dz", "yaw_cos4", "yaw_sin4"),
    *("force_x", "force_y", "force_z", "torque_x", "torque_y", "torque_z"),
)
SETTLE_STEPS = 2  # control steps the reset lets the grasp settle before checking it


def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    """Rotation matrix (3x3) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(quat, dtype=np.float64)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def mat_to_quat(mat: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z; w >= 0) of a rotation matrix (3x3)."""
    m = np.asarray(mat, dtype=np.float64)
    w = math.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2, m[2, 1] - m[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2, m[0, 2] - m[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2, m[1, 0] - m[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def yaw_of(mat: np.ndarray) -> float:
    """Heading (rad) of a frame's x axis in the world's xy plane."""
    return math.atan2(mat[1, 0], mat[0, 0])


def wrap_quarter(angle: float) -> float:
    """`angle` modulo 90 deg, in [-45 deg, 45 deg) (a square's symmetry)."""
    quarter = math.pi / 2
    return (angle + quarter / 2) % quarter - quarter / 2


def _range(name: str, value: Sequence[float]) -> np.ndarray:
    pair = np.asarray([float(v) for v in value], dtype=np.float64)
    if pair.shape != (2,) or not pair[0] <= pair[1]:
        raise ValueError(f"peg_insert {name} must be [low, high] with low <= high, got {list(value)}: fix task.{name}")
    return pair


class PegInsertTask(Task):
    """Insert the held peg `insert_depth` deep into the hole of a randomly placed fixture."""

    scene = SCENE
    start_gripper = 1.0  # the peg is held from the start
    rotation = True

    def __init__(
        self,
        hole_x_range: Sequence[float] = (0.46, 0.54),
        hole_y_range: Sequence[float] = (-0.04, 0.04),
        hole_yaw_range: float = 0.4,
        start_tcp: Sequence[float] = (0.5, 0.0, 0.16),
        start_noise: float = 0.02,
        grasp_offset: float = 0.02,
        grasp_noise: float = 0.003,
        insert_depth: float = 0.02,
        reward: str = "sparse",
        max_steps: int = 100,
        action_scale: float = 0.02,
        rotation_scale: float = 0.1,
        rotation_limits: Sequence[float] = (0.3, 0.3, 0.8),
        gripper_threshold: float = 0.5,
        grasp_penalty: float = 0.02,
        force_limit: float = 30.0,
        torque_limit: float = 3.0,
        max_reset_retries: int = 2,
        grasp_tol: float = 0.004,
        randomize: Mapping | float | None = None,
        perturb: Mapping | None = None,
    ) -> None:
        """Lengths in metres, angles in radians, base frame; see configs/task/peg_insert.yaml for each key.
        `randomize` and `perturb` must stay null (domain randomisation acts on pick_cube's cube)."""
        if randomize is not None or perturb is not None:
            raise ValueError(
                "peg_insert has no domain randomisation yet: remove task.randomize / task.perturb (set them null)"
            )
        if reward not in ("sparse", "dense"):
            raise ValueError(f"peg_insert reward must be 'sparse' or 'dense', got {reward!r}: fix task.reward")
        self.hole_x_range = _range("hole_x_range", hole_x_range)
        self.hole_y_range = _range("hole_y_range", hole_y_range)
        self.start_tcp = np.asarray([float(v) for v in start_tcp], dtype=np.float64)
        if self.start_tcp.shape != (3,):
            raise ValueError(f"peg_insert start_tcp must be [x, y, z] (m), got {list(start_tcp)}: fix task.start_tcp")
        limits = tuple(float(v) for v in rotation_limits)
        if len(limits) != 3 or min(limits) < 0:
            raise ValueError(
                f"peg_insert rotation_limits must be 3 angles >= 0 (rad), got {list(rotation_limits)}: "
                "fix task.rotation_limits"
            )
        self.rotation_limits = limits  # type: ignore[assignment]
        positive = {
            "max_steps": max_steps,
            "action_scale": action_scale,
            "rotation_scale": rotation_scale,
            "insert_depth": insert_depth,
            "force_limit": force_limit,
            "torque_limit": torque_limit,
            "grasp_tol": grasp_tol,
            "gripper_threshold": gripper_threshold,
        }
        at_least_zero = {
            "hole_yaw_range": hole_yaw_range,
            "start_noise": start_noise,
            "grasp_offset": grasp_offset,
            "grasp_noise": grasp_noise,
            "grasp_penalty": grasp_penalty,
            "max_reset_retries": max_reset_retries,
        }
        for key, value in positive.items():
            if not float(value) > 0:
                raise ValueError(f"peg_insert {key} must be > 0, got {value}: fix task.{key}")
        for key, value in at_least_zero.items():
            if not float(value) >= 0:
                raise ValueError(f"peg_insert {key} must be >= 0, got {value}: fix task.{key}")
        if not float(gripper_threshold) < 1:
            raise ValueError(f"peg_insert gripper_threshold must be in (0, 1), got {gripper_threshold}")
        self.hole_yaw_range = float(hole_yaw_range)
        self.start_noise = float(start_noise)
        self.grasp_offset = float(grasp_offset)
        self.grasp_noise = float(grasp_noise)
        self.insert_depth = float(insert_depth)
        self.reward = reward
        self.max_steps = int(max_steps)
        self.action_scale = float(action_scale)
        self.rotation_scale = float(rotation_scale)
        self.gripper_threshold = float(gripper_threshold)
        self.grasp_penalty = float(grasp_penalty)
        self.force_limit = float(force_limit)
        self.torque_limit = float(torque_limit)
        self.max_reset_retries = int(max_reset_retries)
        self.grasp_tol = float(grasp_tol)
        self.gripper_mode = "sticky"
        self._bias = np.zeros(6)  # the wrist wrench at the end of the reset (the sensor's zero)
        self._bound: object | None = None

    # ------------------------------------------------------------------ scene geometry
    def bind(self, robot: Robot) -> None:
        """Read the peg's and the hole's dimensions from the robot's scene; a one-line UserError for a robot
        without the peg-insertion scene."""
        if self._bound is robot:
            return
        model = getattr(robot, "model", None)
        try:
            peg = model.geom(PEG)  # type: ignore[union-attr]
            wall = model.geom("wall_py")  # type: ignore[union-attr]
            entrance = model.site("hole_entrance")  # type: ignore[union-attr]
            self.peg_mass = float(model.body(PEG).mass[0])  # type: ignore[union-attr]
        except (AttributeError, KeyError, TypeError):
            raise UserError(
                f"peg_insert needs the in-process sim with its scene (sim/panda_peg_insert.xml); "
                f"{type(robot).__name__} has no peg and hole: build it with make_robot_env('peg_insert') "
                "(robot=mujoco robot.model=panda)"
            ) from None
        self.peg_half = np.asarray(peg.size, dtype=np.float64).copy()  # half-sizes x, y, z
        self.hole_half = float(wall.size[0])  # half-width of the square hole
        self.hole_depth = float(entrance.pos[2])  # entrance above the fixture's origin (the table)
        self._bound = robot

    # ------------------------------------------------------------------ geometry readers
    def peg_tip(self, robot: Robot) -> np.ndarray:
        """World position of the centre of the peg's bottom face (m)."""
        rot = quat_to_mat(robot.object_quat(PEG))  # type: ignore[attr-defined]
        return robot.object_pos(PEG) - rot[:, 2] * self.peg_half[2]  # type: ignore[attr-defined]

    def hole_frame(self, robot: Robot) -> tuple[np.ndarray, np.ndarray]:
        """The hole entrance's world position (m) and the fixture's rotation matrix."""
        rot = quat_to_mat(robot.object_quat(FIXTURE))  # type: ignore[attr-defined]
        return robot.object_pos(FIXTURE) + rot[:, 2] * self.hole_depth, rot  # type: ignore[attr-defined]

    def tip_in_hole(self, robot: Robot) -> np.ndarray:
        """The peg tip in the hole's frame: (x, y) across the hole, z above the entrance (m)."""
        entrance, rot = self.hole_frame(robot)
        return rot.T @ (self.peg_tip(robot) - entrance)

    def relative_yaw(self, robot: Robot) -> float:
        """Hole yaw minus peg yaw modulo 90 deg, in [-pi/4, pi/4) (rad): how far the peg must turn about z."""
        peg = quat_to_mat(robot.object_quat(PEG))  # type: ignore[attr-defined]
        _, hole = self.hole_frame(robot)
        return wrap_quarter(yaw_of(hole) - yaw_of(peg))

    def depth(self, robot: Robot) -> float:
        """How far the peg tip is below the hole's top face while inside the hole (m; 0 when not in it)."""
        tip = self.tip_in_hole(robot)
        inside = bool(np.all(np.abs(tip[:2]) <= self.hole_half))
        return max(-float(tip[2]), 0.0) if inside else 0.0

    def wrench(self, robot: Robot) -> np.ndarray:
        """The wrist wrench (force N, torque N m) less the sensor's zero from the reset, clipped."""
        raw = robot.wrench()
        if raw is None:
            return np.zeros(6)
        w = np.asarray(raw, dtype=np.float64) - self._bias
        w[:3] = np.clip(w[:3], -self.force_limit, self.force_limit)
        w[3:] = np.clip(w[3:], -self.torque_limit, self.torque_limit)
        return w

    def is_grasped(self, robot: Robot) -> bool:
        """The peg is between the pads: near its in-hand pose and the gripper closed on it."""
        s = robot.read_state()
        centre = robot.object_pos(PEG)  # type: ignore[attr-defined]
        rel = robot.tcp_rotation().T @ (centre - s.tcp_pos)  # type: ignore[attr-defined]
        width = 2 * self.peg_half[1]
        near = abs(rel[1]) < 0.005 and abs(rel[0]) < 0.01 and abs(rel[2] - self.grasp_offset) < 0.02
        return bool(near and width - 0.004 < s.gripper_opening < width + 0.002)

    # ------------------------------------------------------------------ Task API
    def observation_space(self, robot: Robot) -> gym.spaces.Dict:
        """Nominal ranges: the workspace for the TCP, the top speed for velocities, +-1 for the quaternion and
        the yaw's cos/sin, +-10 cm across and -4 .. +15 cm above the entrance for the peg tip, the clip limits
        for the wrench. The learner uses them only to scale inputs to about [-1, 1]."""
        self.bind(robot)
        lo, hi = robot.workspace
        speed = 2.0 * self.action_scale / robot.control_dt
        f, t = self.force_limit, self.torque_limit
        low = np.concatenate(
            [lo, [-speed] * 3, [0.0], [-1.0] * 4, [-0.1, -0.1, -0.04], [-1.0, -1.0], [-f] * 3, [-t] * 3]
        )
        high = np.concatenate(
            [hi, [speed] * 3, [robot.gripper_max_opening], [1.0] * 4, [0.1, 0.1, 0.15], [1.0, 1.0], [f] * 3, [t] * 3]
        )
        low, high = low.astype(np.float32), high.astype(np.float32)
        return gym.spaces.Dict({"state": gym.spaces.Box(low, high, shape=low.shape, dtype=np.float32)})

    def sample_fixture_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random fixture pose on the table: position (m) and quaternion (w, x, y, z)."""
        x = rng.uniform(*self.hole_x_range)
        y = rng.uniform(*self.hole_y_range)
        yaw = rng.uniform(-self.hole_yaw_range, self.hole_yaw_range) if self.hole_yaw_range > 0 else 0.0
        return np.array([x, y, 0.0]), np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])

    def place_scene(self, robot: Robot, rng: np.random.Generator) -> None:
        """Put the fixture at a random pose (a sim robot)."""
        self.bind(robot)
        robot.set_object_pose(FIXTURE, *self.sample_fixture_pose(rng))  # type: ignore[attr-defined]

    def reset(self, robot: Robot, rng: np.random.Generator) -> ResetResult:
        """State reset: arm at a start TCP within `start_tcp +- start_noise`, home orientation, the peg grasped
        between the closed pads, the fixture at a random pose; the grasp settles for a few control steps and is
        checked (peg still in hand, gripper closed on it, arm at rest). Retried `max_reset_retries` times, then
        ResetError."""
        self.bind(robot)
        if not hasattr(robot, "set_gripper_opening"):
            raise UserError(f"peg_insert's reset teleports the peg into the hand: {type(robot).__name__} cannot")
        t0 = time.perf_counter()
        failures: list[str] = []
        steps = 0
        for attempt in range(1, self.max_reset_retries + 2):
            tcp = self.start_tcp + rng.uniform(-self.start_noise, self.start_noise, size=3)
            robot.reset(tcp_pos=tcp)
            self.place_scene(robot, rng)
            s = robot.read_state()
            rot = robot.tcp_rotation()  # type: ignore[attr-defined]
            # the peg's faces parallel to the pads, its axis along the gripper's (the TCP's z points down)
            along, across = rng.uniform(-self.grasp_noise, self.grasp_noise, size=2)
            in_hand = np.array([across, 0.0, self.grasp_offset + along])
            peg_rot = rot @ robot.home_tcp_rot.T  # type: ignore[attr-defined]
            robot.set_object_pose(PEG, s.tcp_pos + rot @ in_hand, mat_to_quat(peg_rot))  # type: ignore[attr-defined]
            robot.set_gripper_opening(2 * self.peg_half[1], 1.0)  # type: ignore[attr-defined]
            for _ in range(SETTLE_STEPS):
                robot.apply_action(np.zeros(3), 1.0, np.zeros(3))
                steps += 1
            problem = self._grasp_problem(robot, tcp, in_hand)
            if problem is None:
                self._bias = np.asarray(robot.wrench(), dtype=np.float64).copy()
                return ResetResult(attempt, time.perf_counter() - t0, True, steps, failures)
            failures.append(problem)
        raise ResetError(
            f"reset failed {len(failures)} times (task.max_reset_retries={self.max_reset_retries}): {failures[-1]}; "
            "fix: check the peg's grasp in sim/panda_peg_insert.xml (pad friction, grip force) or task.grasp_tol"
        )

    def _grasp_problem(self, robot: Robot, tcp: np.ndarray, in_hand: np.ndarray) -> str | None:
        """None when the reset's grasp holds (peg within `grasp_tol` of where it was put in the hand, gripper
        closed on it, TCP at the start and at rest), else what is wrong."""
        s = robot.read_state()
        rot = robot.tcp_rotation()  # type: ignore[attr-defined]
        slip = float(np.linalg.norm(rot.T @ (robot.object_pos(PEG) - s.tcp_pos) - in_hand))  # type: ignore[attr-defined]
        if slip > self.grasp_tol:
            return f"peg slipped {slip:.4f} m in the hand while the grasp settled (tolerance {self.grasp_tol} m)"
        if not self.is_grasped(robot):
            return f"gripper not closed on the peg (opening {s.gripper_opening:.4f} m)"
        off = float(np.linalg.norm(s.tcp_pos - robot.clip_to_workspace(tcp)))  # type: ignore[attr-defined]
        if off > 0.01:
            return f"TCP ended {off:.3f} m from the start TCP"
        if float(np.linalg.norm(s.tcp_vel)) > 0.05:
            return f"arm still moving at the start ({float(np.linalg.norm(s.tcp_vel)):.3f} m/s)"
        return None

    def observe(self, robot: Robot) -> dict[str, np.ndarray]:
        """The state vector of the module docstring."""
        self.bind(robot)
        s = robot.read_state()
        state = np.empty(STATE_DIM, dtype=np.float32)
        state[0:3] = s.tcp_pos
        state[3:6] = s.tcp_vel
        state[6] = s.gripper_opening
        quat = robot.tcp_quat()
        state[7:11] = quat if quat[0] >= 0 else -quat  # type: ignore[index,operator]
        entrance, _ = self.hole_frame(robot)
        state[11:14] = self.peg_tip(robot) - entrance
        yaw = 4.0 * self.relative_yaw(robot)
        state[14:16] = (math.cos(yaw), math.sin(yaw))
        state[16:22] = self.wrench(robot)
        return {"state": state}

    def evaluate(self, robot: Robot) -> tuple[float, bool, bool]:
        """Sparse: 1 on success, which ends the episode. Dense: 0.5 x (1 - tanh(10 x tip-to-entrance distance))
        plus 0.5 x the inserted fraction of `insert_depth`; 1 on success, which does not end the episode."""
        self.bind(robot)
        depth = self.depth(robot)
        success = depth >= self.insert_depth
        if self.reward == "sparse":
            return (1.0 if success else 0.0), success, success
        if success:
            return 1.0, True, False
        reach = 1.0 - math.tanh(10.0 * self._approach_distance(robot))
        return float(0.5 * reach + 0.5 * min(depth / self.insert_depth, 1.0)), False, False

    def _approach_distance(self, robot: Robot) -> float:
        tip = self.tip_in_hole(robot)
        return float(np.linalg.norm([tip[0], tip[1], max(tip[2], 0.0)]))

    def progress(self, robot: Robot) -> float:
        """Minus the peg tip's distance to the hole entrance (across, and height above it), plus the depth
        inserted (m)."""
        self.bind(robot)
        return -self._approach_distance(robot) + self.depth(robot)

    def expert(self, env, noise: float = 0.0, rng: np.random.Generator | None = None) -> Expert:
        """The scripted insertion expert (robot_rl/tasks/peg_insert_expert.py); reads privileged sim state."""
        from robot_rl.tasks.peg_insert_expert import ScriptedInsertExpert

        return ScriptedInsertExpert(env, noise=noise, rng=rng)
