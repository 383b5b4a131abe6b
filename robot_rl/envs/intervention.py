"""Human take-over: a teleop device's action replaces the policy's while the device is active."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.data.schema import EpisodeLabel
from robot_rl.teleop.device import TeleopDevice


class InterventionWrapper(gym.Wrapper):
    """Reads `device` once per step, before acting.

    While the device is active its action is executed instead of the policy's; `info` then holds
    `intervention=True` and `intervention_action` (the executed action; the policy's proposal is the
    action passed to `step`). An episode label pressed on the device ends the episode:
      - SUCCESS: reward 1, terminated, `success=True`, `reward_source="human"`;
      - FAILURE: reward 0, truncated, `success=False` (no absorbing state: the critic still bootstraps);
      - DISCARD: truncated; the runner keeps the episode in the log, marked, and out of training.
    `info["label"]` carries the label on that step.
    """

    def __init__(self, env: gym.Env, device: TeleopDevice) -> None:
        super().__init__(env)
        self.device = device

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.device.reset()
        return self.env.reset(**kwargs)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        command = self.device.read()
        executed = np.clip(np.asarray(command.action, np.float32), -1.0, 1.0) if command.active else action
        observation, reward, terminated, truncated, info = self.env.step(executed)
        info["intervention"] = bool(command.active)
        if command.active:
            info["intervention_action"] = executed
        label = EpisodeLabel(command.label)
        if label == EpisodeLabel.SUCCESS:
            reward, terminated = 1.0, True
            info.update(success=True, reward_source="human")
        elif label == EpisodeLabel.FAILURE:  # overrules a task or classifier success on the same step
            reward, terminated, truncated = 0.0, False, True
            info.update(success=False, reward_source="human")
        elif label == EpisodeLabel.DISCARD:
            truncated = truncated or not terminated
        if label != EpisodeLabel.NONE:
            info["label"] = label
        return observation, float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.device.close()
        super().close()
