"""Adapter so the learner trains on any gymnasium env with a Box (or Dict of Boxes) observation and a
Box action: observations become DESIGN's dict schema, actions are taken in [-1, 1]^A."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.data.schema import STEP_INFO_KEY, StepInfo

log = logging.getLogger(__name__)
DEFAULT_SUCCESS_KEYS = ("success", "is_success")


class GymAdapter(gym.Wrapper):
    """Box observation -> {"state": float32[D]}; Dict of Boxes -> same keys, each flattened to float32.
    Actions in [-1, 1]^A are rescaled to the env's bounds. Each step's StepInfo (`info["step_info"]`)
    gets `success` from the env's info key `success_key` (default: `success`, else `is_success`;
    truthy = success, e.g. 1.0), reward source TASK; the env's own info keys pass through. A
    configured `success_key` that has not appeared by the end of the first episode is warned about
    once (it may legitimately appear only on success steps), as is, by default, an env whose info
    has a key that looks like a success flag under another name."""

    def __init__(self, env: gym.Env, success_key: str | None = None):
        super().__init__(env)
        if success_key is not None and (not isinstance(success_key, str) or not success_key):
            raise ValueError(
                f"task.success_key={success_key!r}: give the name of the env's info key that reports "
                "success (or null for success / is_success)"
            )
        self.success_keys = (success_key,) if success_key else DEFAULT_SUCCESS_KEYS
        self._configured = success_key is not None
        self._seen_keys: set[str] = set()
        self._key_seen = False
        self._checked = False
        obs_space, act_space = env.observation_space, env.action_space
        env_id = env.spec.id if env.spec else type(env.unwrapped).__name__
        self.env_id = env_id
        if (
            not isinstance(act_space, spaces.Box)
            or not np.all(np.isfinite(act_space.low))
            or not np.all(np.isfinite(act_space.high))
        ):
            raise ValueError(
                f"env {env_id}: action space {act_space} is not a bounded Box; "
                "robot_rl trains continuous-control envs only (pick an env with a bounded Box action)"
            )
        if isinstance(obs_space, spaces.Box):
            self._boxes = {"state": obs_space}
        elif isinstance(obs_space, spaces.Dict) and all(isinstance(s, spaces.Box) for s in obs_space.spaces.values()):
            self._boxes = dict(obs_space.spaces)
        else:
            raise ValueError(
                f"env {env_id}: observation space {obs_space} is not a Box or a Dict of Boxes; "
                "wrap the env to expose one"
            )
        self._wrap_state = isinstance(obs_space, spaces.Box)
        self.observation_space = spaces.Dict(
            {
                key: spaces.Box(
                    box.low.reshape(-1).astype(np.float32), box.high.reshape(-1).astype(np.float32), dtype=np.float32
                )
                for key, box in self._boxes.items()
            }
        )
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
        success = False
        for key in self.success_keys:
            if key in info:
                success, self._key_seen = bool(np.any(info[key])), True
                break
        info[STEP_INFO_KEY] = StepInfo(success=success)
        if not self._checked:
            self._seen_keys.update(k for k in info if isinstance(k, str) and k != STEP_INFO_KEY)
            if terminated or truncated:
                self._check_success_key()
        return self._observation(obs), float(reward), bool(terminated), bool(truncated), info

    def _check_success_key(self) -> None:
        """Once, after the first episode: warn when the success key never appeared."""
        self._checked = True
        if self._key_seen:
            return
        seen = sorted(self._seen_keys)
        if self._configured:
            log.warning(
                "env %s reported no info key %r in its first episode (its keys: %s): success counts only "
                "when it appears; check task.success_key",
                self.env_id,
                self.success_keys[0],
                ", ".join(seen) or "none",
            )
            return
        alike = [k for k in seen if "success" in k.lower()]
        if alike:
            log.warning(
                "env %s reports no 'success' or 'is_success' info key but has %s: success is counted as "
                "0 unless you set task.success_key=%s",
                self.env_id,
                ", ".join(alike),
                alike[0],
            )


def make_gym_env(
    env_id: str,
    import_module: str | None = None,
    max_steps: int | None = None,
    success_key: str | None = None,
    **kwargs: Any,
) -> GymAdapter:
    """gymnasium.make(env_id) behind the adapter; `import_module` is imported first (to register envs);
    `success_key`: the info key reporting success (None: `success`, else `is_success`)."""
    if import_module:
        try:
            importlib.import_module(import_module)
        except ImportError as err:
            raise ValueError(
                f"task.import_module={import_module} cannot be imported ({err}); install it or fix the module name"
            ) from None
    try:
        env = gym.make(env_id, max_episode_steps=max_steps, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"task.env_id={env_id}: {err}; register the env or set task.import_module") from None
    return GymAdapter(env, success_key=success_key)
