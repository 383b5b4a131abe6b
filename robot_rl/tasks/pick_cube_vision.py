"""Pick cube from pixels: PickCubeTask's scene, reset, reward and success, observed through cameras.

Observation:
    "state"          float32[7]: TCP position (m), TCP linear velocity (m/s), gripper opening (m);
                     the first 7 entries of pick_cube's state, without the privileged cube position;
                     with `rotation=True` also the TCP orientation quaternion: float32[11]
    "image/<camera>" uint8[H, W, 3] RGB for each camera in `cameras`, H, W = `image_size`
The robot must render (`MujocoRobot.render`); the cube position is still read from the simulator
for the reward and by the scripted expert, never shown to the policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from robot_rl.robots.base import Robot
from robot_rl.tasks.cameras import camera_config, image_spaces, render_images
from robot_rl.tasks.pick_cube import PickCubeTask

STATE_DIM = 7
STATE_LABELS = ("tcp_x", "tcp_y", "tcp_z", "tcp_vx", "tcp_vy", "tcp_vz", "gripper_opening")


class PickCubeVisionTask(PickCubeTask):
    """PickCubeTask with a proprioceptive state and camera images instead of the cube position."""

    def __init__(
        self,
        cameras: Sequence[str] = ("front", "wrist"),
        image_size: Sequence[int] = (128, 128),
        **pick_cube_cfg,
    ) -> None:
        """`cameras`: camera names in the robot's model; `image_size`: (height, width) in pixels.
        Every other keyword is PickCubeTask's."""
        super().__init__(**pick_cube_cfg)
        self.cameras, self.image_size = camera_config("pick_cube_vision", cameras, image_size)

    def observation_space(self, robot: Robot) -> gym.spaces.Dict:
        """ "state": pick_cube's bounds for its first 7 entries; images: Box(0, 255, uint8)."""
        images = image_spaces("pick_cube_vision", robot, self.cameras, self.image_size)
        full = super().observation_space(robot)["state"]
        low, high = self._proprio(full.low), self._proprio(full.high)
        spaces: dict[str, gym.spaces.Space] = {"state": gym.spaces.Box(low, high, shape=low.shape, dtype=np.float32)}
        return gym.spaces.Dict({**spaces, **images})

    def observe(self, robot: Robot) -> dict[str, np.ndarray]:
        """Proprioceptive state plus one freshly rendered frame per camera."""
        obs = {"state": self._proprio(super().observe(robot)["state"])}
        obs.update(render_images(robot, self.cameras, self.image_size))
        return obs

    def state_noise_std(self) -> np.ndarray:
        """pick_cube's observation-noise std without the cube position's entries."""
        return self._proprio(super().state_noise_std())

    def _proprio(self, state: np.ndarray) -> np.ndarray:
        """pick_cube's state without the cube position (entries 7:10)."""
        return np.concatenate([state[:STATE_DIM], state[STATE_DIM + 3 :]]).astype(np.float32)
