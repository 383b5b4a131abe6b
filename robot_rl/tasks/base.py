"""The Task interface: what the policy sees, what it may do, and how an episode is scored."""
from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np

from robot_rl.robots.base import Robot
from robot_rl.tasks.reset import ResetResult


class Task(ABC):
    """Observation selection, reward, success, reset procedure and action scaling for a Robot.

    Actions are float32[4] in [-1, 1]: TCP delta xyz (multiplied by `action_scale` metres) and
    the gripper command, read per `gripper_mode`:
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
    def action_space(self) -> gym.spaces.Box:
        """Normalised end-effector delta + gripper: float32[4] in [-1, 1]."""
        return gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

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
