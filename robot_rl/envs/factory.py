"""Build the env a config names: `task.name` = pick_cube, pick_cube_vision (on `robot.name` = mujoco,
the in-process sim, or ros, a robot bridge over ROS 2) or gym (any gymnasium env)."""

from __future__ import annotations

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

ROBOT_TASKS = ("pick_cube", "pick_cube_vision")  # tasks for a Robot: the in-process sim or a ROS bridge
TASKS = (*ROBOT_TASKS, "gym")


def make_env(cfg: DictConfig, seed: int | None = None) -> gym.Env:
    """The env for `cfg.task` on `cfg.robot`; raises ValueError with a one-line fix on bad config."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    name = task.pop("name", None)
    if name == "gym":
        from robot_rl.envs.gym_adapter import make_gym_env

        return make_gym_env(**task)
    if name in ROBOT_TASKS:
        from robot_rl.envs.robot_env import make_robot_env

        robot = OmegaConf.to_container(cfg.robot, resolve=True)
        robot_name = robot.pop("name", "mujoco")
        try:
            return make_robot_env(name, robot_name, seed=seed, robot_cfg=robot, **task)
        except TypeError as err:
            raise ValueError(f"bad task/robot config for {name} ({err}); see configs/task/{name}.yaml") from None
    raise ValueError(f"unknown task '{name}': choose one of {', '.join(TASKS)}")
