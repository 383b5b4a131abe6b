"""`robot-rl export` and `load_policy`: exported ONNX and torch.export policies reproduce the checkpoint's
deterministic `act` on observations of real runs (state, image, grasp-critic agents), carry their metadata,
run without torch (ONNX), and refuse damaged files and envs they were not trained for in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from cli_proc import FAST_TRAIN, robot_rl

from robot_rl.config import UserError, compose
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.deploy.export import export_policy, run_env
from robot_rl.deploy.metadata import PolicyMetadata, observation_spec
from robot_rl.deploy.policy import load_policy, read_metadata
from robot_rl.envs.factory import make_env
from robot_rl.runtime.trained import load_trained, trained_run_config

OBSERVATIONS = 1000  # read from each run's episode log
FAST = FAST_TRAIN
VISION = ["task=pick_cube_vision", "task.image_size=[32,32]"]


@dataclass
class Run:
    """A short real training run, its agent restored from the checkpoint, observations from its log and
    the checkpoint's deterministic actions for them (the ground truth of every export)."""

    run_dir: Path
    agent: object
    observations: dict[str, np.ndarray]
    expected: np.ndarray
    tolerance: float


def train_run(path: Path, tolerance: float, *overrides: str) -> Run:
    from robot_rl.runtime.embedded import train

    train(compose("train", [f"run_dir={path}", *FAST, *overrides]))
    run_cfg = trained_run_config(path)
    env = make_env(run_cfg)  # the real env (its robot started): the reference for the described spaces
    try:
        agent = load_trained(path, env).agent
        described = run_env(run_cfg)
        assert described.observation_space == env.observation_space  # the spaces, bounds included
        assert described.action_space == env.action_space
    finally:
        env.close()
    log = EpisodeLog(path / "episodes.zarr")
    assert log.num_steps >= OBSERVATIONS
    observations = {key: log.read(f"observation/{key}", slice(0, OBSERVATIONS)) for key in agent.obs_keys}
    expected = np.stack(
        [agent.act({k: v[i] for k, v in observations.items()}, deterministic=True) for i in range(OBSERVATIONS)]
    )
    return Run(path, agent, observations, expected, tolerance)


@pytest.fixture(scope="module")
def state_run(tmp_path_factory) -> Run:
    return train_run(tmp_path_factory.mktemp("state"), 1e-5, "num_demos=5", "steps=950")


@pytest.fixture(scope="module")
def grasp_run(tmp_path_factory) -> Run:
    return train_run(tmp_path_factory.mktemp("grasp"), 1e-5, "agent=rlpd_grasp", "num_demos=5", "steps=950")


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory, gl) -> Run:
    # mostly scripted demos (no encoder in the loop) and a few learner updates at the end: fast on 2 cores;
    # trained with the CPU settings (bfloat16 backbone, target next features): export and act stay float32
    return train_run(
        tmp_path_factory.mktemp("vision"),
        1e-4,
        *VISION,
        "num_demos=40",
        "steps=400",
        "runtime.learning_starts=300",
        "runtime.torch_threads=1",
        "agent.batch_size=8",
        "agent.encoder.precision=bfloat16",
        "agent.encoder.next_features=target",
    )


def exported(run: Run, fmt: str, tmp_path: Path) -> Path:
    out = tmp_path / f"policy.{'onnx' if fmt == 'onnx' else 'pt2'}"
    result = export_policy(run.run_dir, fmt, out, check=20)
    assert result.path == out and out.is_file() and result.max_abs_diff <= run.tolerance
    return out


@pytest.mark.parametrize("fmt", ["onnx", "torch"])
@pytest.mark.parametrize("which", ["state_run", "vision_run", "grasp_run"])
def test_exported_policy_matches_the_checkpoint(which, fmt, tmp_path, request):
    run: Run = request.getfixturevalue(which)
    policy = load_policy(exported(run, fmt, tmp_path))
    batched = policy.act_batch(run.observations)  # the whole log excerpt at once: the batch dim is dynamic
    one_by_one = np.stack([policy.act({k: v[i] for k, v in run.observations.items()}) for i in range(OBSERVATIONS)])
    for actions in (batched, one_by_one):
        assert actions.dtype == np.float32 and actions.shape == run.expected.shape
        arm = slice(0, -1) if run.agent.grasp else slice(None)
        diff = np.abs(actions[:, arm] - run.expected[:, arm]).max()
        print(f"{which} {fmt}: max |diff| {diff:.2e} over {OBSERVATIONS} observations")
        assert diff <= run.tolerance
        assert np.abs(actions).max() <= 1.0
    if run.agent.grasp:
        assert np.array_equal(batched[:, -1], run.expected[:, -1])
        assert np.array_equal(one_by_one[:, -1], run.expected[:, -1])
        classes = set(np.unique(run.expected[:, -1]))
        assert classes <= {-1.0, 0.0, 1.0} and len(classes) >= 2  # more than one class: a swapped map would show

    meta = policy.metadata
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert meta.format == fmt and meta.format_version == 1
    assert meta.task_name == summary["task"] and meta.grasp_critic == run.agent.grasp
    assert list(meta.observation) == run.agent.obs_keys and meta.action_dim == run.expected.shape[1]
    assert meta.source["critic_updates"] == run.agent.num_updates == summary["critic_updates"]
    assert meta.source["env_steps"] == summary["env_steps"]
    assert meta.robot == {"name": "mujoco", "model": "panda"} and meta.control_dt == 0.1
    assert meta.safety["workspace"][0][0] == 0.3 and meta.safety["max_speed"] == pytest.approx(0.3)
    assert PolicyMetadata.from_json(meta.to_json()) == meta
    assert read_metadata(policy.where) == meta


def test_export_command_and_its_errors(state_run, tmp_path):
    """`robot-rl export` writes <run_dir>/policy.onnx; a damaged checkpoint or bad arguments are one line."""
    proc = robot_rl("export", f"run_dir={state_run.run_dir}", check=True)
    out = state_run.run_dir / "policy.onnx"
    assert f"-> {out} (onnx; task pick_cube with observation state[10] and action[4]" in proc.stdout
    assert load_policy(out).metadata.source["run_dir"] == str(state_run.run_dir.resolve())

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.yaml").write_text((state_run.run_dir / "config.yaml").read_text())
    (damaged / "checkpoint.pt").write_bytes((state_run.run_dir / "checkpoint.pt").read_bytes()[:5000])
    for args, message in [
        ([f"run_dir={damaged}"], f"checkpoint {damaged / 'checkpoint.pt'} cannot be read"),
        ([], "run_dir= is missing"),
    ]:
        proc = robot_rl("export", *args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("robot-rl export: error: ") and message in lines[0], lines
    assert not (damaged / "policy.onnx").exists()

    with pytest.raises(UserError, match="format='tflite' is not one of onnx, torch"):
        export_policy(state_run.run_dir, "tflite")
    with pytest.raises(UserError, match="is a directory"):
        export_policy(state_run.run_dir, "onnx", tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no trained run"):
        export_policy(tmp_path, "onnx")


def one_line_error(fn) -> str:
    with pytest.raises(UserError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_damaged_and_foreign_files_are_refused_in_one_line(state_run, tmp_path):
    onnx_file = exported(state_run, "onnx", tmp_path / "onnx")
    pt2_file = exported(state_run, "torch", tmp_path / "torch")
    import onnx

    foreign = onnx.load(onnx_file)
    del foreign.metadata_props[:]
    newer = onnx.load(onnx_file)
    newer.metadata_props[0].value = newer.metadata_props[0].value.replace('"format_version": 1', '"format_version": 7')
    files = {
        "truncated.onnx": onnx_file.read_bytes()[:-300],
        "truncated.pt2": pt2_file.read_bytes()[:-300],  # its last intact zip record: the sample inputs'
        "half.pt2": pt2_file.read_bytes()[: pt2_file.stat().st_size // 2],
        "noise.onnx": os.urandom(4096),
        "empty.onnx": b"",
        "foreign.onnx": foreign.SerializeToString(),
        "newer.onnx": newer.SerializeToString(),
    }
    expected = {
        "truncated.onnx": "cannot be read",
        "truncated.pt2": "zip archive without robot_rl metadata (damaged",
        "half.pt2": "cannot be read",
        "noise.onnx": "cannot be read",
        "empty.onnx": "cannot be read",
        "foreign.onnx": "without robot_rl metadata",
        "newer.onnx": "newer robot_rl (metadata format 7",
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        message = one_line_error(lambda path=path: load_policy(path))
        assert f"policy {path} " in message and expected[name] in message, message
        assert "re-export" in message or "robot-rl export" in message or "upgrade" in message, message
    assert "does not exist" in one_line_error(lambda: load_policy(tmp_path / "missing.onnx"))


def test_check_env_names_the_task_and_the_fix(state_run, vision_run, tmp_path):
    state = load_policy(exported(state_run, "onnx", tmp_path / "state"))
    vision = load_policy(exported(vision_run, "onnx", tmp_path / "vision"))

    def spaces(*overrides):
        env = run_env(compose("train", list(overrides)))
        return env.observation_space, env.action_space

    state.check_env(*spaces(), "pick_cube")  # the env it was trained for
    vision.check_env(*spaces(*VISION), "pick_cube_vision")

    message = one_line_error(lambda: vision.check_env(*spaces(), "pick_cube"))
    assert message.startswith(f"policy {vision.where} is for task pick_cube_vision with observation ")
    assert "image/front[32,32,3], image/wrist[32,32,3], state[7] and action[4]" in message
    assert "this env is pick_cube with observation state[10] and action[4]" in message
    assert message.endswith("deploy it with task=pick_cube_vision or export a policy for pick_cube")

    bigger = ["task=pick_cube_vision", "task.image_size=[64,64]"]
    message = one_line_error(lambda: vision.check_env(*spaces(*bigger), "pick_cube_vision", {"image_size": [64, 64]}))
    assert "image/front[64,64,3]" in message and "task.image_size=[32,32]" in message

    # the same shapes but another workspace: the policy would see every position shifted
    message = one_line_error(
        lambda: state.check_env(*spaces("robot.workspace=[[0.3,-0.2,0.012],[0.7,0.25,0.35]]"), None)
    )
    assert "bounds differ at entries 1,8" in message and "robot.workspace" in message

    obs = {"state": np.zeros(7, np.float32)}
    with pytest.raises(ValueError, match=r"takes state\[10\] float32: got state\[7\]"):
        state.act(obs)
    with pytest.raises(ValueError, match="it has no 'image/front'"):
        vision.act(obs)


def test_onnx_policies_run_without_torch(state_run, tmp_path):
    onnx_file = exported(state_run, "onnx", tmp_path)
    pt2_file = exported(state_run, "torch", tmp_path)
    code = f"""
import json
import sys
import numpy as np
from robot_rl.deploy import metadata, policy
policy_ = policy.load_policy({str(onnx_file)!r})
action = policy_.act({{"state": np.zeros(10, np.float32)}})
assert action.shape == (4,) and action.dtype == np.float32
assert policy.read_metadata({str(pt2_file)!r}).format == "torch"
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch imported"
print("TORCH_FREE", json.dumps([float(a) for a in action]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "TORCH_FREE" in proc.stdout, proc.stderr
    torch_action = load_policy(pt2_file).act({"state": np.zeros(10, np.float32)})
    onnx_action = np.array(json.loads(proc.stdout.split("TORCH_FREE", 1)[1]))
    assert np.abs(onnx_action - torch_action).max() <= 1e-5


def gym_metadata(env_id: str = "Pendulum-v1") -> tuple[PolicyMetadata, gym.spaces.Dict, gym.spaces.Box]:
    """The metadata of a policy for a gymnasium env with unbounded observation entries."""
    observation = gym.spaces.Dict(
        {"state": gym.spaces.Box(np.float32([-1, -np.inf, -8]), np.float32([1, np.inf, 8]), dtype=np.float32)}
    )
    action = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    meta = PolicyMetadata(
        format="onnx",
        task={"name": "gym", "config": {"env_id": env_id}},
        robot={"name": None, "model": None},
        observation=observation_spec(observation),
        action_dim=1,
        action_low=[-1.0],
        action_high=[1.0],
        control_dt=0.1,
        safety={},
        source={"run_dir": "/runs/a"},
        code={"robot_rl": "0.1.0", "git_commit": None},
        exported_at="2026-01-01T00:00:00+00:00",
    )
    return meta, observation, action


def test_metadata_round_trip_and_bad_metadata():
    meta, observation, action = gym_metadata()
    text = meta.to_json()
    assert "Infinity" not in text and json.loads(text)["observation"]["state"]["low"] == [-1.0, None, -8.0]
    back = PolicyMetadata.from_json(text)
    assert back == meta and back.observation["state"]["high"][1] == np.inf
    assert back.describe() == "task gym (Pendulum-v1) with observation state[3] and action[1]"
    newer = json.loads(text) | {"format_version": 2, "added_later": {"x": 1}}
    with pytest.raises(ValueError, match="newer robot_rl"):
        PolicyMetadata.from_json(json.dumps(newer))
    # a key a newer exporter of the same format version added is kept, not refused
    assert PolicyMetadata.from_json(json.dumps(newer | {"format_version": 1})).extra == {"added_later": {"x": 1}}
    for bad, reason in [
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({k: v for k, v in json.loads(text).items() if k != "observation"}), "lacks observation"),
        (json.dumps(json.loads(text) | {"format": "tflite"}), "unknown format"),
        (json.dumps(json.loads(text) | {"action_low": [-1.0, -1.0]}), "action bounds"),
        (text.replace('"low": [-1.0, null, -8.0]', '"low": [-1.0]'), "bounds do not match its shape"),
    ]:
        with pytest.raises(ValueError, match=reason):
            PolicyMetadata.from_json(bad)

    meta.check_env(observation, action, "gym", task_config={"env_id": "Pendulum-v1"})  # unbounded entries match
    message = one_line_error(lambda: meta.check_env(observation, action, "gym", "p.onnx", {"env_id": "Other-v0"}))
    assert message == (
        "p.onnx is for task gym (Pendulum-v1) with observation state[3] and action[1]; this env is gym (Other-v0) "
        "with observation state[3] and action[1]: deploy it with task.env_id=Pendulum-v1"
    )
    wider = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)
    assert "emits actions in [[-1], [1]] but this env takes [[-2], [2]]" in one_line_error(
        lambda: meta.check_env(observation, wider, "gym")
    )
