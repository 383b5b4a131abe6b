"""The one transition schema used by the env, replay buffers, the zarr log and ROS transport."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

Observation = dict[str, np.ndarray]  # {"state": float32[D], "image/<camera>": uint8[H,W,3]}


class RewardSource(IntEnum):
    TASK = 0
    CLASSIFIER = 1
    HUMAN = 2


class EpisodeLabel(IntEnum):
    """A person's verdict on an episode, from a device button (NONE when nobody labelled it)."""

    NONE = 0
    SUCCESS = 1
    FAILURE = 2
    DISCARD = 3  # kept in the log, marked, never given to the learner


class EpisodeSource(IntEnum):
    DEMO = 0
    ONLINE = 1
    INTERVENTION = 2
    EVAL = 3


@dataclass
class Transition:
    """One env step. `action` is what was executed (the human action when `intervention`)."""

    observation: Observation
    action: np.ndarray  # float32[A] in [-1, 1]
    reward: float
    terminated: bool
    truncated: bool
    next_observation: Observation
    policy_action: np.ndarray  # float32[A]: what the policy proposed
    intervention: bool = False
    episode_id: int = 0
    step: int = 0
    timestamp: float = 0.0
    success: bool = False
    reward_source: RewardSource = RewardSource.TASK
    grasp_penalty: float = 0.0
    success_probability: float = float("nan")  # the reward classifier's output; NaN without one
    label: EpisodeLabel = EpisodeLabel.NONE  # a person's episode label, on the step it ended the episode
    extras: dict = field(default_factory=dict)


def count_takeovers(intervention: np.ndarray) -> int:
    """Take-overs in an episode's per-step intervention flags: runs of consecutive True steps."""
    flags = np.asarray(intervention, bool)
    return int(np.count_nonzero(flags & ~np.concatenate([[False], flags[:-1]])))
