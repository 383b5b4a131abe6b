"""Adapter so the learner trains on any gymnasium env with a Box (or Dict of Boxes) observation and a
Box action: observations become DESIGN's dict schema, actions are taken in [-1, 1]^A."""
from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class GymAdapter(gym.Wrapper):
    """Box observation -> {"state": float32[D]}; Dict of Boxes -> same keys, each flattened to float32.
    Actions in [-1, 1]^A are rescaled to the env's bounds. `info["success"]` comes from the env's
    `success` or `is_success` info key when it reports one (else False)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        obs_space, act_space = env.observation_space, env.action_space
        env_id = env.spec.id if env.spec else type(env.unwrapped).__name__
        if not isinstance(act_space, spaces.Box) or not np.all(np.isfinite(act_space.low)) \
                or not np.all(np.isfinite(act_space.high)):
            raise ValueError(f"env {env_id}: action space {act_space} is not a bounded Box; "
                             "robot_rl trains continuous-control envs only (pick an env with a bounded Box action)")
        if isinstance(obs_space, spaces.Box):
            self._boxes = {"state": obs_space}
        elif isinstance(obs_space, spaces.Dict) and all(isinstance(s, spaces.Box) for s in obs_space.spaces.values()):
            self._boxes = dict(obs_space.spaces)
        else:
            raise ValueError(f"env {env_id}: observation space {obs_space} is not a Box or a Dict of Boxes; "
                             "wrap the env to expose one")
        self._wrap_state = isinstance(obs_space, spaces.Box)
        self.observation_space = spaces.Dict({
            key: spaces.Box(box.low.reshape(-1).astype(np.float32), box.high.reshape(-1).astype(np.float32),
                            dtype=np.float32) for key, box in self._boxes.items()})
        self.action_space = spaces.Box(-1.0, 1.0, act_space.shape, np.float32)
        self._low = act_space.low.astype(np.float64)
        self._high = act_space.high.astype(np.float64)

    def _observation(self, obs: Any) -> dict[str, np.ndarray]:
        raw = {"state": obs} if self._wrap_state else obs
        return {key: np.asarray(raw[key], np.float32).reshape(-1) for key in self._boxes}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observation(obs), info

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        obs, reward, terminated, truncated, info = self.env.step(scaled.astype(self.env.action_space.dtype))
        info = dict(info)
        info["success"] = bool(info.get("success", info.get("is_success", False)))
        info.setdefault("reward_source", "task")
        info.setdefault("grasp_penalty", 0.0)
        return self._observation(obs), float(reward), bool(terminated), bool(truncated), info


def make_gym_env(env_id: str, import_module: str | None = None, max_steps: int | None = None, **kwargs: Any) -> GymAdapter:
    """gymnasium.make(env_id) behind the adapter; `import_module` is imported first (to register envs)."""
    if import_module:
        try:
            importlib.import_module(import_module)
        except ImportError as err:
            raise ValueError(f"task.import_module={import_module} cannot be imported ({err}); "
                             "install it or fix the module name") from None
    try:
        env = gym.make(env_id, max_episode_steps=max_steps, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"task.env_id={env_id}: {err}; register the env or set task.import_module") from None
    return GymAdapter(env)
