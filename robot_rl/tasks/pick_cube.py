"""Pick up a cube from the table and lift it (Panda: a 4 cm cube, SO-101: 2.5 cm; 10 cm up).

Per-arm defaults: the cube area (`cube_x_range`, `cube_y_range`), `start_tcp`, `lift_height` and
`cube_half_size` left None (null in the config) come from the robot's arm (`robot.arm`, an ArmModel of
robot_rl/robots/arms.py: MujocoRobot's `robot.model`); a robot without one gets the Panda's. Values
given explicitly win.

State observation `float32[10]`, plain SI units in the robot base frame (x forward, z up,
table top at z = 0):
    [0:3]  TCP position (m)
    [3:6]  TCP linear velocity (m/s)
    [6]    gripper opening between the pads (m, 0 closed .. 0.08 open)
    [7:10] cube centre position (m)
    [10:14] with `rotation=True` only: TCP orientation quaternion (w, x, y, z; w >= 0), base frame
With `rotation=True` (config `task.rotation=true`) the task acts in 6-DoF: actions are float32[7]
(dx, dy, dz, rx, ry, rz, gripper; see robot_rl/tasks/base.py), the orientation target staying within
`rotation_limits` of the home orientation (gripper pointing down).
The cube position is privileged simulator state: this task needs a robot with `object_pos` (the
MuJoCo robot; over ROS the bridge's `objects/cube/pose`, from the sim or from perception).

Reset (`reset_mode`, see robot_rl/tasks/reset.py): "state" teleports the arm and the cube (the
fastest; the default for training in sim); "physical" has the arm release, lift, traverse and
descend to the start TCP as a real arm would, with a full reset (`robot.reset`: a joint-space move
to the home posture) every `full_reset_every` episodes, on the first and before every retry. In
both modes the cube is put back by a state reset, since no arm motion can place it at a random
pose; a real-robot task would use "physical" with a human or a fixture for the object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import gymnasium as gym
import numpy as np

from robot_rl.config import UserError
from robot_rl.robots.arms import PANDA, ArmModel
from robot_rl.robots.base import Robot
from robot_rl.tasks.base import Expert, Task
from robot_rl.tasks.randomization import OBS_NOISE_STD, Perturbation, Randomization
from robot_rl.tasks.reset import ResetConfig, ResetProcedure, ResetResult

STATE_DIM = 10
STATE_LABELS = (
    "tcp_x",
    "tcp_y",
    "tcp_z",
    "tcp_vx",
    "tcp_vy",
    "tcp_vz",
    "gripper_opening",
    "cube_x",
    "cube_y",
    "cube_z",
)


def _require_objects(robot: Robot) -> None:
    if not hasattr(robot, "object_pos"):
        raise UserError(
            f"pick_cube needs the cube's position (object_pos); {type(robot).__name__} has none: use "
            "MujocoRobot, SerialRobot on the sim rig (robot.port=sim), or RosRobot with a bridge that publishes "
            "objects/cube/pose; on a bench without a tracker, score with a reward classifier (reward.classifier)"
        )


class PickCubeTask(Task):
    """Grasp the cube and lift it `lift_height` above its resting height."""

    def __init__(
        self,
        cube_x_range: Sequence[float] | None = None,
        cube_y_range: Sequence[float] | None = None,
        cube_yaw_range: float = 0.0,
        start_tcp: Sequence[float] | None = None,
        start_noise: float = 0.02,
        lift_height: float | None = None,
        reward: str = "sparse",
        max_steps: int = 100,
        action_scale: float = 0.03,
        cube_name: str = "cube",
        cube_half_size: float | None = None,
        table_z: float = 0.0,
        gripper_mode: str = "sticky",
        gripper_threshold: float = 0.5,
        grasp_penalty: float = 0.02,
        reset_mode: str = "state",
        full_reset_every: int = 50,
        max_reset_retries: int = 2,
        reset_safe_height: float = 0.25,
        reset_pos_tol: float = 0.01,
        reset_vel_tol: float = 0.02,
        reset_gripper_tol: float = 0.005,
        reset_step: float = 0.03,
        reset_move_steps: int = 40,
        rotation: bool = False,
        rotation_scale: float = 0.1,
        rotation_limits: Sequence[float] = (0.5, 0.5, 1.0),
        randomize: Mapping | float | None = None,
        perturb: Mapping | None = None,
    ) -> None:
        """`cube_x_range`, `cube_y_range`, `start_tcp`, `lift_height`, `cube_half_size`: None takes the
        robot arm's default (see the module docstring). Reset keys (robot_rl/tasks/reset.py):
        `reset_mode` state | physical, `full_reset_every` (episodes; 0 = only the first and before
        retries), `max_reset_retries`, `reset_safe_height` (m), tolerances `reset_pos_tol` (m),
        `reset_vel_tol` (m/s), `reset_gripper_tol` (m), `reset_step` (m of TCP motion per control step
        while resetting) and `reset_move_steps` (control steps one reset motion may take). `rotation`:
        act in 6-DoF (7-dim actions, the TCP orientation in the state), `rotation_scale` rad per unit
        action and step, `rotation_limits` half-widths (rad, base-frame x, y, z) around the home
        orientation. `randomize` ({family: strength} or one strength for all) and `perturb` (a fixed
        Perturbation, e.g. a target sim's) are validated here and applied in simulation by
        robot_rl/envs/randomize.py (robot_rl/tasks/randomization.py says what each value means)."""
        self.randomization = Randomization.from_config(randomize)
        self.perturbation = Perturbation.from_config(perturb)
        self.object_scale = 1.0  # the cube's size relative to the scene's (a size perturbation sets it)
        self.latency = 0  # control steps from an action to its execution this episode (a latency perturbation sets it)
        if reward not in ("sparse", "dense"):
            raise ValueError(f"pick_cube reward must be 'sparse' or 'dense', got {reward!r}")
        if gripper_mode not in ("sticky", "continuous"):
            raise ValueError(f"pick_cube gripper_mode must be 'sticky' or 'continuous', got {gripper_mode!r}")
        self.gripper_mode = gripper_mode
        self.rotation = bool(rotation)
        self.rotation_scale = float(rotation_scale)
        limits = tuple(float(v) for v in rotation_limits)
        if len(limits) != 3 or min(limits) < 0 or not self.rotation_scale > 0:
            raise ValueError(
                f"pick_cube rotation_limits must be 3 angles >= 0 (rad) and rotation_scale > 0, got "
                f"{list(rotation_limits)} and {rotation_scale}: fix task.rotation_limits / "
                "task.rotation_scale"
            )
        self.rotation_limits = limits  # type: ignore[assignment]
        self.gripper_threshold = float(gripper_threshold)
        self.grasp_penalty = float(grasp_penalty)
        self._given = {
            "cube_x_range": cube_x_range,
            "cube_y_range": cube_y_range,
            "start_tcp": start_tcp,
            "lift_height": lift_height,
            "cube_half_size": cube_half_size,
        }
        self.table_z = float(table_z)
        self.arm: ArmModel | None = None
        self.use_arm(PANDA)  # until a robot with an arm comes (bind)
        self.cube_yaw_range = float(cube_yaw_range)
        self.start_noise = float(start_noise)
        self.reward = reward
        self.max_steps = int(max_steps)
        self.action_scale = float(action_scale)
        self.cube_name = cube_name
        self.resetter = ResetProcedure(
            ResetConfig(
                mode=reset_mode,
                full_reset_every=int(full_reset_every),
                max_retries=int(max_reset_retries),
                safe_height=float(reset_safe_height),
                step=float(reset_step),
                pos_tol=float(reset_pos_tol),
                vel_tol=float(reset_vel_tol),
                gripper_tol=float(reset_gripper_tol),
                move_steps=int(reset_move_steps),
            )
        )

    def use_arm(self, arm: ArmModel) -> None:
        """Fill the keys given as None from `arm`'s pick_cube defaults (explicit values are kept)."""
        if arm is self.arm:
            return
        given = self._given

        def pick(key: str):
            return getattr(arm, key) if given[key] is None else given[key]

        x_range, y_range = pick("cube_x_range"), pick("cube_y_range")
        self.cube_low = np.array([x_range[0], y_range[0]], dtype=np.float64)
        self.cube_high = np.array([x_range[1], y_range[1]], dtype=np.float64)
        self.start_tcp = np.asarray(pick("start_tcp"), dtype=np.float64)
        self.lift_height = float(pick("lift_height"))
        self.nominal_cube_half_size = float(pick("cube_half_size"))
        self.arm = arm
        self.scale_object(self.object_scale)

    def scale_object(self, scale: float) -> None:
        """The cube is `scale` times its nominal size (a size perturbation): its half-size and resting height,
        which success, the reset and the expert use, follow."""
        self.object_scale = float(scale)
        self.cube_half_size = self.nominal_cube_half_size * self.object_scale
        self.rest_z = self.table_z + self.cube_half_size

    def state_noise_std(self) -> np.ndarray:
        """Per-entry std of the observation noise on "state" at obs_noise = 1 (robot_rl/tasks/randomization.py):
        positions 5 mm, velocities 0.02 m/s, the gripper opening 1 mm, the orientation quaternion none."""
        pos, vel, grip = (OBS_NOISE_STD[k] for k in ("position", "velocity", "gripper"))
        std = [pos] * 3 + [vel] * 3 + [grip] + [pos] * 3 + [0.0] * (4 if self.rotation else 0)
        return np.asarray(std, np.float32)

    def bind(self, robot: Robot) -> None:
        """Take the per-arm defaults from `robot.arm` when it has one (observation_space and reset call this)."""
        arm = getattr(robot, "arm", None)
        if isinstance(arm, ArmModel):
            self.use_arm(arm)

    def observation_space(self, robot: Robot) -> gym.spaces.Dict:
        """The nominal range of each state entry: the workspace box for positions, the top speed for
        velocities. Values can leave it (a cube knocked off the table); the learner uses it only to
        scale inputs to about [-1, 1]."""
        self.bind(robot)
        lo, hi = robot.workspace
        speed = 2.0 * self.action_scale / robot.control_dt
        low = np.concatenate([lo, [-speed] * 3, [0.0], lo]).astype(np.float32)
        high = np.concatenate([hi, [speed] * 3, [robot.gripper_max_opening], hi]).astype(np.float32)
        low[9] = self.rest_z - self.cube_half_size  # cube z: from the table up to the workspace top
        if self.rotation:
            low = np.concatenate([low, [-1.0] * 4]).astype(np.float32)
            high = np.concatenate([high, [1.0] * 4]).astype(np.float32)
        return gym.spaces.Dict({"state": gym.spaces.Box(low, high, shape=low.shape, dtype=np.float32)})

    def sample_cube_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random resting pose for the cube: position (m) and quaternion (w, x, y, z)."""
        xy = rng.uniform(self.cube_low, self.cube_high)
        yaw = rng.uniform(-self.cube_yaw_range, self.cube_yaw_range) if self.cube_yaw_range > 0 else 0.0
        return np.array([xy[0], xy[1], self.rest_z]), np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])

    def place_scene(self, robot: Robot, rng: np.random.Generator) -> None:
        """Put the cube at a random resting pose (a sim robot; the ROS sim bridge calls this on reset)."""
        self.bind(robot)
        robot.set_object_pose(self.cube_name, *self.sample_cube_pose(rng))  # type: ignore[attr-defined]

    def reset(self, robot: Robot, rng: np.random.Generator) -> ResetResult:
        """Arm to a start TCP drawn within `start_tcp +- start_noise`, gripper open, at rest; cube at a
        random pose on the table. A robot that can place objects (the in-process sim) gets the cube
        placed here; otherwise someone else placed it (a person, a fixture, the ROS sim bridge's reset)
        and the check only requires it to rest in the cube's start region. Retries a failed reset;
        raises ResetError when it cannot."""
        _require_objects(robot)
        self.bind(robot)
        tcp = self.start_tcp + rng.uniform(-self.start_noise, self.start_noise, size=3)
        tol = self.resetter.cfg.pos_tol
        if hasattr(robot, "set_object_pose"):
            cube_pos, cube_quat = self.sample_cube_pose(rng)

            def place() -> None:
                robot.set_object_pose(self.cube_name, cube_pos, cube_quat)

            def misplaced() -> str | None:
                off = float(np.linalg.norm(robot.object_pos(self.cube_name) - cube_pos))
                return (
                    f"cube ended {off:.3f} m from its start pose {np.round(cube_pos, 3).tolist()}"
                    if off > tol
                    else None
                )
        else:

            def place() -> None:
                pass

            def misplaced() -> str | None:
                pos = robot.object_pos(self.cube_name)
                inside = np.all(pos[:2] >= self.cube_low - tol) and np.all(pos[:2] <= self.cube_high + tol)
                if inside and abs(pos[2] - self.rest_z) <= tol:
                    return None
                return (
                    f"cube at {np.round(pos, 3).tolist()} is not resting in its start region "
                    f"x {self.cube_low[0]}..{self.cube_high[0]}, y {self.cube_low[1]}..{self.cube_high[1]}"
                )

        def check() -> tuple[str, str] | None:
            problem = misplaced()
            if problem is None:
                return None
            return (
                problem,
                "check what puts the cube back (sim: its free joint or the bridge's reset; hardware: "
                "the operator or the fixture) and that the arm's reset path clears it "
                "(task.reset_safe_height)",
            )

        return self.resetter.run(robot, tcp, place, check)

    def observe(self, robot: Robot) -> dict[str, np.ndarray]:
        s = robot.read_state()
        state = np.empty(STATE_DIM + (4 if self.rotation else 0), dtype=np.float32)
        state[0:3] = s.tcp_pos
        state[3:6] = s.tcp_vel
        state[6] = s.gripper_opening
        state[7:10] = robot.object_pos(self.cube_name)
        if self.rotation:
            quat = robot.tcp_quat()
            if quat is None:
                raise TypeError(
                    f"pick_cube with task.rotation=true needs the TCP orientation; {type(robot).__name__} "
                    "reports none (tcp_quat)"
                )
            state[10:14] = quat if quat[0] >= 0 else -quat
        return {"state": state}

    def expert(self, env, noise: float = 0.0, rng: np.random.Generator | None = None) -> Expert:
        """The scripted pick expert (robot_rl/tasks/pick_cube_expert.py); reads privileged sim state."""
        from robot_rl.tasks.pick_cube_expert import ScriptedPickExpert

        return ScriptedPickExpert(env, noise=noise, rng=rng)

    def lift(self, robot: Robot) -> float:
        """Cube height above its resting height (m)."""
        return float(robot.object_pos(self.cube_name)[2] - self.rest_z)

    def progress(self, robot: Robot) -> float:
        """Minus the TCP-to-cube distance, plus twice the lift (m)."""
        reach = float(np.linalg.norm(robot.object_pos(self.cube_name) - robot.read_state().tcp_pos))
        return -reach + 2.0 * max(self.lift(robot), 0.0)

    def is_grasped(self, robot: Robot) -> bool:
        """Heuristic: the cube is between the pads and the gripper is closed on it."""
        s = robot.read_state()
        near = np.linalg.norm(robot.object_pos(self.cube_name) - s.tcp_pos) < 0.02
        width = 2 * self.cube_half_size
        return bool(near and 0.5 * width < s.gripper_opening < width + 0.004)

    def evaluate(self, robot: Robot) -> tuple[float, bool, bool]:
        """Sparse: 1 on success, which ends the episode. Dense: a shaped reward in [0, 1] every
        step (reach, grasp, lift; 1 while lifted), and success does not end the episode, so that
        holding the cube up pays more than hovering near it."""
        lift = self.lift(robot)
        success = lift >= self.lift_height
        if self.reward == "sparse":
            return (1.0 if success else 0.0), success, success
        if success:
            return 1.0, True, False
        dist = float(np.linalg.norm(robot.object_pos(self.cube_name) - robot.read_state().tcp_pos))
        reach = 1.0 - np.tanh(10.0 * dist)
        grasped = 1.0 if self.is_grasped(robot) else 0.0
        lifted = float(np.clip(lift / self.lift_height, 0.0, 1.0))
        reward = 0.3 * reach + 0.2 * grasped + 0.5 * lifted
        return float(reward), False, False
