"""Camera observations shared by the vision tasks: config checks, image spaces and rendering."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from robot_rl.robots.base import Robot


def camera_config(
    task: str, cameras: Sequence[str], image_size: Sequence[int]
) -> tuple[tuple[str, ...], tuple[int, int]]:
    """The checked (cameras, (height, width)) of a vision task named `task`; a one-line ValueError otherwise."""
    names = tuple(str(c) for c in cameras)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{task} cameras must be distinct names, at least one; got {list(cameras)}")
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{task} image_size must be [height, width] > 0, got {list(image_size)}")
    return names, (size[0], size[1])


def image_spaces(task: str, robot: Robot, cameras: Sequence[str], size: tuple[int, int]) -> dict[str, gym.Space]:
    """{"image/<camera>": Box(0, 255, uint8[H, W, 3])} for `robot`, which must render those cameras (a one-line
    TypeError / ValueError naming the fix otherwise)."""
    if not hasattr(robot, "render"):
        raise TypeError(f"{task} needs a robot that renders cameras; {type(robot).__name__} does not: use MujocoRobot")
    known = getattr(robot, "camera_names", None)
    if known is not None:
        missing = [c for c in cameras if c not in known]
        if missing:
            raise ValueError(
                f"{task} cameras {missing} are not in the robot's model; choose from {list(known)} (task.cameras)"
            )
    h, w = size
    return {f"image/{c}": gym.spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8) for c in cameras}


def render_images(robot: Robot, cameras: Sequence[str], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """One freshly rendered uint8[H, W, 3] frame per camera, keyed "image/<camera>"."""
    h, w = size
    return {f"image/{c}": robot.render(c, h, w) for c in cameras}  # type: ignore[attr-defined]
