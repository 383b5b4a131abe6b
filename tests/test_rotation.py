"""6-DoF end-effector actions: pick_cube with `rotation=True` (7-dim actions) on the MuJoCo robot."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.envs import RobotEnv, make_pick_cube_env
from robot_rl.robots.mujoco import mat_to_rotvec
from robot_rl.tasks import make_expert

TOL = np.radians(2.0)


@pytest.fixture(scope="module")
def env() -> RobotEnv:
    e = make_pick_cube_env(seed=0, rotation=True)
    yield e
    e.close()


def rotate(env: RobotEnv, axis: int, angle: float, settle: int = 10) -> None:
    """Command a rotation of `angle` rad about base axis `axis` in unit-or-less steps, then hold."""
    scale = env.task.rotation_scale
    left = angle
    while abs(left) > 1e-9:
        step = float(np.clip(left / scale, -1.0, 1.0))
        action = np.zeros(7, np.float32)
        action[3 + axis], action[-1] = step, -1.0
        env.step(action)
        left -= step * scale
    hold = np.zeros(7, np.float32)
    hold[-1] = -1.0
    for _ in range(settle):
        env.step(hold)


def test_layout_and_state(env: RobotEnv) -> None:
    assert env.action_space.shape == (7,)
    assert env.observation_space["state"].shape == (14,)
    obs, _ = env.reset(seed=0)
    quat = obs["state"][10:14]
    assert abs(np.linalg.norm(quat) - 1.0) < 1e-5 and quat[0] >= 0
    assert np.allclose(quat, env.robot.tcp_quat() * np.sign(env.robot.tcp_quat()[0]), atol=1e-6)
    assert make_pick_cube_env(seed=0).action_space.shape == (4,)  # the default stays 4-dim


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("angle", [0.3, -0.3])
def test_rotation_about_each_base_axis_is_tracked(env: RobotEnv, axis: int, angle: float) -> None:
    env.reset(seed=1)
    start = env.robot.read_state().tcp_pos.copy()
    rotate(env, axis, angle)
    want = np.zeros(3)
    want[axis] = angle
    reached = env.robot.orientation_offset()  # base-frame rotation vector of the TCP relative to home
    assert np.linalg.norm(reached - want) < TOL, (axis, angle, np.degrees(reached))
    # the TCP rotates about itself: its position stays put
    assert np.linalg.norm(env.robot.read_state().tcp_pos - start) < 0.01


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_target_beyond_the_limits_is_clipped(env: RobotEnv, axis: int) -> None:
    env.reset(seed=2)
    limit = env.task.rotation_limits[axis]
    rotate(env, axis, -(limit + 0.4))
    want = np.zeros(3)
    want[axis] = -limit
    assert np.allclose(mat_to_rotvec(env.robot.tcp_rot_target @ env.robot.home_tcp_rot.T), want, atol=1e-9)
    assert np.linalg.norm(env.robot.orientation_offset() - want) < TOL, np.degrees(env.robot.orientation_offset())
    # a reset brings the orientation (and its target) home
    env.reset(seed=3)
    assert np.degrees(np.linalg.norm(env.robot.orientation_offset())) < 0.5
    assert np.array_equal(env.robot.tcp_rot_target, env.robot.home_tcp_rot)


def test_expert_acts_in_seven_dims_and_succeeds(env: RobotEnv) -> None:
    expert = make_expert(env, noise=0.0, rng=np.random.default_rng(0))
    successes = 0
    for episode in range(5):
        obs, _ = env.reset(seed=10 + episode)
        for _ in range(env.task.max_steps):
            action = expert.act(obs)
            assert action.shape == (7,) and np.all(action[3:6] == 0.0)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                successes += int(terminated)
                break
    assert successes >= 4


def test_bad_rotation_input_is_refused(env: RobotEnv) -> None:
    env.reset(seed=0)
    before = env.robot.tcp_rot_target.copy()
    with pytest.raises(ValueError, match="not finite"):
        env.robot.apply_action(np.zeros(3), -1.0, np.array([np.nan, 0.0, 0.0]))
    assert np.array_equal(env.robot.tcp_rot_target, before)
    with pytest.raises(ValueError, match="rotation_limits"):
        make_pick_cube_env(rotation=True, rotation_limits=[0.1, 0.2])


def test_rotation_task_needs_a_robot_that_rotates() -> None:
    from robot_rl.tasks import PickCubeTask

    class PositionOnly:
        supports_rotation = False
        workspace = (np.zeros(3), np.ones(3))
        control_dt = 0.1
        gripper_max_opening = 0.08

    with pytest.raises(ValueError, match="task.rotation=false"):
        RobotEnv(PositionOnly(), PickCubeTask(rotation=True))  # type: ignore[arg-type]


def test_a_physical_reset_turns_the_tcp_home() -> None:
    env = make_pick_cube_env(seed=5, rotation=True, reset_mode="physical", full_reset_every=0)
    try:
        env.reset(seed=0)  # the first reset is a full one
        rotate(env, 2, 0.8, settle=0)
        rotate(env, 0, -0.4, settle=0)
        assert np.degrees(np.linalg.norm(env.robot.orientation_offset())) > 40
        info = env.reset(seed=1)[1]
        assert not info["reset_info"].full_reset  # a plain physical reset, no joint-space homing
        assert np.degrees(np.linalg.norm(env.robot.orientation_offset())) < 2.0
        assert env.robot.rotation_to_home() is None  # the target is home exactly
    finally:
        env.close()
