"""Domain randomisation and the target sims (robot_rl/envs/randomize.py, robot_rl/tasks/randomization.py): seeded
per-episode draws, each family acting on the running sim, nominal values restored, off = today's env, the drawn
values in the episode log (and on the actor -> learner wire), old logs, one-line config errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import zarr
from omegaconf import OmegaConf

from robot_rl.config import UserError, compose
from robot_rl.data import schema
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogError, EpisodeLogWriter
from robot_rl.data.log_check import check_log, salvage_log
from robot_rl.data.schema import PERTURBATION_FIELDS, EpisodeSource, Transition
from robot_rl.envs.factory import make_env
from robot_rl.envs.randomize import _FIELDS, DomainRandomization
from robot_rl.envs.robot_env import RobotEnv
from robot_rl.runtime.wire import WireError, decode_chunk, encode_chunk
from robot_rl.tasks.randomization import PERTURBATION_KEYS, Perturbation, Randomization

HOLD = np.array([0.0, 0.0, 0.0, -1.0], np.float32)


def env_for(*overrides: str, task: str = "pick_cube", seed: int = 7):
    return make_env(compose("train", [f"task={task}", *overrides]), seed=seed)


def perturbed(perturb: str, task: str = "pick_cube", *more: str):
    return env_for(f"task.perturb={perturb}", *more, task=task)


def test_the_logged_fields_are_the_perturbation_keys_with_their_nominal_values():
    assert tuple(PERTURBATION_FIELDS) == PERTURBATION_KEYS
    assert PERTURBATION_FIELDS == Perturbation().as_dict()


def test_draws_are_seeded_per_episode_and_leave_the_cube_and_start_sequence_unchanged():
    plain, a, b = env_for(), env_for("task.randomize=1"), env_for("task.randomize=1")
    try:
        assert isinstance(a, DomainRandomization) and type(plain) is RobotEnv
        draws = []
        for seed in (11, 12, 11):
            plain.reset(seed=seed)
            a.reset(seed=seed)
            b.reset(seed=seed)
            assert a.perturbation == b.perturbation  # the same seed, the same draw
            draws.append(a.perturbation)
            # the cube and the start TCP come from the task's own stream: the same xy as without randomisation
            for name in ("cube",):
                np.testing.assert_allclose(
                    a.unwrapped.robot.object_pos(name)[:2], plain.unwrapped.robot.object_pos(name)[:2], atol=1e-9
                )
            np.testing.assert_allclose(a.unwrapped.robot.tcp_target, plain.unwrapped.robot.tcp_target, atol=1e-9)
        assert draws[0] == draws[2] and draws[0] != draws[1]
        p = draws[0]
        assert p.latency in (0, 1, 2) and 0.5 <= p.object_mass <= 1.5 and abs(p.camera_fovy) <= 5
    finally:
        for env in (plain, a, b):
            env.close()


def test_dynamics_change_the_running_model_and_the_cube_rests_at_its_new_size():
    env = perturbed("{object_mass: 1.5, friction: 0.6, object_size: 1.15, damping: 1.5, actuator_gain: 0.6}")
    plain = env_for()
    try:
        env.reset(seed=3)
        plain.reset(seed=3)
        m, m0 = env.unwrapped.robot.model, plain.unwrapped.robot.model
        cube = m.body("cube").id
        assert m.body_mass[cube] == pytest.approx(1.5 * m0.body_mass[cube])
        np.testing.assert_allclose(m.body_inertia[cube], 1.5 * m0.body_inertia[cube])
        for name in ("cube", "pad_left", "pad_right"):
            assert m.geom(name).friction[0] == pytest.approx(0.6 * m0.geom(name).friction[0])
            assert m.geom(name).friction[1] == m0.geom(name).friction[1]  # torsional untouched
        np.testing.assert_allclose(m.geom("cube").size, 1.15 * m0.geom("cube").size)
        arm = [m.joint(j).dofadr[0] for j in env.unwrapped.robot.kin.joint_names]
        np.testing.assert_allclose(m.dof_damping[arm], 1.5 * m0.dof_damping[arm])
        fingers = [m.joint(j).dofadr[0] for j in env.unwrapped.robot.arm.finger_joints]
        np.testing.assert_array_equal(m.dof_damping[fingers], m0.dof_damping[fingers])
        act = [m.actuator(j).id for j in env.unwrapped.robot.kin.joint_names]
        np.testing.assert_allclose(m.actuator_gainprm[act, 0], 0.6 * m0.actuator_gainprm[act, 0])
        np.testing.assert_allclose(m.actuator_biasprm[act, 1:3], 0.6 * m0.actuator_biasprm[act, 1:3])
        # the task follows the size: the cube rests (and stays) at its scaled half-size, success is judged from there
        task = env.unwrapped.task
        assert task.cube_half_size == pytest.approx(1.15 * plain.unwrapped.task.cube_half_size)
        for _ in range(3):
            env.step(HOLD)
        z = env.unwrapped.robot.object_pos("cube")[2]
        assert z == pytest.approx(task.cube_half_size, abs=5e-4) and abs(task.lift(env.unwrapped.robot)) < 5e-4
        # the softer arm: after the same moves it settles further from its target
        lags = []
        for e in (env, plain):
            e.reset(seed=3)
            for a in ([1, 0, 0, -1], [0, 1, 0, -1], [0, 0, -1, -1], [0, 0, 0, -1]):
                e.step(np.array(a, np.float32))
            robot = e.unwrapped.robot
            lags.append(np.linalg.norm(robot.tcp_target - robot.read_state().tcp_pos))
        assert lags[0] > 1.5 * lags[1], lags
    finally:
        env.close()
        plain.close()


def test_nominal_values_are_restored_every_episode_without_drift():
    env = env_for("task.randomize=1", task="pick_cube_vision", seed=5)
    fresh = env_for(task="pick_cube_vision")
    try:
        m = env.unwrapped.robot.model
        for seed in range(4):
            env.reset(seed=seed)
        assert any(getattr(m, f).tobytes() != getattr(fresh.unwrapped.robot.model, f).tobytes() for f in _FIELDS)
        env.model.apply(Perturbation())  # what every reset does first
        for field in _FIELDS:
            np.testing.assert_array_equal(getattr(m, field), getattr(fresh.unwrapped.robot.model, field), err_msg=field)
        assert env.unwrapped.task.cube_half_size == fresh.unwrapped.task.cube_half_size
    finally:
        env.close()
        fresh.close()


def test_randomisation_off_is_bit_identical_to_the_plain_env():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (12, 4)).astype(np.float32)

    def rollout(env):
        out = [env.reset(seed=9)[0]["state"]]
        out += [env.step(a)[0]["state"] for a in actions]
        env.close()
        return np.stack(out)

    base = rollout(env_for())
    for off in ("task.randomize=0", "task.randomize={dynamics: 0}", "task.perturb={}"):
        env = env_for(off)
        assert type(env) is RobotEnv, off  # nothing wrapped
        np.testing.assert_array_equal(rollout(env), base)
    # the wrapper with the identity perturbation changes nothing either (its restore is exact)
    inner = env_for()
    np.testing.assert_array_equal(rollout(DomainRandomization(inner, Randomization(), Perturbation(), seed=1)), base)


def test_latency_holds_the_first_steps_then_executes_each_action_late():
    env = perturbed("{latency: 2}")
    try:
        env.reset(seed=4)
        robot, base = env.unwrapped.robot, env.unwrapped
        scale = base.task.action_scale
        actions = [np.array([0.5, 0.0, 0.0, 1.0]), np.array([0.0, 0.5, 0.0, 1.0])]
        actions += [np.array([0.0, 0.0, 0.5, 1.0]), np.array([-0.5, 0.0, 0.0, 1.0])]
        targets = [robot.tcp_target.copy()]
        grippers = []
        for a in actions:
            env.step(a.astype(np.float32))
            targets.append(robot.tcp_target.copy())
            grippers.append(base.gripper)
        deltas = np.diff(np.stack(targets), axis=0)
        np.testing.assert_array_equal(deltas[:2], 0.0)  # steps 0 and 1: holds, exactly
        assert grippers[:2] == [-1.0, -1.0]  # the gripper keeps its (open) command
        np.testing.assert_allclose(deltas[2], actions[0][:3] * scale, atol=1e-9)  # step 2 executes step 0's
        np.testing.assert_allclose(deltas[3], actions[1][:3] * scale, atol=1e-9)
        assert grippers[2:] == [1.0, 1.0]
    finally:
        env.close()


def test_action_noise_has_its_std_on_the_arm_and_spares_the_gripper():
    env = perturbed("{action_noise: 0.1}")
    try:
        env.reset(seed=2)
        robot, base = env.unwrapped.robot, env.unwrapped
        before, moves = robot.tcp_target.copy(), []
        for _ in range(80):
            env.step(np.array([0.0, 0.0, 0.0, 0.0], np.float32))  # gripper 0: sticky, keeps open
            moves.append((robot.tcp_target - before) / base.task.action_scale)
            before = robot.tcp_target.copy()
            assert base.gripper == -1.0
        std = np.std(np.stack(moves))
        assert 0.08 < std < 0.12, std
    finally:
        env.close()


def test_observation_noise_statistics_per_entry_kind():
    env = perturbed("{obs_noise: 1.0}")
    try:
        env.reset(seed=1)
        task, robot = env.unwrapped.task, env.unwrapped.robot
        diffs = []
        for _ in range(120):
            obs = env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))[0]
            diffs.append(obs["state"] - task.observe(robot)["state"])
        d = np.stack(diffs)
        positions, velocities, gripper = np.concatenate([d[:, 0:3], d[:, 7:10]]), d[:, 3:6], d[:, 6]
        for values, std in ((positions, 0.005), (velocities, 0.02), (gripper, 0.001)):
            assert abs(values.mean()) < 0.3 * std and 0.8 * std < values.std() < 1.2 * std, (std, values.std())
    finally:
        env.close()


def test_cameras_lights_and_colours_change_the_rendered_images():
    size = "task.image_size=[48,48]"
    nominal = env_for(size, task="pick_cube_vision")
    try:
        obs0 = nominal.reset(seed=6)[0]
        cases = {
            "{camera_pos: [0.02, -0.02, 0.01]}": ("image/front", "image/wrist"),
            "{camera_rot: [0.05, 0.0, 0.0]}": ("image/front", "image/wrist"),
            "{camera_fovy: 5}": ("image/front", "image/wrist"),
        }
        for perturb, keys in cases.items():
            env = perturbed(perturb, "pick_cube_vision", size)
            obs = env.reset(seed=6)[0]
            env.close()
            for key in keys:
                changed = np.mean(np.any(obs[key] != obs0[key], axis=-1))
                assert changed > 0.05, (perturb, key, changed)
        env = perturbed("{light: 0.5}", "pick_cube_vision", size)
        dim = env.reset(seed=6)[0]["image/front"]
        env.close()
        assert dim.mean() < obs0["image/front"].mean() - 5
        env = perturbed("{cube_rgb: [-0.5, 0.5, 0.0], table_rgb: [0.0, 0.0, 0.25]}", "pick_cube_vision", size)
        obs = env.reset(seed=6)[0]
        env.close()
        front0, front = obs0["image/front"].astype(int), obs["image/front"].astype(int)
        red0 = (front0[..., 0] > 150) & (front0[..., 1] < 80)  # the red cube's pixels
        assert red0.sum() > 3 and front[red0][:, 1].mean() > front0[red0][:, 1].mean() + 40  # greener
        table = ~red0 & (front0[..., 0] > 190) & (front0[..., 1] > 150)  # the lit table top (0.72, 0.6, 0.45)
        assert front[table][:, 2].mean() > front0[table][:, 2].mean() + 20  # a bluer table
    finally:
        nominal.close()


def test_the_target_sims_keep_their_training_task_spec_and_perturb_every_episode():
    for task, target in (("pick_cube", "pick_cube_target"), ("pick_cube_vision", "pick_cube_vision_target")):
        size = "task.image_size=[32,32]" if "vision" in task else "seed=0"
        train, env = env_for(size, task=task), env_for(size, task=target)
        try:
            assert env.observation_space == train.observation_space and env.action_space == train.action_space
            want = Perturbation.from_config(OmegaConf.to_container(compose("train", [f"task={target}"]).task.perturb))
            for seed in (1, 2):
                env.reset(seed=seed)
                assert env.perturbation == want
            assert want.latency == 3 and want.actuator_gain < 1 and want.object_mass > 1 and want.friction < 1
            assert (want.camera_fovy != 0 and any(want.camera_rot)) == ("vision" in task)
        finally:
            train.close()
            env.close()


def test_the_scripted_expert_plans_over_the_latency_and_demos_record_on_the_target():
    """Without planning over the moves still in flight, the expert oscillates under 3 steps of latency and failed
    every demo on pick_cube_target; it now picks the cube on the target, and at latency 0 acts as before."""
    from robot_rl.tasks.base import make_expert

    for task, more in (("pick_cube_target", ()), ("pick_cube", ("task.randomize={latency:1.5}",))):
        env = env_for(*more, task=task)
        try:
            expert = make_expert(env, noise=0.1, rng=np.random.default_rng(0))
            successes, latencies = 0, set()
            for episode in range(6):
                obs, _ = env.reset(seed=episode)
                latencies.add(env.unwrapped.task.latency)
                expert.reset()
                for _ in range(env.unwrapped.task.max_steps):
                    obs, _, terminated, truncated, _ = env.step(expert.act(obs))
                    if terminated or truncated:
                        break
                successes += terminated
            assert successes == 6, (task, successes)
            assert latencies == ({3} if task == "pick_cube_target" else latencies) and max(latencies) > 0
        finally:
            env.close()


# ------------------------------------------------------------------------------ the episode log and the wire


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real short `robot-rl train` with randomisation (scripted demos, online and eval episodes)."""
    from robot_rl.cli import main as cli

    run = tmp_path_factory.mktemp("rand") / "run"
    status = cli(
        [
            "train",
            f"run_dir={run}",
            "steps=150",
            "task.randomize={dynamics: 1, latency: 1, obs_noise: 0.5}",
            "task.max_steps=40",
            "agent.compile=false",
            "agent.batch_size=32",
            "agent.utd=1",
            "agent.hidden_dims=[32,32]",
            "runtime.learning_starts=50",
            "runtime.eval_every=150",
            "runtime.eval_episodes=2",
            "runtime.torch_threads=1",
            "logger.tensorboard=false",
            "num_demos=2",
        ]
    )
    assert status == 0
    return run


def test_the_drawn_values_are_in_the_episode_log_of_a_training_run(trained):
    log = EpisodeLog(trained / "episodes.zarr")
    assert log.format_version == 6
    meta = log.episode_meta()
    values = meta["perturbation"]
    assert values.shape == (log.num_episodes, len(PERTURBATION_KEYS)) and values.dtype == np.float32
    root = zarr.open_group(str(trained / "episodes.zarr"), mode="r")
    assert root["meta/perturbation"].attrs["keys"] == list(PERTURBATION_KEYS)  # any zarr reader can name them
    col = {k: values[:, i] for i, k in enumerate(PERTURBATION_KEYS)}
    sources = set(meta["source"].tolist())
    assert {int(EpisodeSource.DEMO), int(EpisodeSource.ONLINE), int(EpisodeSource.EVAL)} <= sources
    assert np.all((col["object_mass"] >= 0.5) & (col["object_mass"] <= 1.5)) and len(set(col["object_mass"])) > 2
    assert set(col["latency"].tolist()) <= {0.0, 1.0, 2.0} and np.all(col["obs_noise"] == 0.5)
    for key in ("action_noise", "camera_fovy", "cube_rgb_0"):
        np.testing.assert_array_equal(col[key], 0.0)  # families left at 0 keep the nominal value
    np.testing.assert_array_equal(col["light"], 1.0)


def test_eval_on_the_target_sim_and_a_mismatched_task_is_one_line(trained, capsys):
    from robot_rl.cli import main as cli

    args = ["eval", f"run_dir={trained}", "episodes=2", "log=false"]
    assert cli([*args, "task=pick_cube_target", "task.max_steps=20"]) == 0
    summary = json.loads((trained / "eval" / "summary.json").read_text())
    assert summary["task"] == "pick_cube_target" and summary["episodes"] == 2
    capsys.readouterr()
    assert cli([*args, "task=pick_cube_vision_target", "task.image_size=[16,16]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "(task pick_cube_vision_target)" in err and "pick_cube_target" in err
    assert "{state: (10,) float32} and 4-dim actions, not" in err


def test_the_perturbation_crosses_the_wire_and_bad_values_are_refused():
    obs = {"state": np.zeros(3, np.float32)}
    values = Perturbation(object_mass=1.3, latency=2, camera_pos=(0.01, 0.0, -0.01)).as_dict()
    steps = [
        Transition(obs, np.zeros(2, np.float32), 0.0, False, i == 2, obs, np.zeros(2, np.float32), perturbation=values)
        for i in range(3)
    ]
    header, decoded = decode_chunk(encode_chunk(steps, "actor", 0, 0, True))
    assert all(t.perturbation == values for t in decoded)
    plain = [Transition(obs, np.zeros(2, np.float32), 0.0, False, True, obs, np.zeros(2, np.float32))]
    assert decode_chunk(encode_chunk(plain, "actor", 0, 0, True))[1][0].perturbation is None
    for bad in ({"wobble": 1.0}, {"friction": float("nan")}, {"friction": "high"}, [1.0]):
        steps[0].perturbation = bad
        try:
            payload = encode_chunk(steps[:1], "actor", 0, 0, True)
        except (TypeError, ValueError):
            continue
        with pytest.raises(WireError):
            decode_chunk(payload)


def test_a_format_5_store_reads_as_unperturbed_and_salvage_converts_it(tmp_path):
    path = str(tmp_path / "v6.zarr")
    obs = {"state": np.zeros(3, np.float32)}
    values = Perturbation(friction=0.7, latency=1).as_dict()
    with EpisodeLogWriter(path, {"state": ((3,), np.float32)}, 2) as writer:
        for e in range(3):
            for t in range(4):
                writer.add(
                    Transition(
                        obs, np.zeros(2, np.float32), 0.0, False, t == 3, obs, np.zeros(2, np.float32),
                        episode_id=e, step=t, perturbation=values if e == 1 else None,
                    )
                )  # fmt: skip
            writer.end_episode(EpisodeSource.ONLINE)
    rows = EpisodeLog(path).episode_meta()["perturbation"]
    np.testing.assert_array_equal(rows[[0, 2]], np.tile(schema.perturbation_row(None), (2, 1)))
    np.testing.assert_array_equal(rows[1], schema.perturbation_row(values))
    # the same store as format 5 wrote it: no meta/perturbation
    old = str(tmp_path / "v5.zarr")
    shutil.copytree(path, old)
    shutil.rmtree(os.path.join(old, "meta", "perturbation"))
    zarr.open_group(old, mode="r+").attrs["format"] = {"name": "robot_rl.episode_log", "version": 5}
    log = EpisodeLog(old)
    identity = np.tile(schema.perturbation_row(None), (3, 1))
    np.testing.assert_array_equal(log.episode_meta()["perturbation"], identity)
    np.testing.assert_array_equal(log.read("meta/perturbation", slice(0, 3)), identity)
    with pytest.raises(EpisodeLogError, match="format 5.*meta/perturbation"):
        EpisodeLogWriter(old, {"state": ((3,), np.float32)}, 2)
    assert check_log(old)["ok"]
    result = salvage_log(old, str(tmp_path / "converted.zarr"))
    assert any("perturbation set to the nominal values" in n for n in result["notes"]), result["notes"]
    new = EpisodeLog(str(tmp_path / "converted.zarr"))
    assert new.format_version == 6
    np.testing.assert_array_equal(new.episode_meta()["perturbation"], identity)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["task.randomize={wobble: 1}"], ("task.randomize.wobble is not a randomisation family", "dynamics")),
        (["task.randomize={dynamics: -1}"], ("task.randomize.dynamics=-1.0", "0..5")),
        (["task.perturb={mass: 2}"], ("task.perturb.mass is not a perturbation", "object_mass")),
        (["task.perturb={object_mass: 0}"], ("task.perturb.object_mass=0.0 must be a scale > 0",)),
        (["robot=serial", "task.randomize=1"], ("act on the in-process sim only, not robot=serial",)),
        (["robot=serial", "task=pick_cube_target"], ("not robot=serial", "task.perturb=null")),
    ],
)
def test_bad_randomisation_config_is_a_one_line_error(overrides, words):
    with pytest.raises(UserError) as err:
        make_env(compose("train", overrides), seed=0)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
