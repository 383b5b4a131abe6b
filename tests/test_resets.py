"""Automatic resets (robot_rl/tasks/reset.py): 500 consecutive physical-mode sim episodes with no
manual step, periodic full resets, failed resets detected and retried (faults injected through
MujocoRobot subclasses that misbehave like hardware), ResetError after the retries, reset timing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from robot_rl.data.schema import ResetInfo
from robot_rl.envs import RobotEnv
from robot_rl.robots.mujoco import MAX_OPENING, MujocoRobot
from robot_rl.tasks import PickCubeTask, make_task
from robot_rl.tasks.reset import ResetConfig, ResetError

TASK_YAML = Path(__file__).resolve().parents[1] / "configs" / "task" / "pick_cube.yaml"
PHYSICAL = dict(reset_mode="physical", max_steps=5, full_reset_every=10)


class FaultyRobot(MujocoRobot):
    """A MujocoRobot with armable hardware faults, each active until `k` more full resets
    (`reset()`, joint home; a homing that re-initialises the hardware) have run:
    `jam_gripper(k)`: the gripper stays closed whatever it is told; `block_arm(k)`: the arm does
    not move (an obstacle, or a protective stop); `misplace_object(k)`: objects are put back 5 cm
    off (an operator or a fixture placing the cube badly). Counts full resets and actions."""

    def __init__(self, **kw) -> None:
        self.faults = {"jam": 0, "block": 0, "misplace": 0}
        self.resets = self.actions = 0
        super().__init__(**kw)
        self.resets = 0

    def jam_gripper(self, k: int) -> None:
        self.faults["jam"] = k

    def block_arm(self, k: int) -> None:
        self.faults["block"] = k

    def misplace_object(self, k: int) -> None:
        self.faults["misplace"] = k

    def reset(self, tcp_pos=None):
        self.resets += 1
        self.faults = {name: max(0, k - 1) for name, k in self.faults.items()}
        return super().reset(tcp_pos)

    def apply_action(self, tcp_delta, gripper):
        self.actions += 1
        if self.faults["jam"]:
            gripper = 1.0
        if self.faults["block"]:
            tcp_delta = np.zeros(3)
        return super().apply_action(tcp_delta, gripper)

    def set_object_pose(self, name, pos, quat=None):
        if self.faults["misplace"]:
            pos = np.asarray(pos) + np.array([0.05, 0.0, 0.0])
        super().set_object_pose(name, pos, quat)


def make_env(seed: int = 0, **task_cfg) -> RobotEnv:
    return RobotEnv(FaultyRobot(), PickCubeTask(**task_cfg), seed=seed)


def assert_valid_start(env: RobotEnv, obs: dict) -> None:
    """The observation is a valid start state: TCP at a randomised start, gripper open, at rest,
    cube on the table inside its range."""
    task, cfg = env.task, env.task.resetter.cfg
    s = obs["state"]
    assert np.all(np.abs(s[0:3] - task.start_tcp) <= task.start_noise + cfg.pos_tol), s[0:3]
    assert np.linalg.norm(s[3:6]) <= cfg.vel_tol, s[3:6]
    assert s[6] >= MAX_OPENING - cfg.gripper_tol, s[6]
    assert np.all(s[7:9] >= task.cube_low - 1e-3) and np.all(s[7:9] <= task.cube_high + 1e-3), s[7:9]
    assert abs(s[9] - task.rest_z) < 2e-3, s[9]


def test_500_physical_episodes_without_a_manual_step() -> None:
    env = make_env(seed=0, **PHYSICAL)
    robot: FaultyRobot = env.robot  # type: ignore[assignment]
    fulls, reset_steps = [], []
    for episode in range(500):
        obs, info = env.reset()
        info = ResetInfo.of(info)
        assert info.reset_attempts == 1 and info.reset_failures == [], (episode, info)
        assert info.full_reset == (episode % 10 == 0), episode
        assert env.elapsed_steps == 0
        assert_valid_start(env, obs)
        fulls.append(info.full_reset)
        reset_steps.append(info.reset_steps)
        for _ in range(env.task.max_steps):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        assert truncated or terminated
    assert sum(fulls) == 50
    assert robot.resets == 50  # the other 450 resets were arm motions, no teleport of the arm
    assert min(reset_steps) > 0
    env.close()


def test_state_mode_is_the_default_and_teleports() -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(TASK_YAML))
    cfg.pop("name")
    assert cfg["reset_mode"] == "state"
    env = RobotEnv(FaultyRobot(), make_task("pick_cube", **cfg), seed=0)
    for _ in range(3):
        obs, info = env.reset()
        info = ResetInfo.of(info)
        assert info.reset_attempts == 1 and info.full_reset and info.reset_steps == 0
        assert_valid_start(env, obs)
    assert env.robot.resets == 3 and env.robot.actions == 0
    env.close()


def test_full_reset_every_zero_means_first_episode_only() -> None:
    env = make_env(seed=1, **{**PHYSICAL, "full_reset_every": 0})
    assert [ResetInfo.of(env.reset()[1]).full_reset for _ in range(5)] == [True, False, False, False, False]
    env.close()


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("jam_gripper", "gripper did not open"),
        ("block_arm", "arm blocked"),
        ("misplace_object", "cube ended"),
    ],
)
def test_failed_reset_is_detected_and_retried(fault: str, reason: str) -> None:
    env = make_env(seed=2, **PHYSICAL)
    robot: FaultyRobot = env.robot  # type: ignore[assignment]
    env.reset()
    for _ in range(3):  # grab at nothing, so the reset has a gripper to open
        env.step(np.array([0.3, 0.2, -0.5, 1.0], dtype=np.float32))
    getattr(robot, fault)(1)  # active through attempt 1; the retry's joint-home reset clears it
    resets_before = robot.resets
    obs, info = env.reset()
    info = ResetInfo.of(info)
    assert info.reset_attempts == 2, info
    assert len(info.reset_failures) == 1 and reason in info.reset_failures[0], info.reset_failures
    assert info.full_reset and robot.resets == resets_before + 1  # the retry began with a full reset
    assert_valid_start(env, obs)
    env.step(env.action_space.sample())  # the env runs on after a recovered reset
    env.close()


def test_permanent_fault_raises_reset_error() -> None:
    env = make_env(seed=3, **{**PHYSICAL, "max_reset_retries": 2})
    robot: FaultyRobot = env.robot  # type: ignore[assignment]
    env.reset()
    robot.jam_gripper(10**9)  # no homing clears it
    with pytest.raises(ResetError) as exc:
        env.reset()
    msg = str(exc.value)
    assert "\n" not in msg
    assert "failed 3 times" in msg and "max_reset_retries=2" in msg and "gripper" in msg and "fix:" in msg
    assert isinstance(exc.value, RuntimeError)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(env.action_space.sample())  # no stepping from a failed reset
    robot.jam_gripper(0)  # the fault is cleared: the next reset works
    obs, info = env.reset()
    info = ResetInfo.of(info)
    assert info.reset_attempts == 1 and info.full_reset  # a failed attempt before: home first
    assert_valid_start(env, obs)
    env.close()


class RealTimeRobot(FaultyRobot):
    """Takes `delay` wall seconds per command, like hardware (scaled down)."""

    delay = 0.002

    def reset(self, tcp_pos=None):
        time.sleep(self.delay)
        return super().reset(tcp_pos)

    def apply_action(self, tcp_delta, gripper):
        time.sleep(self.delay)
        return super().apply_action(tcp_delta, gripper)


def test_reset_time_is_measured_apart_from_the_episode() -> None:
    env = RobotEnv(RealTimeRobot(), PickCubeTask(**PHYSICAL), seed=4)
    for _ in range(3):
        t0 = time.perf_counter()
        obs, info = env.reset()
        info = ResetInfo.of(info)
        wall = time.perf_counter() - t0
        n = info.reset_steps + int(info.full_reset)  # commands the reset sent
        assert n >= 3 and RealTimeRobot.delay * n <= info.reset_s <= wall < 5.0, (info, wall)
        assert env.elapsed_steps == 0  # reset motions are not episode steps
        for t in range(1, env.task.max_steps + 1):
            *_, truncated, step_info = env.step(env.action_space.sample())
            assert env.elapsed_steps == t and "reset_s" not in step_info
        assert truncated
    env.close()


def test_physical_reset_is_slower_than_state_reset() -> None:
    times = {}
    for mode in ("state", "physical"):
        env = make_env(seed=5, **{**PHYSICAL, "reset_mode": mode})
        times[mode] = float(np.median([ResetInfo.of(env.reset()[1]).reset_s for _ in range(15)]))
        env.close()
    assert 0.0 < times["state"] < times["physical"] < 1.0, times


def test_config_is_validated_and_inherited() -> None:
    with pytest.raises(ValueError, match="reset_mode"):
        make_task("pick_cube", reset_mode="teleport")
    with pytest.raises(ValueError, match="max_reset_retries"):
        make_task("pick_cube", max_reset_retries=-1)
    vision = make_task("pick_cube_vision", reset_mode="physical", full_reset_every=7, reset_pos_tol=0.02)
    cfg = vision.resetter.cfg
    assert isinstance(cfg, ResetConfig) and (cfg.mode, cfg.full_reset_every, cfg.pos_tol) == ("physical", 7, 0.02)
