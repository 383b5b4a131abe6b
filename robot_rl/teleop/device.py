"""The teleop device interface: what a person's input device reports once per control step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from robot_rl.data.schema import EpisodeLabel


@dataclass
class DeviceCommand:
    """One read of a teleop device.

    `action` uses the env's action convention: float32[4] in [-1, 1], TCP delta xyz (robot base frame:
    x forward, y left, z up) and the gripper (> +0.5 close, < -0.5 open, in between keep).
    `active`: the person wants control this step (their action replaces the policy's).
    `label`: an episode label pressed since the last read, reported once (edge, not level).
    `buttons`: names of the buttons held now (for display and logging).
    `end_episode`: the person asked to end the episode now (truncated, unlabelled) and reset.
    """

    action: np.ndarray
    active: bool = False
    label: EpisodeLabel = EpisodeLabel.NONE
    buttons: frozenset[str] = field(default_factory=frozenset)
    end_episode: bool = False


def idle_command() -> DeviceCommand:
    """No input: zero motion, gripper kept, not active."""
    return DeviceCommand(np.zeros(4, np.float32))


class TeleopDevice(ABC):
    """An input device read once per control step (non-blocking)."""

    @abstractmethod
    def read(self) -> DeviceCommand:
        """The command now; never blocks longer than a few milliseconds."""

    def reset(self) -> None:
        """Called at the start of every episode (e.g. to drop stale presses)."""

    def close(self) -> None:
        """Release the device."""

    def __enter__(self) -> TeleopDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
