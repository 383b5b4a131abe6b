"""Per-stamp frame assembly and the message conversions every subscriber of a bridge needs.

A bridge publishes one observation as several messages (joint states, TCP pose, object poses, camera
images) with one header stamp. `StampedSets` collects them by stamp and hands over a set when every
part of it has arrived; `RosRobot` (robot_rl/robots/ros.py) and the reward_classifier node both use it.
No rclpy at import time (`to_stamp` imports the message type on use).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MAX_PENDING = 10  # incomplete sets kept (the newest ones) while their parts arrive


def stamp_seconds(stamp) -> float:
    """A builtin_interfaces/Time as seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def to_stamp(seconds: float):
    """Seconds as a builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec = int(seconds)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def image_to_array(msg) -> np.ndarray:
    """sensor_msgs/Image rgb8 -> uint8[H, W, 3] (a view of the message's buffer)."""
    if msg.encoding != "rgb8":
        raise ValueError(f"image encoding {msg.encoding!r} is not rgb8: have the bridge publish rgb8")
    return (
        np.frombuffer(msg.data, dtype=np.uint8)
        .reshape(msg.height, msg.step)[:, : msg.width * 3]
        .reshape(msg.height, msg.width, 3)
    )


class StampedSets:
    """Parts of one observation gathered by header stamp. `add` returns the complete set (part -> value)
    once every part of a stamp has arrived, else None. Parts not newer than the last completed set are
    dropped; when best-effort delivery loses a part, only the newest `max_pending` incomplete sets are kept.
    Not thread-safe: callers hold their own lock."""

    def __init__(self, parts: Iterable[str], max_pending: int = MAX_PENDING) -> None:
        self.parts = frozenset(parts)
        self.max_pending = int(max_pending)
        self.pending: dict[float, dict[str, object]] = {}
        self.last = -float("inf")  # stamp of the newest completed set

    def stale(self, stamp: float) -> bool:
        """Whether a part stamped `stamp` is no newer than the last completed set (and would be dropped)."""
        return stamp <= self.last

    def add(self, part: str, stamp: float, value: object) -> dict[str, object] | None:
        """Add one part; the complete set of `stamp` when this part completes it."""
        if self.stale(stamp):
            return None
        parts = self.pending.setdefault(stamp, {})
        parts[part] = value
        if len(parts) < len(self.parts):
            if len(self.pending) > self.max_pending:  # a part was lost: forget the oldest sets
                self.pending = dict(sorted(self.pending.items())[-self.max_pending :])
            return None
        self.last = stamp
        self.pending = {s: p for s, p in self.pending.items() if s > stamp}
        return parts
