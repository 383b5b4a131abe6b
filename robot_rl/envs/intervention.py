"""Human take-over: a teleop device's action replaces the policy's while the device is active."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.data.schema import EpisodeLabel, RewardSource, StepInfo
from robot_rl.teleop.device import TeleopDevice


class InterventionWrapper(gym.Wrapper):
    """Reads `device` once per step, before acting.

    While the device is active its action is executed instead of the policy's; the step's StepInfo
    (`info["step_info"]`) then holds `intervention=True` and `intervention_action` (the executed
    action; the policy's proposal is the action passed to `step`). A device's 4-dim action (xyz,
    gripper) drives a 6-DoF env with zero rotation. An episode label pressed on the device ends the
    episode:
      - SUCCESS: reward 1, terminated, `success=True`, `reward_source` HUMAN;
      - FAILURE: reward 0, truncated, `success=False` (no absorbing state: the critic still bootstraps);
      - DISCARD: truncated; the runner keeps the episode in the log, marked, and out of training.
    A device's `end_episode` (a reset asked for) truncates the episode, unlabelled.
    StepInfo's `label` carries the label on that step.
    """

    def __init__(self, env: gym.Env, device: TeleopDevice) -> None:
        super().__init__(env)
        self.device = device

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.device.reset()
        return self.env.reset(**kwargs)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        command = self.device.read()
        executed = self._device_action(command.action) if command.active else action
        observation, reward, terminated, truncated, info = self.env.step(executed)
        step = StepInfo.of(info)
        step.intervention = bool(command.active)
        if command.active:
            step.intervention_action = executed
        label = EpisodeLabel(command.label)
        if label == EpisodeLabel.SUCCESS:
            reward, terminated = 1.0, True
            step.success, step.reward_source = True, RewardSource.HUMAN
        elif label == EpisodeLabel.FAILURE:  # overrules a task or classifier success on the same step
            reward, terminated, truncated = 0.0, False, True
            step.success, step.reward_source = False, RewardSource.HUMAN
        elif label == EpisodeLabel.DISCARD or command.end_episode:
            truncated = truncated or not terminated
        step.label = label
        return observation, float(reward), bool(terminated), bool(truncated), info

    def _device_action(self, raw: np.ndarray) -> np.ndarray:
        """The device's action in [-1, 1], shaped like the env's: xyz + gripper gets zero rotation on a
        6-DoF (7-dim) env."""
        action = np.clip(np.asarray(raw, np.float32), -1.0, 1.0)
        shape = getattr(self.action_space, "shape", None)
        if action.shape == (4,) and shape == (7,):
            action = np.concatenate([action[:3], np.zeros(3, np.float32), action[3:]])
        return action

    def close(self) -> None:
        self.device.close()
        super().close()
