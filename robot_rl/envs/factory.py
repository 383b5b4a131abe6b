"""Build the env a config names: `task.name` = pick_cube (MuJoCo sim) or gym (any gymnasium env)."""
from __future__ import annotations

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

TASKS = ("pick_cube", "gym")


def make_env(cfg: DictConfig, seed: int | None = None) -> gym.Env:
    """The env for `cfg.task` on `cfg.robot`; raises ValueError with a one-line fix on bad config."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    name = task.pop("name", None)
    if name == "gym":
        from robot_rl.envs.gym_adapter import make_gym_env
        return make_gym_env(**task)
    if name == "pick_cube":
        from robot_rl.envs.robot_env import make_pick_cube_env
        robot = OmegaConf.to_container(cfg.robot, resolve=True)
        robot.pop("name", None)
        try:
            return make_pick_cube_env(seed=seed, robot_cfg=robot, **task)
        except TypeError as err:
            raise ValueError(f"bad task/robot config for pick_cube ({err}); see configs/task/pick_cube.yaml") from None
    raise ValueError(f"unknown task '{name}': choose one of {', '.join(TASKS)}")
