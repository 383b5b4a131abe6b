"""RobotEnv: a gymnasium env made of a Robot (how to move) and a Task (what to do)."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.data.schema import RESET_INFO_KEY, STEP_INFO_KEY, ResetInfo, StepInfo
from robot_rl.robots.base import Robot
from robot_rl.tasks.base import Task


class RobotEnv(gym.Env):
    """Robot + Task. Actions in [-1, 1]: float32[4] (TCP delta xyz scaled by the task, gripper) or, for a
    task acting in rotation, float32[7] (TCP delta xyz, rotation vector rx ry rz, gripper; see Task).

    Episodes terminate on task success and truncate after `task.max_steps` steps. Each step's info
    holds a StepInfo (robot_rl/data/schema.py) under `info["step_info"]`: the task's `success`,
    `reward_source` TASK and `grasp_penalty` (`-task.grasp_penalty` on steps where the gripper command
    switches between open (<= 0) and closed (> 0), else 0.0: HIL-SERL's grasp penalty); wrappers fill
    in the rest.

    `reset` runs the task's reset procedure (retried on failure; `ResetError` when it cannot) and
    reports it, separately from the episode, as a ResetInfo under `info["reset_info"]`: `reset_s`
    (wall seconds of the reset procedure alone, not of the first observation), `reset_attempts`
    (1 = no retry), `full_reset` (a joint-home/state reset ran), `reset_steps` (control steps the
    reset executed; not counted in `elapsed_steps`) and `reset_failures` (why each retried attempt
    failed; empty when the first attempt succeeded).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        robot: Robot,
        task: Task,
        seed: int | None = None,
        render_mode: str | None = None,
        render_camera: str = "front",
    ) -> None:
        self.robot = robot
        self.task = task
        if task.rotation:
            if not getattr(robot, "supports_rotation", False):
                raise ValueError(
                    f"task {type(task).__name__} acts in rotation but {type(robot).__name__} takes "
                    "position deltas only: set task.rotation=false or use a robot with rotation"
                )
            robot.orientation_limits = np.asarray(task.rotation_limits, dtype=np.float64).copy()
        self.observation_space = task.observation_space(robot)
        self.action_space = task.action_space
        self.render_mode = render_mode
        self.render_camera = render_camera
        self.elapsed_steps = 0
        self.gripper = -1.0
        self._needs_reset = True
        if seed is not None:
            self.np_random, _ = gym.utils.seeding.np_random(seed)
            self.action_space.seed(seed)

    @property
    def max_episode_steps(self) -> int:
        return self.task.max_steps

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._needs_reset = True  # stays set if the reset fails
        t0 = time.perf_counter()
        result = self.task.reset(self.robot, self.np_random)
        reset_s = time.perf_counter() - t0
        self.elapsed_steps = 0
        self.gripper = float(self.task.start_gripper)  # open, unless the task starts holding its object
        self._needs_reset = False
        reset = ResetInfo(reset_s=reset_s)
        if result is not None:
            reset = ResetInfo(reset_s, result.attempts, bool(result.full_reset), result.steps, list(result.failures))
        return self.task.observe(self.robot), {RESET_INFO_KEY: reset}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("RobotEnv.step called before reset(): call env.reset() first")
        action = np.asarray(action, dtype=np.float32)
        expected = self.action_space.shape
        if action.shape != expected:
            raise ValueError(f"action must have shape {expected}, got {action.shape}")
        action = np.clip(action, -1.0, 1.0)
        delta = action[:3].astype(np.float64) * self.task.action_scale
        previous = self.gripper
        self.gripper = self.task.gripper_command(float(action[-1]), previous)
        switched = (self.gripper > 0.0) != (previous > 0.0)
        grasp_penalty = -float(self.task.grasp_penalty) if switched else 0.0
        if self.task.rotation:
            rot_delta = action[3:6].astype(np.float64) * self.task.rotation_scale
            self.robot.apply_action(delta, self.gripper, rot_delta)
        else:
            self.robot.apply_action(delta, self.gripper)
        self.elapsed_steps += 1
        obs = self.task.observe(self.robot)
        reward, success, terminated = self.task.evaluate(self.robot)
        truncated = (not terminated) and self.elapsed_steps >= self.task.max_steps
        step_info = StepInfo(success=bool(success), grasp_penalty=grasp_penalty, frame_age_s=self.robot.frame_age_s())
        info = {STEP_INFO_KEY: step_info}
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.robot.render(self.render_camera)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.robot.close()


def make_robot_env(
    task: str, robot: str = "mujoco", seed: int | None = None, robot_cfg: dict | None = None, **task_cfg
) -> RobotEnv:
    """A RobotEnv with the registered task `task` (**task_cfg) on `robot`: "mujoco" (MujocoRobot, the
    in-process sim) or "ros" (RosRobot, a robot bridge over ROS 2), built with **robot_cfg. A task whose
    `scene` is not pick_cube runs in the in-process sim only, in the arm's sim/<arm>_<scene>.xml (unless
    robot_cfg names a model_path)."""
    from robot_rl.robots import make_robot
    from robot_rl.tasks import make_task

    task_obj = make_task(task, **task_cfg)  # bad task config fails before the robot starts
    robot_cfg = dict(robot_cfg or {})
    if task_obj.scene != Task.scene:
        robot_cfg = _scene_robot_cfg(task, task_obj.scene, robot, robot_cfg)
    robot_obj = make_robot(robot, **robot_cfg)
    try:
        return RobotEnv(robot_obj, task_obj, seed=seed)
    except BaseException:
        robot_obj.close()
        raise


def _scene_robot_cfg(task: str, scene: str, robot: str, robot_cfg: dict) -> dict:
    """`robot_cfg` with the model_path of `scene` for its arm (sim/<arm>_<scene>.xml); a one-line UserError
    for a robot other than the in-process sim or an arm without that scene."""
    from robot_rl.config import UserError

    if robot != "mujoco":
        raise UserError(f"task {task} runs in the in-process sim only for now, not robot={robot}: use robot=mujoco")
    if robot_cfg.get("model_path") is not None:
        return robot_cfg
    from robot_rl.robots.kinematics import sim_dir

    arm = str(robot_cfg.get("model", "panda"))
    path = sim_dir() / f"{arm}_{scene}.xml"
    if not path.is_file():
        known = sorted(p.name.removesuffix(f"_{scene}.xml") for p in sim_dir().glob(f"*_{scene}.xml"))
        raise UserError(
            f"task {task} has no scene for robot.model={arm} ({path.name} not in {sim_dir()}): "
            f"it exists for robot.model={' | '.join(known) or 'none'} only"
        )
    return {**robot_cfg, "model_path": str(path)}


def make_mujoco_env(task: str, seed: int | None = None, robot_cfg: dict | None = None, **task_cfg) -> RobotEnv:
    """A RobotEnv with a MujocoRobot(**robot_cfg) and the registered task `task` (**task_cfg)."""
    return make_robot_env(task, "mujoco", seed, robot_cfg, **task_cfg)


def make_pick_cube_env(seed: int | None = None, robot_cfg: dict | None = None, **task_cfg) -> RobotEnv:
    """A RobotEnv with a MujocoRobot and PickCubeTask(**task_cfg)."""
    return make_mujoco_env("pick_cube", seed=seed, robot_cfg=robot_cfg, **task_cfg)
