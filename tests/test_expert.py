"""PickCubeTask, RobotEnv API and the scripted expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.config import UserError
from robot_rl.data.schema import EpisodeLabel, RewardSource, StepInfo
from robot_rl.envs import RobotEnv, make_pick_cube_env
from robot_rl.tasks import PickCubeTask, make_task
from robot_rl.tasks.pick_cube_expert import ScriptedPickExpert


@pytest.fixture(scope="module")
def env() -> RobotEnv:
    e = make_pick_cube_env(seed=0)
    yield e
    e.close()


def run_expert(env: RobotEnv, expert: ScriptedPickExpert) -> tuple[bool, int]:
    obs, _ = env.reset()
    expert.reset()
    for t in range(1, env.task.max_steps + 1):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            return bool(StepInfo.of(info).success), t
    return False, env.task.max_steps


def test_make_task_registry() -> None:
    task = make_task("pick_cube", action_scale=0.02, reward="dense")
    assert isinstance(task, PickCubeTask) and task.action_scale == 0.02
    with pytest.raises(ValueError, match="unknown task"):
        make_task("stack_cubes")
    with pytest.raises(ValueError, match="reward"):
        make_task("pick_cube", reward="shaped")


def test_spaces_and_observation_layout(env: RobotEnv) -> None:
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.observation_space["state"].shape == (10,)
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    state = obs["state"]
    assert state.dtype == np.float32
    rs = env.robot.read_state()
    np.testing.assert_allclose(state[0:3], rs.tcp_pos, atol=1e-6)
    np.testing.assert_allclose(state[6], 0.08, atol=1e-4)  # reset opens the gripper
    np.testing.assert_allclose(state[7:10], env.robot.object_pos("cube"), atol=1e-6)
    # reset randomisation stays in the configured ranges
    task = env.task
    assert np.all(np.abs(state[0:3] - task.start_tcp) <= task.start_noise + 1e-4)
    assert task.cube_low[0] <= state[7] <= task.cube_high[0]
    assert task.cube_low[1] <= state[8] <= task.cube_high[1]
    assert state[9] == pytest.approx(0.02, abs=1e-4)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, 0, 0, -1], dtype=np.float32))
    assert env.observation_space.contains(obs)
    assert obs["state"][3] > 0.05  # moving +x: positive x velocity (m/s)
    assert list(info) == ["step_info"]  # one typed object, no ad-hoc keys
    step = info["step_info"]
    assert isinstance(step, StepInfo) and (step.success, step.reward_source, step.grasp_penalty) == (
        False,
        RewardSource.TASK,
        0.0,
    )
    assert np.isnan(step.success_probability) and not step.intervention and step.label == EpisodeLabel.NONE


def test_wrong_action_shape_raises(env: RobotEnv) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        env.step(np.zeros((1, 4), dtype=np.float32))


def test_actions_are_clipped() -> None:
    results = []
    for scale in (1.0, 7.0):
        e = make_pick_cube_env(seed=5)
        e.reset(seed=5)
        obs, *_ = e.step(np.array([scale, -scale, 0.0, -1.0], dtype=np.float32))
        results.append(obs["state"])
        e.close()
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_truncation_at_max_steps(env: RobotEnv) -> None:
    env.reset(seed=1)
    zero = np.zeros(4, dtype=np.float32)
    for t in range(1, 101):
        obs, reward, terminated, truncated, info = env.step(zero)
        assert not terminated and reward == 0.0
        assert truncated == (t == 100), t


def test_seeding_is_deterministic() -> None:
    a = make_pick_cube_env(seed=42)
    b = make_pick_cube_env(seed=42)
    for _ in range(3):
        np.testing.assert_array_equal(a.reset()[0]["state"], b.reset()[0]["state"])
    np.testing.assert_array_equal(a.reset(seed=7)[0]["state"], b.reset(seed=7)[0]["state"])
    assert not np.array_equal(a.reset(seed=7)[0]["state"], a.reset(seed=8)[0]["state"])


def test_success_detection(env: RobotEnv) -> None:
    env.reset(seed=2)
    task, robot = env.task, env.robot
    assert task.evaluate(robot) == (0.0, False, False)  # cube resting on the table
    cube = robot.object_pos("cube")
    robot.set_object_pose("cube", cube + np.array([0, 0, 0.095]))
    assert task.evaluate(robot) == (0.0, False, False)
    robot.set_object_pose("cube", cube + np.array([0, 0, 0.101]))
    assert task.evaluate(robot) == (1.0, True, True)


def test_dense_reward_is_shaped() -> None:
    e = make_pick_cube_env(seed=0, reward="dense")
    e.reset(seed=0)
    task, robot = e.task, e.robot
    r_far, success, _ = task.evaluate(robot)
    assert 0.0 <= r_far < 0.3 and not success
    cube = robot.object_pos("cube")
    robot.reset(cube)  # TCP at the cube centre, gripper open
    robot.set_object_pose("cube", cube)
    r_near, _, _ = task.evaluate(robot)
    assert r_near > r_far + 0.1
    for _ in range(3):
        robot.apply_action(np.zeros(3), 1.0)
    assert task.is_grasped(robot)
    r_grasp, _, _ = task.evaluate(robot)
    assert r_grasp > r_near + 0.15
    for _ in range(2):
        robot.apply_action(np.array([0, 0, 0.025]), 1.0)
    r_lift, success, _ = task.evaluate(robot)
    assert r_grasp < r_lift < 1.0 and not success
    e.close()


def test_task_needs_privileged_cube_state() -> None:
    class Bare:  # a robot without object_pos / set_object_pose
        pass

    with pytest.raises(UserError, match="MujocoRobot"):  # one line naming the robots that track the cube
        PickCubeTask().reset(Bare(), np.random.default_rng(0))  # type: ignore[arg-type]


def test_expert_succeeds_95_of_100() -> None:
    env = make_pick_cube_env(seed=123)
    expert = ScriptedPickExpert(env)
    results = [run_expert(env, expert) for _ in range(100)]
    successes = [t for ok, t in results if ok]
    assert len(successes) >= 95, f"{len(successes)}/100"
    assert np.mean(successes) <= 40
    # the cube is really held between the pads at success
    assert np.linalg.norm(env.robot.object_pos("cube") - env.robot.read_state().tcp_pos) < 0.02
    env.close()


def test_expert_with_action_noise_mostly_succeeds() -> None:
    env = make_pick_cube_env(seed=7)
    expert = ScriptedPickExpert(env, noise=0.1, rng=np.random.default_rng(0))
    results = [run_expert(env, expert) for _ in range(40)]
    assert sum(ok for ok, _ in results) >= 36


def test_expert_handles_rotated_cubes() -> None:
    env = make_pick_cube_env(seed=11, cube_yaw_range=np.pi / 4)
    expert = ScriptedPickExpert(env)
    results = [run_expert(env, expert) for _ in range(30)]
    assert sum(ok for ok, _ in results) >= 27


def test_grasp_holds_while_moving() -> None:
    env = make_pick_cube_env(seed=3)
    expert = ScriptedPickExpert(env)
    ok, _ = run_expert(env, expert)
    assert ok
    rng = np.random.default_rng(0)
    for _ in range(30):
        env.robot.apply_action(rng.uniform(-1, 1, 3) * env.task.action_scale, 1.0)
    assert np.linalg.norm(env.robot.object_pos("cube") - env.robot.read_state().tcp_pos) < 0.02
    env.close()
