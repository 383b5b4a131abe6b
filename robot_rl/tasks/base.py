"""The Task interface: what the policy sees, what it may do, and how an episode is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from robot_rl.robots.base import Robot
from robot_rl.tasks.reset import ResetResult


class Expert(Protocol):
    """A scripted policy for a task (demos, the simulated operator, tests)."""

    def reset(self) -> None:
        """Start a new episode."""

    def act(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The next action in [-1, 1], shaped like the task's action space."""


class Task(ABC):
    """Observation selection, reward, success, reset procedure, action layout and scripted expert.

    Actions are float32 in [-1, 1]: TCP delta xyz (multiplied by `action_scale` metres), then, when
    the task acts in `rotation`, a TCP rotation delta (a rotation vector in the robot's base frame,
    multiplied by `rotation_scale` radians; the robot clips the orientation target to
    `rotation_limits` around its home orientation), and last the gripper command: float32[4] without
    rotation, float32[7] with it. The gripper value is read per `gripper_mode`:
      - "sticky" (HIL-SERL's real-robot convention): above +`gripper_threshold` closes, below
        -`gripper_threshold` opens, in between keeps the last command, so exploration noise does
        not drop a grasped object;
      - "continuous": the value is the gripper target (-1 open .. +1 closed).
    """

    #: episode length in control steps (the env truncates after this many steps)
    max_steps: int = 100
    #: metres of TCP motion per control step for a unit action
    action_scale: float = 0.03
    gripper_mode: str = "sticky"
    gripper_threshold: float = 0.5
    #: HIL-SERL's grasp penalty: RobotEnv reports `info["grasp_penalty"] = -grasp_penalty` on steps
    #: where the gripper command switches between open and closed (the grasp critic's cost)
    grasp_penalty: float = 0.0
    #: whether actions carry a TCP rotation (6-DoF end-effector control)
    rotation: bool = False
    #: radians of TCP rotation per control step for a unit rotation action
    rotation_scale: float = 0.1
    #: half-widths (rad) of the box around the home orientation (base-frame rotation vector x, y, z) that
    #: the orientation target is clipped to
    rotation_limits: tuple[float, float, float] = (0.5, 0.5, 1.0)
    #: the sim scene the task runs in: the in-process sim loads sim/<arm>_<scene>.xml (make_robot_env)
    scene: str = "pick_cube"
    #: the gripper command the reset leaves (-1 open, +1 closed: a task that starts holding its object); the
    #: sticky gripper keeps it until an action crosses the threshold
    start_gripper: float = -1.0

    def gripper_command(self, value: float, previous: float) -> float:
        """The gripper command (-1 open .. +1 closed) for action value `value`, given the last command."""
        if self.gripper_mode == "continuous":
            return value
        if value > self.gripper_threshold:
            return 1.0
        if value < -self.gripper_threshold:
            return -1.0
        return previous

    @property
    def action_dim(self) -> int:
        """4 (dx, dy, dz, gripper) or, acting in rotation, 7 (dx, dy, dz, rx, ry, rz, gripper)."""
        return 7 if self.rotation else 4

    @property
    def action_space(self) -> gym.spaces.Box:
        """Normalised end-effector delta + gripper: float32[action_dim] in [-1, 1]."""
        return gym.spaces.Box(-1.0, 1.0, shape=(self.action_dim,), dtype=np.float32)

    def expert(self, env: Any, noise: float = 0.0, rng: np.random.Generator | None = None) -> Expert:
        """The task's scripted expert driving `env` (a RobotEnv with this task); `noise`: std of Gaussian
        action noise. Default: none (a one-line error saying what to do instead)."""
        raise ValueError(
            f"task {type(self).__name__} has no scripted expert: pass demos=<store> with recorded "
            "demos (or num_demos=0 to train without demos)"
        )

    @abstractmethod
    def observation_space(self, robot: Robot) -> gym.spaces.Dict:
        """Dict space with key "state" (and later "image/<camera>")."""

    @abstractmethod
    def reset(self, robot: Robot, rng: np.random.Generator) -> ResetResult | None:
        """Put the robot and the scene in a (randomised) start state, checked (see
        robot_rl/tasks/reset.py); raises ResetError when it cannot. Returns what the reset did
        (None: one attempt, no full reset)."""

    def place_scene(self, robot: Robot, rng: np.random.Generator) -> None:
        """Put the task's objects at a random start pose on a robot that can (a sim); default: none."""

    @abstractmethod
    def observe(self, robot: Robot) -> dict[str, np.ndarray]:
        """The observation for the current state; matches `observation_space(robot)`."""

    @abstractmethod
    def evaluate(self, robot: Robot) -> tuple[float, bool, bool]:
        """(reward, success, terminated) for the current state."""

    def progress(self, robot: Robot) -> float:
        """How far the episode has come toward success, in metres (larger is further): what the simulated
        operator's stall rule watches. Default: none (a one-line error)."""
        raise ValueError(
            f"task {type(self).__name__} has no progress measure for the simulated operator's stall rule: "
            "use teleop.rule=schedule"
        )


def make_expert(env: Any, noise: float = 0.0, rng: np.random.Generator | None = None) -> Expert:
    """The scripted expert of `env`'s task (`Task.expert`); a one-line ValueError for an env without a task
    (e.g. task=gym) or a task without an expert."""
    inner = getattr(env, "unwrapped", env)
    expert = getattr(getattr(inner, "task", None), "expert", None)
    if expert is None:
        raise ValueError(
            "this task has no scripted expert: pass demos=<store> with recorded demos "
            "(or num_demos=0 to train without demos)"
        )
    return expert(inner, noise=noise, rng=rng)
