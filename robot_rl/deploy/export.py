"""Export a trained run's deterministic policy to one file that deploys without the training stack.

The exported graph is `SACAgent.act(observation, deterministic=True)`, batched: one input per observation
key, named as the key ("state": float32 [B, D], "image/<camera>": uint8 [B, H, W, 3]; B is a dynamic batch
dimension), one output "action" float32 [B, A]. Inside: the input scaling (the observation bounds the run
trained with), the image encoders, the actor's mean through tanh, and with the grasp critic the argmax
class mapped to the gripper command (+1 close, 0 stay, -1 open) as the last action dim.

Formats: "onnx" (torch.onnx.export's dynamo exporter, opset `OPSET`; runs with onnxruntime, no torch) and
"torch" (a torch.export program saved with torch.export.save, `.pt2`). Both carry `PolicyMetadata` as JSON
(robot_rl/deploy/metadata.py). Every export is checked before it is written: the file, opened the way
`load_policy` opens it, must reproduce `act` on sampled observations.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import subprocess
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from robot_rl.agents.grasp import GRIPPER_COMMANDS
from robot_rl.agents.sac import SACAgent
from robot_rl.config import UserError
from robot_rl.data.files import write_atomic
from robot_rl.deploy.metadata import EXTRA_FILE, FORMATS, METADATA_KEY, OUTPUT, SUFFIXES, PolicyMetadata
from robot_rl.deploy.metadata import observation_spec as space_spec
from robot_rl.deploy.policy import policy_from_bytes
from robot_rl.envs.factory import ROBOT_TASKS, make_env
from robot_rl.envs.safety import SafetyLimits
from robot_rl.runtime.run import CHECKPOINT, SUMMARY
from robot_rl.runtime.trained import load_trained, trained_run_config

OPSET = 18
VECTOR_TOLERANCE = 1e-5  # max |exported - act| on state-only policies
IMAGE_TOLERANCE = 1e-4  # with image encoders (convolutions sum in another order)
DESCRIBED_ROBOTS = ("mujoco", "serial")  # robots whose spaces follow from the config alone


# ---- the graph ------------------------------------------------------------------------------------------


class PolicyModule(nn.Module):
    """`agent.act(obs, deterministic=True)` for a batch: `forward(*inputs)` takes one tensor per
    observation key, in `agent.obs_keys` order, and returns the actions [B, A]."""

    def __init__(self, agent: SACAgent):
        super().__init__()
        self.obs_keys = list(agent.obs_keys)
        self.encoder = agent.encoder
        self.actor = agent.actor
        self.grasp_critic = agent.grasp_critic
        self.register_buffer("center", agent.obs_center.detach().clone())
        self.register_buffer("inv_scale", agent.obs_inv_scale.detach().clone())
        self.register_buffer("gripper_commands", torch.tensor(GRIPPER_COMMANDS, dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.encoder is not None:
            features = self.encoder(dict(zip(self.obs_keys, inputs)))
        else:  # vectors only: concatenated in key order and scaled (SACAgent.encode)
            x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
            features = (x - self.center) * self.inv_scale
        mean, _ = self.actor(features)
        action = torch.tanh(mean)
        if self.grasp_critic is not None:
            choice = self.grasp_critic(features).argmax(dim=-1)
            action = torch.cat([action, self.gripper_commands[choice].unsqueeze(-1)], dim=-1)
        return action


# ---- the run's env, as far as an export needs it -----------------------------------------------------


class RobotDescription:
    """A run's robot as its config describes it (arm, workspace box, control period), not connected: what
    the task's observation space and the safety limits read of a robot."""

    def __init__(self, name: str, robot_cfg: dict[str, Any]):
        from robot_rl.robots.arms import get_arm

        self.name = name
        self.arm = get_arm(robot_cfg["model"])
        self.model = self.arm.name
        lo, hi = robot_cfg.get("workspace") or self.arm.workspace
        self.workspace = (np.asarray(lo, dtype=np.float64).copy(), np.asarray(hi, dtype=np.float64).copy())
        self.control_dt = float(robot_cfg.get("control_dt", 0.1))
        self.gripper_max_opening = self.arm.max_opening
        self.supports_rotation = self.arm.supports_rotation
        self.camera_names = None  # known once the robot runs; the cameras' names do not change the spaces

    def render(self, *args: Any, **kwargs: Any) -> np.ndarray:  # the vision task asks whether a robot renders
        raise RuntimeError("a robot description renders nothing: build the env to render")


class RunSpaces:
    """A run's env without its robot: the spaces, the task and the robot's description."""

    def __init__(self, observation_space, action_space, task, robot: RobotDescription):
        self.observation_space, self.action_space, self.task, self.robot = observation_space, action_space, task, robot

    @property
    def unwrapped(self) -> RunSpaces:
        return self

    def close(self) -> None:
        pass


def run_env(run_cfg: DictConfig):
    """The run's env as far as an export needs it (spaces, task, robot): described from the config,
    without starting or connecting to the robot, for the robot tasks on the sim or a serial arm (a
    hardware run exports on a machine without its arm); built with `make_env` otherwise (gym tasks,
    a ROS robot, whose workspace comes from its bridge). Close it after use."""
    task_cfg = OmegaConf.to_container(run_cfg.task, resolve=True)
    name = task_cfg.pop("name", None)
    robot_cfg = OmegaConf.to_container(run_cfg.robot, resolve=True) if run_cfg.get("robot") is not None else {}
    robot_name = robot_cfg.pop("name", None)
    if name in ROBOT_TASKS and robot_name in DESCRIBED_ROBOTS and robot_cfg.get("model"):
        from robot_rl.tasks import make_task

        robot = RobotDescription(robot_name, robot_cfg)
        try:
            task = make_task(name, **task_cfg)
        except TypeError as err:
            raise ValueError(f"bad task config for {name} ({err}); see configs/task/{name}.yaml") from None
        return RunSpaces(task.observation_space(robot), task.action_space, task, robot)
    return make_env(run_cfg)


def safety_limits_for(run_cfg: DictConfig, env) -> dict[str, Any]:
    """The run's safety limits, resolved (every null filled from the robot and the task), as a plain dict;
    {} for an env without a robot (task=gym)."""
    inner = getattr(env, "unwrapped", env)
    robot, task = getattr(inner, "robot", None), getattr(inner, "task", None)
    if robot is None or task is None:
        return {}
    robot_name = (run_cfg.get("robot") or {}).get("name")
    return SafetyLimits.from_config(run_cfg.get("safety")).resolve(robot, task, robot_name).to_dict()


# ---- metadata -------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> dict[str, Any]:
    """robot_rl's version and, when it runs from a git checkout, the commit (else null)."""
    try:
        version = importlib.metadata.version("robot_rl")
    except importlib.metadata.PackageNotFoundError:
        version = None
    root = Path(__file__).resolve().parents[2]
    commit = None
    if (root / ".git").exists() and (root / "pyproject.toml").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            )
            if out.returncode == 0 and len(out.stdout.strip()) == 40:
                commit = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return {"robot_rl": version, "git_commit": commit}


def build_metadata(
    fmt: str, run_dir: Path, run_cfg: DictConfig, env, agent: SACAgent, checkpoint_sha256: str
) -> PolicyMetadata:
    task = OmegaConf.to_container(run_cfg.task, resolve=True)
    task_name = task.pop("name", None)
    robot = OmegaConf.to_container(run_cfg.robot, resolve=True) if run_cfg.get("robot") is not None else {}
    is_robot = task_name in ROBOT_TASKS
    spec = space_spec(env.observation_space)
    summary: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads((run_dir / SUMMARY).read_text())
    action_dim = int(env.action_space.shape[0])
    return PolicyMetadata(
        format=fmt,
        task={"name": task_name, "config": task},
        robot={"name": robot.get("name"), "model": robot.get("model")} if is_robot else {"name": None, "model": None},
        observation={key: spec[key] for key in agent.obs_keys},
        action_dim=action_dim,
        action_low=[float(v) for v in np.broadcast_to(env.action_space.low, (action_dim,))],
        action_high=[float(v) for v in np.broadcast_to(env.action_space.high, (action_dim,))],
        control_dt=float(robot.get("control_dt", 0.1)),
        safety=safety_limits_for(run_cfg, env),
        source={
            "run_dir": str(run_dir.resolve()),
            "critic_updates": int(agent.num_updates),
            "env_steps": summary.get("env_steps") if isinstance(summary, dict) else None,
            "checkpoint_sha256": checkpoint_sha256,
        },
        code=code_version(),
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        grasp_critic=bool(agent.grasp),
    )


# ---- writing the file -----------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_exporter():
    """Silence the exporters' warnings and log lines (deprecations, optional torchvision ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def dynamic_batch(keys: list[str]) -> tuple:
    """torch.export's dynamic_shapes for `forward(*inputs)`: dim 0 of every input is the batch."""
    batch = torch.export.Dim("batch")
    return (tuple({0: batch} for _ in keys),)


def onnx_bytes(module: PolicyModule, example: tuple[torch.Tensor, ...], metadata: PolicyMetadata) -> bytes:
    """The ONNX model (dynamo exporter, opset OPSET, dynamic batch) with the metadata in its metadata_props."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"format=onnx needs {' and '.join(missing)}: pip install onnx onnxscript onnxruntime (or use format=torch)"
        )
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module,
            example,
            None,
            input_names=module.obs_keys,
            output_names=[OUTPUT],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=dynamic_batch(module.obs_keys),
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    proto.doc_string = f"robot_rl policy: {metadata.describe()} (robot_rl.deploy.load_policy reads it)"
    return proto.SerializeToString()


def torch_bytes(module: PolicyModule, example: tuple[torch.Tensor, ...], metadata: PolicyMetadata) -> bytes:
    """A torch.export program (dynamic batch) saved with the metadata as the extra file EXTRA_FILE."""
    import io

    with quiet_exporter(), torch.no_grad():
        program = torch.export.export(module, example, dynamic_shapes=dynamic_batch(module.obs_keys))
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files={EXTRA_FILE: metadata.to_json()})
    return buffer.getvalue()


def policy_bytes(agent: SACAgent, metadata: PolicyMetadata, observations: dict[str, np.ndarray]) -> bytes:
    """The policy file (format `metadata.format`) of `agent`; `observations`: example rows (at least 2) of
    every observation key."""
    module = PolicyModule(agent).eval()
    # the example batch has 2 rows: torch.export specialises a dimension of size 1
    example = tuple(torch.as_tensor(observations[key][:2]) for key in agent.obs_keys)
    return (onnx_bytes if metadata.format == "onnx" else torch_bytes)(module, example, metadata)


# ---- checking the file ----------------------------------------------------------------------------------


def sample_observations(observation_space, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` observations spread over the space: vectors uniform within finite bounds (standard normal
    around 0 where unbounded), images uniform random pixels."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, box in observation_space.spaces.items():
        if np.dtype(box.dtype) == np.uint8:
            out[key] = rng.integers(0, 256, size=(n, *box.shape), dtype=np.uint8)
            continue
        low = np.broadcast_to(np.asarray(box.low, np.float64), box.shape)
        high = np.broadcast_to(np.asarray(box.high, np.float64), box.shape)
        finite = np.isfinite(low) & np.isfinite(high)
        uniform = rng.uniform(np.where(finite, low, 0.0), np.where(finite, high, 1.0), size=(n, *box.shape))
        out[key] = np.where(finite, uniform, rng.standard_normal((n, *box.shape))).astype(box.dtype)
    return out


def reference_actions(agent: SACAgent, observations: dict[str, np.ndarray]) -> np.ndarray:
    """`agent.act(obs, deterministic=True)` for each row of `observations` (the ground truth of an export)."""
    n = len(next(iter(observations.values())))
    return np.stack([agent.act({k: v[i] for k, v in observations.items()}, deterministic=True) for i in range(n)])


def action_difference(agent: SACAgent, expected: np.ndarray, actual: np.ndarray) -> tuple[float, int]:
    """(max |difference| over the continuous dims, rows whose gripper class differs (grasp critic))."""
    arm = slice(0, expected.shape[1] - 1) if agent.grasp else slice(None)
    diff = float(np.abs(expected[:, arm] - actual[:, arm]).max(initial=0.0))
    classes = int((expected[:, -1] != actual[:, -1]).sum()) if agent.grasp else 0
    return diff, classes


def tolerance(agent: SACAgent) -> float:
    return IMAGE_TOLERANCE if agent.image_keys else VECTOR_TOLERANCE


# ---- the export -----------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    path: Path
    metadata: PolicyMetadata
    checked: int  # observations the file was checked on
    max_abs_diff: float  # max |file - agent.act| over them (continuous dims)


def load_run_agent(run_dir: Path, env) -> tuple[SACAgent, str]:
    """The run's agent from its latest checkpoint and that checkpoint's sha256 (the file is hashed before
    and after loading: a checkpoint replaced meanwhile, by a run still training, is loaded again)."""
    checkpoint = run_dir / CHECKPOINT
    for _ in range(3):
        before = file_sha256(checkpoint)
        agent = load_trained(run_dir, env).agent
        if file_sha256(checkpoint) == before:
            return agent, before
    raise UserError(f"{checkpoint} changed on every read (a run writing it?): export again when it is idle")


def export_policy(
    run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, check: int = 100
) -> ExportResult:
    """Export the run's latest checkpoint to `out` (default `<run_dir>/policy.onnx` or `policy.pt2`),
    checked on `check` observations sampled from the observation space. One-line errors (UserError,
    ValueError, FileNotFoundError) for a bad run, format or output path."""
    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise UserError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(check, int) or isinstance(check, bool) or check < 1:
        raise UserError(f"check={check!r} must be a number of observations >= 1")
    run_cfg = trained_run_config(run_dir)
    out = Path(out) if out is not None else run_dir / f"policy{SUFFIXES[fmt]}"
    if out.is_dir():
        raise UserError(f"out={out} is a directory: name the policy file, e.g. out={out / ('policy' + SUFFIXES[fmt])}")
    torch.set_num_threads(int(run_cfg.runtime.torch_threads))
    env = run_env(run_cfg)
    try:
        agent, checkpoint_sha256 = load_run_agent(run_dir, env)
        metadata = build_metadata(fmt, run_dir, run_cfg, env, agent, checkpoint_sha256)
        observations = sample_observations(env.observation_space, max(check, 2))
    finally:
        env.close()
    data = policy_bytes(agent, metadata, observations)
    policy = policy_from_bytes(data, str(out))
    checked = {key: value[:check] for key, value in observations.items()}
    diff, classes = action_difference(agent, reference_actions(agent, checked), policy.act_batch(checked))
    if diff > tolerance(agent) or classes:
        raise RuntimeError(
            f"the exported {fmt} policy differs from the checkpoint's act() (max |diff| {diff:.2e}, "
            f"{classes} gripper classes): not written; report this with your torch version ({torch.__version__})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, data)
    return ExportResult(out, policy.metadata, check, diff)


__all__ = [
    "ExportResult",
    "PolicyModule",
    "export_policy",
    "policy_bytes",
    "run_env",
    "safety_limits_for",
]
