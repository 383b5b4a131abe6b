"""task=peg_insert and peg_insert_vision: scene selection, spaces and observation contents (wrist wrench), the
reset (fixture randomised, peg held), success only at depth inside the hole, the scripted expert, one-line config
errors, a short CLI training run, and the vision variant's images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_proc import FAST_TRAIN, robot_rl

from robot_rl.config import UserError, compose
from robot_rl.envs.factory import make_env
from robot_rl.envs.robot_env import RobotEnv, make_robot_env
from robot_rl.robots.mujoco import MujocoRobot
from robot_rl.tasks import PegInsertTask, make_expert, make_task
from robot_rl.tasks.peg_insert import FIXTURE, PEG, mat_to_quat, quat_to_mat

HOLD = np.array([0, 0, 0, 0, 0, 0, 0.7], np.float32)  # no motion, gripper kept closed


@pytest.fixture(scope="module")
def env() -> RobotEnv:
    e = make_robot_env("peg_insert", seed=0)
    yield e
    e.close()


def test_scene_and_spaces(env: RobotEnv) -> None:
    assert env.robot.model.nbody > 0 and env.robot.model.body(PEG) is not None
    assert env.action_space.shape == (7,) and env.task.rotation
    space = env.observation_space["state"]
    assert space.shape == (22,) and space.dtype == np.float32
    assert np.all(space.low < space.high)
    obs, info = env.reset(seed=0)
    assert space.contains(obs["state"])
    assert info["reset_info"].reset_attempts == 1
    # pick_cube keeps its own scene: the default model file, no peg
    cube = make_robot_env("pick_cube", seed=0)
    try:
        assert cube.robot.model.nbody == env.robot.model.nbody - 1  # cube <-> peg + fixture
        with pytest.raises(KeyError):
            cube.robot.model.body(PEG)
    finally:
        cube.close()


def test_observation_contents(env: RobotEnv) -> None:
    obs, _ = env.reset(seed=1)
    s, robot, task = obs["state"], env.robot, env.task
    state = robot.read_state()
    assert np.allclose(s[0:3], state.tcp_pos, atol=1e-6)
    assert abs(s[6] - state.gripper_opening) < 1e-6 and 0.017 < s[6] < 0.021  # closed on the 2 cm peg
    assert abs(np.linalg.norm(s[7:11]) - 1) < 1e-5 and s[7] >= 0
    entrance, hole_rot = task.hole_frame(robot)
    assert np.allclose(s[11:14], task.peg_tip(robot) - entrance, atol=1e-6)
    assert s[13] > 0.02  # the tip starts well above the hole's top face
    rel = math.atan2(hole_rot[1, 0], hole_rot[0, 0]) - math.atan2(*quat_to_mat(robot.object_quat(PEG))[[1, 0], 0])
    assert np.allclose(s[14:16], [math.cos(4 * rel), math.sin(4 * rel)], atol=1e-5)
    assert np.abs(s[16:22]).max() < 0.05  # zeroed at reset with the peg in hand


def test_wrench_free_air_and_pressing(env: RobotEnv) -> None:
    """Zero while the held peg moves in free air; large once it presses on the fixture's top."""
    env.reset(seed=2)
    task, robot = env.task, env.robot
    for _ in range(3):
        obs, *_ = env.step(np.array([0.3, 0, 0, 0, 0, 0, 0.7], np.float32))
    assert np.linalg.norm(obs["state"][16:19]) < 1.0
    # put the tip over a wall's top (centre of the +x wall) and push down a little
    pushed = []
    for i in range(20):
        entrance, rot = task.hole_frame(robot)
        rel = rot.T @ (task.peg_tip(robot) - entrance)
        goal = np.array([0.019, 0.0, 0.01 if i < 12 else -0.01])
        action = HOLD.copy()
        action[:3] = np.clip(0.8 * rot @ (goal - rel) / task.action_scale, -0.7, 0.7)
        action[5] = np.clip(task.relative_yaw(robot) / task.rotation_scale, -0.7, 0.7)
        obs, reward, terminated, *_ = env.step(action)
        assert not terminated and reward == 0.0  # on the top: no success
        if i >= 12:
            pushed.append(obs["state"][16:22])
    force = np.array(pushed)[:, :3]
    assert np.linalg.norm(force, axis=1).max() > 5.0
    assert force[:, 2].max() > 5.0  # the fixture pushes the hand up
    assert np.abs(np.array(pushed)).max(axis=0)[:3].max() <= task.force_limit  # clipped
    assert task.depth(robot) == 0.0


def test_reset_randomises_fixture_and_holds_peg(env: RobotEnv) -> None:
    task, robot = env.task, env.robot
    poses = []
    for seed in range(6):
        env.reset(seed=seed)
        pos = robot.object_pos(FIXTURE)
        yaw = math.atan2(*quat_to_mat(robot.object_quat(FIXTURE))[[1, 0], 0])
        assert task.hole_x_range[0] <= pos[0] <= task.hole_x_range[1]
        assert task.hole_y_range[0] <= pos[1] <= task.hole_y_range[1]
        assert abs(yaw) <= task.hole_yaw_range + 1e-9 and abs(pos[2]) < 1e-9
        tcp = robot.read_state().tcp_pos
        assert np.all(np.abs(tcp - task.start_tcp) <= task.start_noise + 0.01)
        assert task.is_grasped(robot)
        poses.append((pos[0], pos[1], yaw))
        # held: a few steps of motion carry the peg along
        before = robot.object_pos(PEG) - tcp
        for _ in range(3):
            env.step(np.array([0, 0, 0.5, 0, 0, 0.5, 0.7], np.float32))
        assert np.linalg.norm(robot.object_pos(PEG) - robot.read_state().tcp_pos - before) < 0.01
        assert task.is_grasped(robot)
    spread = np.ptp(np.array(poses), axis=0)
    assert spread[0] > 0.02 and spread[1] > 0.02 and spread[2] > 0.2


def place_peg(env: RobotEnv, tip_in_hole: np.ndarray) -> None:
    """Teleport the peg (upright, aligned with the hole) so its tip is at `tip_in_hole` (hole frame)."""
    task, robot = env.task, env.robot
    entrance, rot = task.hole_frame(robot)
    centre = entrance + rot @ tip_in_hole + rot[:, 2] * task.peg_half[2]
    robot.set_object_pose(PEG, centre, mat_to_quat(rot))


def test_success_only_inside_at_depth(env: RobotEnv) -> None:
    env.reset(seed=4)
    task, robot = env.task, env.robot
    place_peg(env, np.array([0.0, 0.0, -0.025]))  # in the hole, 2.5 cm deep
    reward, success, terminated = task.evaluate(robot)
    assert success and terminated and reward == 1.0
    assert task.progress(robot) == pytest.approx(0.025, abs=1e-6)
    place_peg(env, np.array([0.0, 0.0, -0.015]))  # in, not deep enough
    assert task.evaluate(robot) == (0.0, False, False)
    place_peg(env, np.array([0.0, 0.0, 0.01]))  # above the entrance
    assert not task.evaluate(robot)[1] and task.progress(robot) == pytest.approx(-0.01, abs=1e-6)
    place_peg(env, np.array([0.06, 0.0, -0.025]))  # beside the fixture, low
    assert not task.evaluate(robot)[1] and task.depth(robot) == 0.0
    dense = PegInsertTask(reward="dense")
    place_peg(env, np.array([0.0, 0.0, -0.01]))
    reward, success, terminated = dense.evaluate(robot)
    assert 0.5 < reward < 1.0 and not success and not terminated
    place_peg(env, np.array([0.0, 0.0, -0.025]))
    assert dense.evaluate(robot) == (1.0, True, False)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_expert_inserts(env: RobotEnv, noise: float) -> None:
    for seed in range(3):
        obs, _ = env.reset(seed=10 + seed)
        expert = make_expert(env, noise=noise, rng=np.random.default_rng(seed))
        for _ in range(env.task.max_steps):
            action = expert.act(obs)
            assert action[-1] > env.task.gripper_threshold and np.abs(action).max() <= 1
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert terminated and reward == 1.0 and info["step_info"].success, (noise, seed)


def test_open_command_drops_the_peg(env: RobotEnv) -> None:
    env.reset(seed=5)
    assert env.gripper == 1.0  # the sticky gripper starts closed
    drop = HOLD.copy()
    drop[-1] = -1.0
    for _ in range(3):
        env.step(drop)
    assert not env.task.is_grasped(env.robot) and env.robot.read_state().gripper_opening > 0.05


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("hole_x_range", [0.6, 0.4], "hole_x_range"),
        ("hole_y_range", [0.1], "hole_y_range"),
        ("hole_yaw_range", -0.1, "hole_yaw_range"),
        ("start_tcp", [0.5, 0.0], "start_tcp"),
        ("start_noise", -1, "start_noise"),
        ("grasp_offset", -0.01, "grasp_offset"),
        ("grasp_noise", -0.01, "grasp_noise"),
        ("insert_depth", 0, "insert_depth"),
        ("reward", "shaped", "reward"),
        ("max_steps", 0, "max_steps"),
        ("action_scale", 0, "action_scale"),
        ("rotation_scale", -0.1, "rotation_scale"),
        ("rotation_limits", [0.3, 0.3], "rotation_limits"),
        ("gripper_threshold", 1.5, "gripper_threshold"),
        ("grasp_penalty", -1, "grasp_penalty"),
        ("force_limit", 0, "force_limit"),
        ("torque_limit", 0, "torque_limit"),
        ("max_reset_retries", -1, "max_reset_retries"),
        ("grasp_tol", 0, "grasp_tol"),
        ("randomize", 1.0, "randomize"),
        ("perturb", {"friction": 2.0}, "perturb"),
        ("cameras", [], "cameras"),
        ("image_size", [64], "image_size"),
    ],
)
def test_bad_config_is_one_line(key: str, value, words: str) -> None:
    name = "peg_insert_vision" if key in ("cameras", "image_size") else "peg_insert"
    with pytest.raises(ValueError) as exc:
        make_task(name, **{key: value})
    assert "\n" not in str(exc.value) and words in str(exc.value)


def test_other_robots_are_refused_in_one_line() -> None:
    for overrides, words in (
        (["robot.model=so101"], "robot.model=panda only"),
        (["robot=ros"], "robot=mujoco"),
        (["robot=serial"], "robot=mujoco"),
    ):
        with pytest.raises(UserError) as exc:
            make_env(compose("train", ["task=peg_insert", *overrides]), seed=0)
        assert "\n" not in str(exc.value) and words in str(exc.value), overrides
    # a robot without the peg scene (pick_cube's) is refused by the task, in one line
    robot = MujocoRobot()
    try:
        with pytest.raises(UserError) as exc:
            RobotEnv(robot, PegInsertTask())
        assert "\n" not in str(exc.value) and "panda_peg_insert.xml" in str(exc.value)
    finally:
        robot.close()


def test_config_files_build_the_tasks() -> None:
    env = make_env(compose("train", ["task=peg_insert"]), seed=0)
    try:
        assert isinstance(env.unwrapped.task, PegInsertTask) and env.observation_space["state"].shape == (22,)
    finally:
        env.close()


def test_vision_variant_observes_images(gl) -> None:
    env = make_env(compose("train", ["task=peg_insert_vision", "task.image_size=[48,64]"]), seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"state", "image/front", "image/wrist"}
        assert obs["image/front"].shape == (48, 64, 3) and obs["image/front"].dtype == np.uint8
        assert obs["image/wrist"].std() > 1.0  # a real picture, not a blank
        assert obs["state"].shape == (17,) and env.observation_space.contains(obs)
        state = make_robot_env("peg_insert", seed=0)
        try:
            full, _ = state.reset(seed=0)
        finally:
            state.close()
        assert np.allclose(obs["state"][:11], full["state"][:11], atol=1e-6)  # same episode start
        assert np.allclose(obs["state"][11:], full["state"][16:], atol=1e-6)  # wrench, no peg or hole pose
    finally:
        env.close()


def test_cli_train_runs(tmp_path) -> None:
    run_dir = tmp_path / "run"
    robot_rl("train", "task=peg_insert", "steps=300", "num_demos=2", f"run_dir={run_dir}", *FAST_TRAIN, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "peg_insert" and summary["env_steps"] >= 300
