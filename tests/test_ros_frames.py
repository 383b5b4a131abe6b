"""Per-stamp frame assembly (robot_rl/ros/frames.py), shared by RosRobot and the reward_classifier node,
and the rule that robot_rl imports no rclpy at module import time. No ROS needed."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

import robot_rl
from robot_rl.ros.frames import StampedSets, image_to_array, stamp_seconds


def test_a_set_is_handed_over_once_every_part_of_its_stamp_arrived():
    sets = StampedSets(["joints", "pose", "image/front"])
    assert sets.add("joints", 2.0, "j2") is None
    assert sets.add("joints", 1.0, "j1") is None  # an older stamp still in flight
    assert sets.add("pose", 2.0, "p2") is None
    assert sets.add("image/front", 2.0, "i2") == {"joints": "j2", "pose": "p2", "image/front": "i2"}
    assert sets.pending == {}  # the older incomplete set can never be used now
    assert sets.stale(2.0) and sets.stale(1.0) and not sets.stale(2.1)
    assert sets.add("pose", 1.0, "p1") is None and sets.pending == {}  # a late part is dropped


def test_lost_parts_keep_only_the_newest_incomplete_sets():
    sets = StampedSets(["a", "b"], max_pending=3)
    for stamp in range(10):
        assert sets.add("a", float(stamp), stamp) is None  # every "b" lost
    assert sorted(sets.pending) == [7.0, 8.0, 9.0]
    assert sets.add("b", 9.0, "b9") == {"a": 9, "b": "b9"}


def test_message_conversions():
    assert stamp_seconds(SimpleNamespace(sec=3, nanosec=250_000_000)) == 3.25
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.concatenate([pixels.reshape(2, 9), np.zeros((2, 3), np.uint8)], axis=1)  # step 12 > 9
    msg = SimpleNamespace(encoding="rgb8", data=padded.tobytes(), height=2, width=3, step=12)
    np.testing.assert_array_equal(image_to_array(msg), pixels)
    msg.encoding = "bgr8"
    try:
        image_to_array(msg)
    except ValueError as err:
        assert "rgb8" in str(err)
    else:
        raise AssertionError("bgr8 accepted")


def test_no_robot_rl_module_imports_rclpy_at_import_time():
    names = [m.name for m in pkgutil.walk_packages(robot_rl.__path__, "robot_rl.")]
    assert "robot_rl.ros.contract" in names and "robot_rl.robots.ros" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rcl_interfaces')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
