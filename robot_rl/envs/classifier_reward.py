"""ClassifierReward: reward and episode end from a learned success classifier instead of the task.

Each step the classifier reads the new observation's images; success is `p >= classifier.threshold`,
optionally AND a state check. The reward is sparse (1 on success, else 0) and success terminates the
episode. Meant for envs whose own success does not end the episode (a real robot's task, or
`task.reward=dense` in sim); where the wrapped env still ends an episode on its own success that the
classifier does not confirm, the episode is truncated there (it cannot go on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.data.schema import RewardSource, StepInfo
from robot_rl.reward.model import SuccessClassifier

StateCheck = Callable[[dict[str, np.ndarray]], bool]


class ClassifierReward(gym.Wrapper):
    """Sets reward, `terminated` and the step's success from a success classifier.

    StepInfo (`info["step_info"]`): `success_probability` (p), `reward_source` CLASSIFIER, `success`
    (the verdict: p >= threshold and the state check), `task_success` (the wrapped env's own success,
    e.g. the sim's ground truth, so evaluations can report the truth); its other fields and the
    wrapped env's other info keys pass through.
    """

    def __init__(
        self, env: gym.Env, classifier: SuccessClassifier, state_check: StateCheck | bool | None = None
    ) -> None:
        """`state_check`: a function of the new observation that must also hold (e.g. gripper closed
        and TCP high enough), or True for the wrapped env's own success (the sim's ground truth)."""
        super().__init__(env)
        spaces = getattr(env.observation_space, "spaces", {})
        for key, shape in classifier.image_shapes.items():
            if key not in spaces:
                raise ValueError(
                    f"the success classifier reads {key!r} but the env observes only "
                    f"{', '.join(spaces) or 'no dict keys'}: use the task and cameras it was trained on"
                )
            if tuple(spaces[key].shape) != shape:
                raise ValueError(
                    f"the success classifier reads {key} images of shape {shape}, the env gives "
                    f"{tuple(spaces[key].shape)}: set task.image_size as in its training data"
                )
        self.classifier = classifier.eval()
        self.state_check = None if state_check is False else state_check

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        step = StepInfo.of(info)
        task_success = bool(step.success)
        probability = self.classifier.probability(observation)
        success = probability >= self.classifier.threshold
        if success and self.state_check is not None:
            success = task_success if self.state_check is True else bool(self.state_check(observation))
        # the wrapped env's own end of episode on its success is not ours to keep; other ends are
        ended_by_task = terminated and task_success
        step.success_probability, step.reward_source = float(probability), RewardSource.CLASSIFIER
        step.success, step.task_success = bool(success), task_success
        return (
            observation,
            1.0 if success else 0.0,
            bool(success or (terminated and not ended_by_task)),
            bool(truncated or (ended_by_task and not success)),
            info,
        )
