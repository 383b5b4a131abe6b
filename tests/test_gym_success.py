"""task=gym: a foreign env's success reported under another info key is mapped onto StepInfo.success."""

from __future__ import annotations

import logging
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from robot_rl.data.schema import STEP_INFO_KEY, RewardSource, StepInfo
from robot_rl.envs.factory import make_env
from robot_rl.runtime.rollout import run_episode

ENV_ID = "RobotRlTestGoal-v0"
GYM_YAML = Path(__file__).resolve().parents[1] / "configs" / "task" / "gym.yaml"


class GoalEnv(gym.Env):
    """Reaches its goal on the 3rd step of positive actions; reports it as `info["goal_reached"]` (1.0/0.0),
    only once reached when `sparse_key`."""

    def __init__(self, sparse_key: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.sparse_key = sparse_key
        self.pushes = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pushes = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.pushes += int(action[0] > 0)
        reached = self.pushes >= 3
        info = {"distance": float(3 - min(self.pushes, 3))}
        if reached or not self.sparse_key:
            info["goal_reached"] = float(reached)
        return np.zeros(2, np.float32), float(reached), False, False, info


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=GoalEnv, max_episode_steps=6)


def env_for(**task) -> gym.Env:
    cfg = OmegaConf.merge({"task": OmegaConf.load(GYM_YAML)}, {"task": {"env_id": ENV_ID, **task}})
    return make_env(cfg)


def push(observation) -> np.ndarray:
    return np.ones(1, np.float32)


def test_success_under_another_key_counts_once_mapped(caplog) -> None:
    unmapped = env_for()
    result = run_episode(unmapped, push, seed=0)
    assert not result.success  # today's 0%: the env's own success key is not `success` / `is_success`
    mapped = env_for(success_key="goal_reached")
    results = [run_episode(mapped, push, seed=s) for s in range(3)]
    assert all(r.success and r.steps_to_success == 3 for r in results), results
    _, _, _, _, info = mapped.step(np.ones(1, np.float32))
    step = info[STEP_INFO_KEY]
    assert isinstance(step, StepInfo) and step.success and step.reward_source == RewardSource.TASK
    assert info["goal_reached"] == 1.0 and "distance" in info  # the env's own keys pass through
    sparse = env_for(success_key="goal_reached", sparse_key=True)
    assert run_episode(sparse, push, seed=0).success  # a key that appears only on success still counts


def test_a_configured_key_that_never_appears_is_warned_about_once(caplog) -> None:
    env = env_for(success_key="done_ok")
    with caplog.at_level(logging.WARNING, logger="robot_rl.envs.gym_adapter"):
        for seed in range(3):
            assert not run_episode(env, push, seed=seed).success
    warnings = [r.getMessage() for r in caplog.records if "done_ok" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "\n" not in warnings[0] and "task.success_key" in warnings[0] and "goal_reached" in warnings[0]


def test_a_default_key_miss_with_a_success_like_key_is_warned_about(caplog) -> None:
    gym.register("RobotRlTestGoal-v1", entry_point=lambda: _Renamed(GoalEnv()), max_episode_steps=6)
    try:
        env = env_for(env_id="RobotRlTestGoal-v1")
        with caplog.at_level(logging.WARNING, logger="robot_rl.envs.gym_adapter"):
            run_episode(env, push, seed=0)
            run_episode(env, push, seed=1)
    finally:
        del gym.registry["RobotRlTestGoal-v1"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "task.success_key=goal_success" in warnings[0], warnings
    quiet = env_for()  # no success-like key (Pendulum-style): no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robot_rl.envs.gym_adapter"):
        run_episode(quiet, push, seed=0)
    assert not caplog.records


class _Renamed(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["goal_success"] = info.pop("goal_reached")
        return obs, reward, terminated, truncated, info


def test_a_bad_success_key_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="task.success_key") as err:
        env_for(success_key="")
    assert "\n" not in str(err.value)


def test_a_gym_task_has_no_scripted_expert() -> None:
    from robot_rl.tasks import make_expert

    with pytest.raises(ValueError, match="no scripted expert.*num_demos=0") as err:
        make_expert(env_for())
    assert "\n" not in str(err.value)
