"""Human in the loop: take-over and hand-back, episode labels, the simulated operator, and where
intervention data goes (both replay buffers, the zarr log; discarded episodes never to the learner)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_rl.agents.sac import SACConfig
from robot_rl.config import compose
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeLabel, EpisodeSource
from robot_rl.envs.factory import make_env
from robot_rl.envs.intervention import InterventionWrapper
from robot_rl.envs.robot_env import make_pick_cube_env
from robot_rl.runtime.embedded import train
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.rollout import env_step
from robot_rl.teleop.device import DeviceCommand, TeleopDevice
from robot_rl.teleop.sim_operator import SimulatedOperator


class ReplayDevice(TeleopDevice):
    """Replays a fixed list of commands, one per read (idle once they run out)."""

    def __init__(self, commands: list[DeviceCommand]):
        self.commands = list(commands)
        self.resets = 0

    def read(self) -> DeviceCommand:
        return self.commands.pop(0) if self.commands else DeviceCommand(np.zeros(4, np.float32))

    def reset(self) -> None:
        self.resets += 1


def human(x: float, active: bool = True, label: EpisodeLabel = EpisodeLabel.NONE) -> DeviceCommand:
    return DeviceCommand(np.array([x, 0.0, 0.0, 0.0], np.float32), active=active, label=label)


@pytest.fixture
def env():
    env = make_pick_cube_env(seed=0)
    yield env
    env.close()


def test_take_over_and_hand_back(env):
    device = ReplayDevice([human(0.0, active=False), human(1.0), human(1.0), human(0.0, active=False)])
    wrapped = InterventionWrapper(env, device)
    obs, _ = wrapped.reset(seed=1)
    assert device.resets == 1
    policy = np.array([-0.5, 0.0, 0.0, 0.0], np.float32)
    transitions = []
    for step in range(4):
        x_before = env.robot.tcp_target[0]
        t = env_step(wrapped, obs, policy, 0, step)
        transitions.append((t, env.robot.tcp_target[0] - x_before))
        obs = t.next_observation
    assert [t.intervention for t, _ in transitions] == [False, True, True, False]
    for t, dx in transitions:
        np.testing.assert_array_equal(t.policy_action, policy)  # the proposal is always kept
        expected = 1.0 if t.intervention else -0.5
        assert t.action[0] == expected  # what ran: the person's action while active, else the policy's
        assert dx == pytest.approx(expected * env.task.action_scale, abs=0.041)  # the arm moved that way
        assert np.sign(dx) == np.sign(expected)


@pytest.mark.parametrize(
    "label, reward, terminated, truncated, success",
    [
        (EpisodeLabel.SUCCESS, 1.0, True, False, True),
        (EpisodeLabel.FAILURE, 0.0, False, True, False),
        (EpisodeLabel.DISCARD, 0.0, False, True, False),
    ],
)
def test_labels_end_the_episode(env, label, reward, terminated, truncated, success):
    wrapped = InterventionWrapper(env, ReplayDevice([human(0.0, active=False), human(0.0, active=False, label=label)]))
    obs, _ = wrapped.reset(seed=2)
    first = env_step(wrapped, obs, np.zeros(4, np.float32), 0, 0)
    assert not (first.terminated or first.truncated) and first.label == EpisodeLabel.NONE
    last = env_step(wrapped, first.next_observation, np.zeros(4, np.float32), 0, 1)
    assert (last.reward, last.terminated, last.truncated, last.success, last.label) == (
        reward,
        terminated,
        truncated,
        success,
        label,
    )
    if label == EpisodeLabel.SUCCESS:
        assert last.reward_source.name == "HUMAN"


def test_simulated_operator_steps_in_when_stalled_and_hands_back(env):
    operator = SimulatedOperator(
        env, rule="stall", patience=5, duration=8, max_per_episode=1, noise=0.0, rng=np.random.default_rng(0)
    )
    wrapped = InterventionWrapper(env, operator)
    obs, _ = wrapped.reset(seed=3)
    hold = np.zeros(4, np.float32)  # a policy that does nothing: no progress
    flags = []
    for step in range(30):
        t = env_step(wrapped, obs, hold, 0, step)
        flags.append(t.intervention)
        obs = t.next_observation
        if t.terminated or t.truncated:
            break
    first = flags.index(True)
    assert 4 <= first <= 6  # stepped in after `patience` steps without progress
    assert flags[first : first + 8] == [True] * 8 and not any(flags[first + 8 :])  # handed back after 8 steps
    assert operator.takeovers == 1


def test_simulated_operator_finishes_the_task_and_rate_zero_never_intervenes(env):
    operator = SimulatedOperator(
        env, rule="schedule", start_step=0, duration=60, noise=0.0, rng=np.random.default_rng(0)
    )
    wrapped = InterventionWrapper(env, operator)
    obs, _ = wrapped.reset(seed=4)
    for step in range(60):
        t = env_step(wrapped, obs, np.zeros(4, np.float32), 0, step)
        obs = t.next_observation
        if t.terminated:
            break
    assert t.success and t.intervention  # the expert lifted the cube while in control

    never = InterventionWrapper(env, SimulatedOperator(env, rate=0.0, patience=1, rng=np.random.default_rng(0)))
    obs, _ = never.reset(seed=5)
    assert not any(env_step(never, obs, np.zeros(4, np.float32), 0, s).intervention for s in range(20))


def test_simulated_operator_rejects_bad_config(env):
    with pytest.raises(ValueError, match="rule must be one of"):
        SimulatedOperator(env, rule="always")
    with pytest.raises(ValueError, match="rate"):
        SimulatedOperator(env, rate=1.5)


def test_intervention_steps_go_to_both_buffers(env):
    learner = Learner(env.observation_space, 4, SACConfig(compile=False), capacity=100)
    obs, _ = env.reset(seed=6)
    online = env_step(env, obs, np.zeros(4, np.float32), 0, 0)
    took_over = env_step(env, online.next_observation, np.zeros(4, np.float32), 0, 1)
    took_over.intervention = True
    learner.add(online)
    learner.add(took_over)
    learner.add(online, EpisodeSource.DEMO)
    assert (len(learner.online), len(learner.prior)) == (2, 2)
    np.testing.assert_array_equal(learner.prior.observation["state"][0].numpy(), took_over.observation["state"])


def test_training_with_the_operator_logs_interventions_and_drops_discarded_episodes(tmp_path):
    """The whole pipeline in sim: the operator takes over, half its take-overs end in DISCARD."""
    run = tmp_path / "run"
    cfg = compose(
        "train",
        [
            f"run_dir={run}",
            "steps=600",
            "num_demos=2",
            "teleop=sim_operator",
            "teleop.patience=5",
            "teleop.discard_rate=0.5",
            "agent.compile=false",
            "agent.batch_size=32",
            "agent.utd=1",
            "runtime.learning_starts=50",
            "runtime.eval_every=100000",
            "runtime.eval_episodes=2",
            "runtime.log_every=200",
        ],
    )
    summary = train(cfg)
    log = EpisodeLog(run / "episodes.zarr")
    meta = log.episode_meta()
    online = meta["source"] == EpisodeSource.ONLINE
    discarded = online & (meta["label"] == EpisodeLabel.DISCARD)
    kept = online & ~discarded
    assert summary["interventions"] == int(meta["interventions"][online].sum()) > 0
    assert summary["intervention_steps"] == int(meta["intervention_steps"][online].sum()) > 0
    assert summary["discarded_episodes"] == int(discarded.sum()) > 0 and kept.any()
    assert np.all(meta["interventions"][online] <= meta["intervention_steps"][online])
    # per-step flags agree with the episode counts
    steps = log.transitions([EpisodeSource.ONLINE], include_discarded=True)
    per_episode = np.bincount(steps["episode_index"], weights=steps["intervention"], minlength=log.num_episodes)
    np.testing.assert_array_equal(per_episode[online], meta["intervention_steps"][online])
    # the learner saw exactly the kept online steps, and their intervention steps also as prior data
    demo_steps = int(meta["length"][meta["source"] == EpisodeSource.DEMO].sum())
    assert summary["replay"]["online"] == int(meta["length"][kept].sum())
    assert summary["replay"]["prior"] == demo_steps + int(meta["intervention_steps"][kept].sum())
    # a resumed learner rebuilds the same buffers from the log
    resumed = Learner(make_env(cfg).observation_space, 4, SACConfig(compile=False), capacity=10_000)
    resumed.load_log(log)
    assert (len(resumed.online), len(resumed.prior)) == (summary["replay"]["online"], summary["replay"]["prior"])
    assert json.loads((run / "summary.json").read_text())["discarded_episodes"] == summary["discarded_episodes"]
    assert np.all(meta["reset_s"][online] > 0)


@pytest.mark.parametrize("device, message", [("spacemouse", "SpaceMouse"), ("gamepad", "gamepad"), ("keyboard", "TTY")])
def test_real_device_configs_compose_and_a_missing_device_is_one_clear_line(device, message):
    """Every configs/teleop file's keys are accepted by its device; with no device attached the
    actor env fails with a one-line error naming the device (no such hardware here or on CI)."""
    from robot_rl.envs.factory import make_actor_env

    cfg = compose("train", [f"teleop={device}"])
    with pytest.raises(ValueError, match=message) as err:
        make_actor_env(cfg, 0, np.random.default_rng(0))
    assert "\n" not in str(err.value)


def test_a_four_dim_device_drives_a_six_dof_env_without_rotation():
    env = make_pick_cube_env(seed=0, rotation=True)
    try:
        wrapped = InterventionWrapper(env, ReplayDevice([human(1.0), human(1.0)]))
        obs, _ = wrapped.reset(seed=1)
        home = env.robot.tcp_rot_target.copy()
        t = env_step(wrapped, obs, np.full(7, -0.5, np.float32), 0, 0)
        assert t.intervention and t.action.shape == (7,) and t.policy_action.shape == (7,)
        np.testing.assert_array_equal(t.action, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # zero rotation, gripper last
        np.testing.assert_array_equal(env.robot.tcp_rot_target, home)  # the person's step turned nothing
        info = wrapped.step(np.zeros(7, np.float32))[4]["step_info"]
        assert info.intervention and info.intervention_action.shape == (7,)
    finally:
        env.close()
