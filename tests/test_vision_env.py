"""task=pick_cube_vision: observation layout, camera images, factory config, the scripted expert,
env speed with two 128x128 cameras, and RobotEnv's grasp penalty.

Rendering runs in subprocesses with MUJOCO_GL=egl (MuJoCo picks its GL backend at import, and this
pytest process may already have imported it); those tests skip when no GL backend can render here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from robot_rl.envs import make_pick_cube_env
from robot_rl.tasks import PickCubeVisionTask, make_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(script: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def run_rendering(script: str) -> dict:
    """Run `script` (which prints one JSON line last) in a subprocess; its asserts fail the test."""
    res = run_python(script)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


OBSERVATION_SCRIPT = """
import json
import numpy as np
from omegaconf import OmegaConf
from robot_rl.envs.factory import make_env

# what configs/task/pick_cube_vision.yaml holds: pick_cube's keys plus cameras and image_size
task = OmegaConf.load("configs/task/pick_cube.yaml")
task.name = "pick_cube_vision"
task.cameras = ["front", "wrist"]
task.image_size = [128, 128]
cfg = OmegaConf.create({"task": task, "robot": OmegaConf.load("configs/robot/mujoco.yaml")})
env = make_env(cfg, seed=0)
space = env.observation_space
assert sorted(space.spaces) == ["image/front", "image/wrist", "state"], list(space.spaces)
assert space["state"].shape == (7,) and np.isfinite(space["state"].low).all() and np.isfinite(space["state"].high).all()
for key in ("image/front", "image/wrist"):
    box = space[key]
    assert box.shape == (128, 128, 3) and box.dtype == np.uint8 and box.low.min() == 0 and box.high.max() == 255

def red(img):  # pixels of the red cube
    img = img.astype(int)
    return (img[..., 0] > 120) & (img[..., 1] < 60) & (img[..., 2] < 60)

obs, _ = env.reset(seed=1)
assert space.contains(obs)
s = env.robot.read_state()
assert np.allclose(obs["state"][:3], s.tcp_pos, atol=1e-6) and abs(obs["state"][6] - s.gripper_opening) < 1e-6
front, wrist = obs["image/front"], obs["image/wrist"]
assert front.std() > 10 and wrist.std() > 10 and not np.array_equal(front, wrist)
assert red(front).sum() >= 4, red(front).sum()  # the cube is in view of the front camera
# moving the cube moves its pixels in the front image; the state does not change
robot = env.robot
before = np.argwhere(red(front)).mean(axis=0)
robot.set_object_pose("cube", np.array([0.45, 0.08, 0.02]))
moved = env.task.observe(robot)
after = np.argwhere(red(moved["image/front"])).mean(axis=0)
assert np.linalg.norm(after - before) > 3, (before, after)
assert np.allclose(moved["state"], obs["state"])
# the wrist camera moves with the arm
obs2, *_ = env.step(np.array([0.0, 0.0, 1.0, -1.0], np.float32))
assert np.abs(obs2["image/wrist"].astype(int) - wrist).mean() > 2
assert obs2["image/front"] is not obs["image/front"]  # a fresh array every step
renderers = dict(robot._renderers)
for _ in range(5):
    env.step(np.zeros(4, np.float32))
assert robot._renderers == renderers and len(renderers) == 2  # one renderer per camera, reused

# image_size and cameras are configurable
small = make_env(OmegaConf.merge(cfg, {"task": {"image_size": [48, 64], "cameras": ["wrist"]}}), seed=0)
o, _ = small.reset(seed=0)
assert sorted(o) == ["image/wrist", "state"] and o["image/wrist"].shape == (48, 64, 3)
print(json.dumps({"red_pixels": int(red(front).sum())}))
"""


def test_observations_images_and_config(gl) -> None:
    out = run_rendering(OBSERVATION_SCRIPT)
    assert out["red_pixels"] >= 4


EXPERT_SCRIPT = """
import json, time
import numpy as np
from robot_rl.data.schema import StepInfo
from robot_rl.envs import make_mujoco_env
from robot_rl.tasks import make_expert

env = make_mujoco_env("pick_cube_vision", seed=0)
expert = make_expert(env)
successes, lengths = 0, []
for episode in range(4):
    obs, _ = env.reset(seed=100 + episode)
    for t in range(env.task.max_steps):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            break
    successes += int(StepInfo.of(info).success)
    lengths.append(t + 1)
# speed: best of 3 blocks of 100 steps (renders both cameras every step)
obs, _ = env.reset(seed=0)
rates = []
for block in range(3):
    start = time.perf_counter()
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            obs, _ = env.reset()
    rates.append(100 / (time.perf_counter() - start))
print(json.dumps({"successes": successes, "lengths": lengths, "steps_per_s": max(rates)}))
"""


def test_scripted_expert_and_speed(gl) -> None:
    out = run_rendering(EXPERT_SCRIPT)
    assert out["successes"] == 4, out
    print(f"pick_cube_vision, two 128x128 cameras: {out['steps_per_s']:.0f} env steps/s")
    assert out["steps_per_s"] >= 100, out


# ------------------------------------------------------------------ no rendering needed


def test_task_config_errors_and_bounds() -> None:
    task = make_task("pick_cube_vision", cameras=["front"], image_size=[32, 40], reward="dense", grasp_penalty=0.1)
    assert isinstance(task, PickCubeVisionTask) and task.image_size == (32, 40) and task.reward == "dense"
    assert task.grasp_penalty == 0.1 and make_task("pick_cube_vision").grasp_penalty == 0.02
    with pytest.raises(ValueError, match="image_size"):
        make_task("pick_cube_vision", image_size=[64])
    with pytest.raises(ValueError, match="reward"):
        make_task("pick_cube_vision", reward="shaped")
    env = make_pick_cube_env(seed=0)  # the robot; building spaces renders nothing
    try:
        space = task.observation_space(env.robot)
        full = env.observation_space["state"]
        assert np.array_equal(space["state"].low, full.low[:7]) and np.array_equal(space["state"].high, full.high[:7])
        with pytest.raises(ValueError, match="top"):
            make_task("pick_cube_vision", cameras=["top"]).observation_space(env.robot)
    finally:
        env.close()


def test_grasp_penalty_on_gripper_switches() -> None:
    env = make_pick_cube_env(seed=0, grasp_penalty=0.05)
    try:
        env.reset(seed=0)
        gripper = [1.0, 1.0, 0.0, -0.2, -1.0, -1.0, 0.9, 0.3]  # close, hold, deadband x2, open, hold, close, keep
        penalties = [env.step(np.array([0, 0, 0, g], np.float32))[4]["step_info"].grasp_penalty for g in gripper]
        assert penalties == [-0.05, 0.0, 0.0, 0.0, -0.05, 0.0, -0.05, 0.0]
        env.reset(seed=0)  # reset opens the gripper: opening again is no switch
        assert env.step(np.array([0, 0, 0, -1], np.float32))[4]["step_info"].grasp_penalty == 0.0
    finally:
        env.close()
    env = make_pick_cube_env(seed=0, gripper_mode="continuous")
    try:
        env.reset(seed=0)
        penalties = [
            env.step(np.array([0, 0, 0, g], np.float32))[4]["step_info"].grasp_penalty for g in [-0.5, 0.2, 0.6, -0.1]
        ]
        assert penalties == [0.0, -0.02, 0.0, -0.02]  # default 0.02 for pick tasks
    finally:
        env.close()
