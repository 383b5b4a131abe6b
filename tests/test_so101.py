"""The SO-101-class arm: its MJCF, ArmModel/ArmKinematics, MujocoRobot(model="so101"), pick_cube on it."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robot_rl.robots.arms import ARMS, PANDA, SO101, get_arm
from robot_rl.robots.kinematics import ArmKinematics
from robot_rl.robots.mujoco import DEFAULT_WORKSPACE, HOME_Q, MAX_OPENING, MujocoRobot

DOWN = np.array([0.0, 0.0, -1.0])
# so101_new_calib.urdf (TheRobotStudio/SO-ARM100): joint limits (rad) and link lengths (m)
LIMITS = {
    "shoulder_pan": 1.91986,
    "shoulder_lift": 1.74533,
    "elbow_flex": 1.69,
    "wrist_flex": 1.65806,
    "wrist_roll": 2.79253,
}


@pytest.fixture(scope="module")
def kin() -> ArmKinematics:
    return ArmKinematics("so101")


@pytest.fixture(scope="module")
def robot() -> MujocoRobot:
    r = MujocoRobot(model="so101")
    yield r
    r.close()


def test_model_structure_limits_and_link_lengths(kin: ArmKinematics) -> None:
    m = kin.model
    assert m.opt.timestep == pytest.approx(0.002)
    assert m.opt.gravity[2] == pytest.approx(-9.81)
    for cam in ("front", "wrist"):
        assert mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam) >= 0
    assert kin.joint_names == ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
    for name, limit in LIMITS.items():
        j = m.joint(name).id
        assert m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
        assert np.allclose(m.jnt_range[j], [-limit, limit])
    assert np.allclose(kin.joint_limits[1] - kin.joint_limits[0], 2 * np.array(list(LIMITS.values())) - 0.02)
    # servo-class arm: link masses of a few hundred grams, torque limited to the STS3215's ~2.9 N m
    arm_mass = sum(m.body_mass[m.body(b).id] for b in ("shoulder", "upper_arm", "lower_arm", "wrist", "hand"))
    assert 0.4 < arm_mass < 0.6
    assert np.all(np.abs(m.actuator_forcerange[: kin.n_joints]) <= 3.0)
    cube = m.geom("cube")
    assert np.allclose(cube.size, SO101.cube_half_size) and 0.01 <= m.body_mass[m.body("cube").id] <= 0.05
    # link lengths: distances between joint axes at the zero pose
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)
    anchor = {j: d.xanchor[m.joint(j).id].copy() for j in LIMITS}
    assert anchor["shoulder_pan"][2] == pytest.approx(0.0949, abs=1e-4)
    assert anchor["shoulder_lift"] == pytest.approx([0.0304, 0.0, 0.1491], abs=1e-4)
    assert np.linalg.norm(anchor["elbow_flex"] - anchor["shoulder_lift"]) == pytest.approx(0.1160, abs=2e-4)
    assert np.linalg.norm(anchor["wrist_flex"] - anchor["elbow_flex"]) == pytest.approx(0.1350, abs=2e-4)
    tcp, _ = kin.fk(np.zeros(5))  # zero pose: tool straight forward, TCP 61.1 + 98.1 mm beyond wrist_flex
    assert tcp - anchor["wrist_flex"] == pytest.approx([0.1592, 0.0, 0.0], abs=2e-4)


def test_home_pose_points_down(kin: ArmKinematics, robot: MujocoRobot) -> None:
    assert kin.n_joints == 5 and np.array_equal(kin.home_q, SO101.home_q)
    assert kin.home_tcp_rot[:, 2] @ DOWN > 0.9999
    assert kin.home_tcp_pos == pytest.approx(SO101.start_tcp, abs=1e-3)
    s = robot.reset()
    assert np.allclose(s.joint_pos, SO101.home_q) and s.gripper_opening == pytest.approx(0.07, abs=1e-6)
    assert robot.gripper_max_opening == 0.07 and robot.supports_rotation is False


def test_registry_and_unknown_arm() -> None:
    assert set(ARMS) == {"panda", "so101"} and get_arm("so101") is SO101 and get_arm(PANDA) is PANDA
    for bad in ("ur5", None):
        with pytest.raises(ValueError) as exc:
            get_arm(bad)  # type: ignore[arg-type]
        msg = str(exc.value)
        assert "\n" not in msg and "panda" in msg and "so101" in msg
    with pytest.raises(ValueError, match="unknown arm 'ur5'; known arms: panda, so101"):
        MujocoRobot(model="ur5")
    # the Panda's constants are its ArmModel's
    assert np.array_equal(HOME_Q, PANDA.home_q) and MAX_OPENING == PANDA.max_opening
    assert np.array_equal(DEFAULT_WORKSPACE[0], PANDA.workspace[0])


def test_fk_ik_round_trip_in_workspace(kin: ArmKinematics) -> None:
    """Random TCP targets over the whole workspace box are reached within 1 mm (from home), pointing down
    where the wrist allows (all of the cube area and low heights), tilted at most 30 deg elsewhere."""
    rng = np.random.default_rng(0)
    lo, hi = (np.array(b) for b in SO101.workspace)
    for target in rng.uniform(lo, hi, size=(150, 3)):
        q = kin.solve_ik(target, kin.home_q)
        assert np.all(q >= kin.joint_limits[0]) and np.all(q <= kin.joint_limits[1])
        pos, rot = kin.fk(q)
        assert np.linalg.norm(pos - target) < 1e-3, target
        assert rot[:, 2] @ DOWN > np.cos(np.radians(30)), target
        if target[2] < 0.08:
            assert rot[:, 2] @ DOWN > 0.9999, target
    # round trip from joint space: gripper-down postures (pitch joints summing to 90 deg) with a yaw
    n = 0
    while n < 50:
        pan, lift, elbow = rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(-1.2, 1.2)
        q = np.array([pan, lift, elbow, np.pi / 2 - lift - elbow, rng.uniform(-1, 1)])
        if not np.all(np.abs(q) < kin.joint_limits[1]):
            continue
        pos, rot = kin.fk(q)
        if np.any(pos < lo) or np.any(pos > hi):
            continue
        n += 1
        q_ik = kin.solve_ik(pos, kin.home_q, target_rot=rot)
        pos_ik, rot_ik = kin.fk(q_ik)
        assert np.linalg.norm(pos_ik - pos) < 1e-3 and np.allclose(rot_ik, rot, atol=1e-3), q


def test_ik_unreachable_target_is_bounded(kin: ArmKinematics) -> None:
    q = kin.solve_ik(np.array([0.6, 0.0, 0.3]), kin.home_q)  # far out of reach: a stretched best effort
    assert np.all(np.isfinite(q)) and np.all(q >= kin.joint_limits[0]) and np.all(q <= kin.joint_limits[1])
    assert kin.fk(q)[0][0] > 0.25


def test_gripper_joint_map(kin: ArmKinematics) -> None:
    so = kin  # the SO-101's rotary jaw: angle (rad) <-> opening (m)
    for w in (0.0, 0.01, 0.025, 0.07):
        assert so.gripper_opening_from_joint(so.gripper_joint_from_opening(w)) == pytest.approx(w, abs=1e-9)
    assert so.gripper_joint_from_opening(0.0) == 0.0 and so.gripper_joint_from_opening(1.0) == pytest.approx(1.74533)
    pa = ArmKinematics("panda")
    assert pa.gripper_joint_from_opening(0.08) == pytest.approx(0.04) and pa.gripper_opening_from_joint(0.02) == 0.04


def test_tracks_tcp_deltas(robot: MujocoRobot) -> None:
    robot.reset()
    robot.set_object_pose("cube", np.array([0.0, 0.3, 0.0125]))  # out of the way
    s = robot.read_state()
    for delta in ([0.02, 0, 0], [0, 0.02, 0], [0, 0, -0.02], [0, -0.02, 0.02], [-0.02, 0, 0]):
        start = s.tcp_pos.copy()
        for _ in range(3):
            s = robot.apply_action(np.array(delta, dtype=np.float64), -1.0)
        for _ in range(3):
            s = robot.apply_action(np.zeros(3), -1.0)
        moved = s.tcp_pos - start
        assert np.linalg.norm(moved - 3 * np.array(delta)) < 0.006, (delta, moved)
        assert np.linalg.norm(s.tcp_vel) < 0.02
        assert robot.tcp_rotation()[:, 2] @ DOWN > 0.999
    s = robot.apply_action(np.zeros(3), 1.0)
    s = robot.apply_action(np.zeros(3), 1.0)
    assert s.gripper_opening < 0.003
    s = robot.reset(np.array([0.22, -0.06, 0.03]))
    assert np.linalg.norm(s.tcp_pos - [0.22, -0.06, 0.03]) < 1e-3


def _success_rate(mode: str, episodes: int, noise: float) -> float:
    from robot_rl.data.schema import StepInfo
    from robot_rl.envs import make_pick_cube_env

    env = make_pick_cube_env(seed=0, robot_cfg={"model": "so101"}, reset_mode=mode)
    expert = env.task.expert(env, noise=noise, rng=np.random.default_rng(1))
    wins = 0
    try:
        for _ in range(episodes):
            obs, _ = env.reset()
            for _ in range(env.task.max_steps):
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                if terminated or truncated:
                    break
            wins += bool(StepInfo.of(info).success)
    finally:
        env.close()
    return wins / episodes


def test_expert_succeeds_on_so101_state_reset() -> None:
    assert _success_rate("state", 100, 0.0) >= 0.95


def test_expert_succeeds_on_so101_physical_reset_with_noise() -> None:
    assert _success_rate("physical", 40, 0.2) >= 0.95


def test_task_defaults_follow_the_arm() -> None:
    from robot_rl.envs import make_pick_cube_env
    from robot_rl.tasks import PickCubeTask

    env = make_pick_cube_env(seed=0, robot_cfg={"model": "so101"})
    task = env.task
    assert np.array_equal(task.cube_low, [0.14, -0.07]) and np.array_equal(task.cube_high, [0.22, 0.07])
    assert np.array_equal(task.start_tcp, SO101.start_tcp) and task.rest_z == SO101.cube_half_size
    obs, _ = env.reset()
    assert obs["state"][9] == pytest.approx(0.0125, abs=1e-4) and obs["state"][6] == pytest.approx(0.07, abs=1e-4)
    assert env.observation_space.contains(obs)
    env.close()
    # explicit values win; without a robot (or with the Panda) the Panda's defaults
    task = PickCubeTask(cube_x_range=(0.15, 0.2))
    assert np.array_equal(task.cube_low, [0.15, -0.1]) and np.array_equal(task.start_tcp, PANDA.start_tcp)
    task.use_arm(SO101)
    assert np.array_equal(task.cube_low, [0.15, -0.07]) and task.cube_half_size == 0.0125


def test_config_selects_so101_and_refuses_rotation() -> None:
    from robot_rl.config import compose
    from robot_rl.envs.factory import make_env

    env = make_env(compose("train", ["task=pick_cube_vision", "robot.model=so101"]), seed=0)
    obs, _ = env.reset()
    assert env.robot.arm is SO101 and obs["image/wrist"].shape == (128, 128, 3)
    env.close()
    with pytest.raises(ValueError) as exc:
        make_env(compose("train", ["task=pick_cube", "robot.model=so101", "task.rotation=true"]), seed=0)
    assert "\n" not in str(exc.value) and "rotation" in str(exc.value)
