"""Gymnasium environments built from a Robot and a Task."""

from robot_rl.envs.robot_env import RobotEnv, make_mujoco_env, make_pick_cube_env

__all__ = ["RobotEnv", "make_mujoco_env", "make_pick_cube_env"]
