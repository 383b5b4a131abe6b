"""The batched MJX simulator (robot_rl/sim_batch/) against the in-process C simulator (RobotEnv + MujocoRobot):
the same start state and actions give the same TCP trajectory (within 1 mm over 20 steps of free motion, with and
without perturbations); perturbations change what they should; a scripted pick succeeds in both sims and fails on
a slippery heavy cube; finished envs freeze; bad inputs give one-line errors.

One batch of 6 envs with max_steps=50 is compiled once for the module (about a minute on a CPU; later runs load it
from the JAX compilation cache) and reused by every test."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")

from robot_rl.config import UserError  # noqa: E402
from robot_rl.envs.robot_env import make_pick_cube_env  # noqa: E402
from robot_rl.sim_batch import BatchPickCube  # noqa: E402
from robot_rl.tasks.base import make_expert  # noqa: E402
from robot_rl.tasks.dynamics import SceneDynamics  # noqa: E402
from robot_rl.tasks.randomization import OBS_NOISE_STD, Perturbation  # noqa: E402

SEED = 7
BATCH = 6
MAX_STEPS = 50
FREE_STEPS = 20
PERTURBATIONS = [
    Perturbation(),
    Perturbation(actuator_gain=0.5),
    Perturbation(latency=2),
    Perturbation(friction=0.6, object_mass=3.0, object_size=1.3, damping=2.0),
    Perturbation(obs_noise=1.0),
    Perturbation(action_noise=0.3),
]


def free_motion_actions(steps: int = FREE_STEPS) -> np.ndarray:
    """Random TCP deltas biased upwards (the arm stays clear of the table and the cube), gripper toggling."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.0, 1.0, (steps, 4)).astype(np.float32)
    actions[:, 2] = np.abs(actions[:, 2]) * 0.5
    return actions


def c_sim_trajectory(p: Perturbation, actions: np.ndarray) -> np.ndarray:
    """Observations float32[steps + 1, 10] of RobotEnv(MujocoRobot, PickCubeTask) reset with SEED, with `p`'s
    dynamics applied to its model and its latency to the actions (the first `latency` steps hold)."""
    env = make_pick_cube_env(cube_half_size=0.02 * p.object_size)
    try:
        SceneDynamics(env.robot.model, env.robot.kin.joint_names).apply(p)
        obs = [env.reset(seed=SEED)[0]["state"]]
        for k in range(len(actions)):
            action = actions[k - p.latency] if k >= p.latency else np.zeros(4, np.float32)
            obs.append(env.step(action)[0]["state"])
        return np.array(obs)
    finally:
        env.close()


@pytest.fixture(scope="module")
def sim() -> BatchPickCube:
    return BatchPickCube(BATCH, max_steps=MAX_STEPS)


@pytest.fixture(scope="module")
def free_run(sim):
    """The batch's observations float32[steps + 1, B, 10] and TCP targets over FREE_STEPS steps from SEED."""
    actions = free_motion_actions()
    obs = [sim.reset(seeds=[SEED] * BATCH, perturbations=PERTURBATIONS)]
    targets = [sim.tcp_target()]
    for a in actions:
        obs.append(sim.step(np.repeat(a[None], BATCH, axis=0))[0])
        targets.append(sim.tcp_target())
    return np.array(obs), np.array(targets)


@pytest.mark.parametrize("env", [0, 1, 2, 3])
def test_tcp_trajectory_matches_the_c_sim_within_1mm(free_run, env):
    obs, _ = free_run
    expected = c_sim_trajectory(PERTURBATIONS[env], free_motion_actions())
    tcp_err = np.linalg.norm(obs[:, env, 0:3] - expected[:, 0:3], axis=1)
    assert tcp_err.max() < 1e-3, f"TCP off by {tcp_err.max() * 1000:.3f} mm ({PERTURBATIONS[env]})"
    assert np.linalg.norm(obs[0, env, 0:3] - obs[-1, env, 0:3]) > 0.05  # the arm really moved
    np.testing.assert_allclose(obs[:, env, 3:6], expected[:, 3:6], atol=0.01)  # TCP velocity, m/s
    np.testing.assert_allclose(obs[:, env, 6:10], expected[:, 6:10], atol=1e-3)  # gripper opening, cube


def test_perturbations_change_what_they_should(free_run):
    obs, targets = free_run
    tcp = obs[:, :, 0:3]
    lag = np.linalg.norm(targets - tcp, axis=2)  # [step, env]
    # actuator_gain 0.5: the softer servos lag their target more
    assert lag[1:, 1].mean() > 1.1 * lag[1:, 0].mean()
    # latency 2: the arm holds for two steps, then replays the nominal motion two steps late
    assert np.linalg.norm(tcp[1:3, 2] - tcp[0, 2], axis=1).max() < 1e-3
    assert np.linalg.norm(tcp[2:, 2] - tcp[:-2, 0], axis=1).max() < 2e-3
    # object_size 1.3: the cube rests 1.3 times as high; the TCP moves as nominal (free motion)
    assert obs[0, 3, 9] == pytest.approx(0.02 * 1.3, abs=2e-4)
    # obs noise 1: the observation is the nominal state plus noise of the documented std (same physics)
    noise = obs[:, 4] - obs[:, 0]
    pos_std = np.concatenate([noise[:, 0:3], noise[:, 7:10]]).std()
    assert 0.6 * OBS_NOISE_STD["position"] < pos_std < 1.4 * OBS_NOISE_STD["position"]
    assert 0.5 * OBS_NOISE_STD["velocity"] < noise[:, 3:6].std() < 1.5 * OBS_NOISE_STD["velocity"]
    # action noise 0.3: the TCP wanders off the nominal path, the gripper commands stay the same
    assert np.linalg.norm(tcp[-1, 5] - tcp[-1, 0]) > 0.005
    np.testing.assert_allclose(obs[:, 5, 6], obs[:, 0, 6], atol=2e-3)


def scripted_pick() -> tuple[np.ndarray, np.ndarray]:
    """The scripted expert's actions in the C sim from SEED until it succeeds, and the cube's height there."""
    env = make_pick_cube_env()
    try:
        obs, _ = env.reset(seed=SEED)
        expert = make_expert(env)
        expert.reset()
        actions, cube_z = [], []
        for _ in range(MAX_STEPS):
            actions.append(expert.act(obs))
            obs, _, terminated, _, _ = env.step(actions[-1])
            cube_z.append(obs["state"][9])
            if terminated:
                break
        assert terminated, "the scripted expert did not succeed in the C sim"
        return np.array(actions, np.float32), np.array(cube_z)
    finally:
        env.close()


def test_a_scripted_pick_succeeds_and_finished_envs_freeze(sim):
    actions, c_cube_z = scripted_pick()
    slippery = Perturbation(friction=0.05, object_mass=20.0)
    sim.reset(seeds=[SEED] * BATCH, perturbations=[Perturbation(), slippery, *[Perturbation()] * (BATCH - 2)])
    done_at = {}
    last_obs = None
    for k in range(MAX_STEPS + 2):
        a = actions[min(k, len(actions) - 1)] if k < len(actions) else np.array([0, 0, 0, 1], np.float32)
        obs, reward, terminated, truncated, success = sim.step(np.repeat(a[None], BATCH, axis=0))
        if k < len(actions):
            assert abs(obs[0, 9] - c_cube_z[k]) < 5e-3  # the cube follows the C sim's through the grasp and lift
        for env in np.flatnonzero(terminated | truncated):
            assert env not in done_at, "an env reported its end twice"
            done_at[env] = k
        if 0 in done_at and k > done_at[0]:  # frozen: nothing changes, nothing is reported
            np.testing.assert_array_equal(obs[0], last_obs)
            assert reward[0] == 0 and not (terminated[0] or truncated[0] or success[0])
        if 0 in done_at and k == done_at[0]:
            assert success[0] and terminated[0] and reward[0] == 1.0
        last_obs = obs[0].copy()
    assert done_at[0] == len(actions) - 1  # succeeds on the step the C sim did
    assert done_at[1] == MAX_STEPS - 1  # the slippery heavy cube slips out: truncated at max_steps
    assert sim.done.all()


def test_bad_inputs_give_one_line_errors(sim):
    def message(fn) -> str:
        with pytest.raises((ValueError, RuntimeError, UserError)) as err:
            fn()
        text = str(err.value)
        assert "\n" not in text
        return text

    assert "shape (6, 4)" in message(lambda: sim.step(np.zeros((5, 4))))
    assert "NaN" in message(lambda: sim.step(np.full((BATCH, 4), np.nan)))
    assert "one per env" in message(lambda: sim.reset(seeds=[1, 2]))
    assert "Perturbation" in message(lambda: sim.reset(perturbations=[{"friction": 2.0}] * BATCH))
    assert "latency" in message(lambda: sim.reset(perturbations=[Perturbation(latency=11)] * BATCH))
    assert "arm=panda" in message(lambda: BatchPickCube(2, arm="so101"))
    assert "cpu, cuda" in message(lambda: BatchPickCube(2, device="tpu"))
    assert ">= 1" in message(lambda: BatchPickCube(0))
    import jax

    if not any(d.platform == "gpu" for d in jax.devices()):
        assert "device=cpu" in message(lambda: BatchPickCube(2, device="cuda"))
    assert "before reset" in message(lambda: BatchPickCube(2).step(np.zeros((2, 4))))
