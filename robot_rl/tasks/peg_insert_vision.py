"""Peg insertion from pixels: PegInsertTask's scene, reset, reward and success, observed through cameras.

Observation:
    "state"          float32[17]: TCP position (m), TCP linear velocity (m/s), gripper opening (m), TCP
                     orientation quaternion (w >= 0) and the wrist wrench (force N, torque N m): peg_insert's
                     state without the privileged peg tip and hole yaw (entries 11:16)
    "image/<camera>" uint8[H, W, 3] RGB for each camera in `cameras`, H, W = `image_size`
The peg and hole poses are still read from the simulator for the reward and by the scripted expert, never shown
to the policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from robot_rl.robots.base import Robot
from robot_rl.tasks.cameras import camera_config, image_spaces, render_images
from robot_rl.tasks.peg_insert import PegInsertTask

PRIVILEGED = slice(11, 16)  # peg tip relative to the entrance, relative yaw's cos/sin
STATE_DIM = 17
STATE_LABELS = (
    *("tcp_x", "tcp_y", "tcp_z", "tcp_vx", "tcp_vy", "tcp_vz", "gripper_opening"),
    *("tcp_qw", "tcp_qx", "tcp_qy", "tcp_qz"),
    *("force_x", "force_y", "force_z", "torque_x", "torque_y", "torque_z"),
)


class PegInsertVisionTask(PegInsertTask):
    """PegInsertTask with a proprioceptive state (wrench included) and camera images instead of the peg and hole
    poses."""

    def __init__(
        self, cameras: Sequence[str] = ("front", "wrist"), image_size: Sequence[int] = (128, 128), **peg_insert_cfg
    ) -> None:
        """`cameras`: camera names in the robot's model; `image_size`: (height, width) in pixels. Every other
        keyword is PegInsertTask's."""
        super().__init__(**peg_insert_cfg)
        self.cameras, self.image_size = camera_config("peg_insert_vision", cameras, image_size)

    def observation_space(self, robot: Robot) -> gym.spaces.Dict:
        """ "state": peg_insert's bounds without the privileged entries; images: Box(0, 255, uint8)."""
        full = super().observation_space(robot)["state"]
        images = image_spaces("peg_insert_vision", robot, self.cameras, self.image_size)
        low, high = self._proprio(full.low), self._proprio(full.high)
        return gym.spaces.Dict({"state": gym.spaces.Box(low, high, shape=low.shape, dtype=np.float32), **images})

    def observe(self, robot: Robot) -> dict[str, np.ndarray]:
        """Proprioceptive state plus one freshly rendered frame per camera."""
        obs = {"state": self._proprio(super().observe(robot)["state"])}
        obs.update(render_images(robot, self.cameras, self.image_size))
        return obs

    @staticmethod
    def _proprio(state: np.ndarray) -> np.ndarray:
        """peg_insert's state without its privileged entries 11:16."""
        return np.concatenate([state[: PRIVILEGED.start], state[PRIVILEGED.stop :]]).astype(np.float32)
