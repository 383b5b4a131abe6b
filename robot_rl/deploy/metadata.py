"""What an exported policy file says about itself: `PolicyMetadata`, stored as JSON inside the file (ONNX
`metadata_props` key "robot_rl"; torch.export archives: the extra file "robot_rl.json").

Torch-free (numpy and the standard library only): the deployment path reads it without torch installed.

The observation spec maps each observation key (the graph input of that name) to
`{"shape": [...], "dtype": "float32" | "uint8", "low": [...], "high": [...]}`; `low`/`high` are given for
float vectors (the Box bounds the policy scales its inputs by; null entries are infinite) and left out for
images (uint8, 0..255). The policy's output "action" is float32[action_dim] in [action_low, action_high].
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np

from robot_rl.config import UserError

FORMAT_VERSION = 1
METADATA_KEY = "robot_rl"  # ONNX metadata_props key
EXTRA_FILE = "robot_rl.json"  # the torch.export archive's extra file
FORMATS = ("onnx", "torch")
SUFFIXES = {"onnx": ".onnx", "torch": ".pt2"}
OUTPUT = "action"  # the graph's output name
BOUNDS_RTOL = 1e-6  # observation bounds that differ by less are the same bounds


@dataclass
class PolicyMetadata:
    """An exported policy: what it observes and emits, where it came from, and the limits it was
    trained within (see the module docstring for the observation spec)."""

    format: str  # onnx | torch
    task: dict[str, Any]  # {"name": ..., "config": {...}} (the run's resolved task config)
    robot: dict[str, Any]  # {"name": ..., "model": ...} of the run's robot config
    observation: dict[str, dict[str, Any]]
    action_dim: int
    action_low: list[float]
    action_high: list[float]
    control_dt: float
    safety: dict[str, Any]  # the run's safety limits, resolved (every null filled)
    source: dict[str, Any]  # run_dir, critic_updates, env_steps, checkpoint_sha256
    code: dict[str, Any]  # robot_rl version, git commit (or null)
    exported_at: str  # ISO 8601, UTC
    grasp_critic: bool = False  # the last action dim is the grasp critic's +1 close / 0 stay / -1 open
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer exporter added (kept, not read)

    @property
    def task_name(self) -> str:
        return str(self.task.get("name"))

    @property
    def task_label(self) -> str:
        """The task's name, with the gymnasium env's id for task=gym: "gym (Pendulum-v1)"."""
        env_id = (self.task.get("config") or {}).get("env_id")
        return f"{self.task_name} ({env_id})" if env_id else self.task_name

    def to_json(self) -> str:
        """Strict JSON (infinite bounds as null)."""
        data = asdict(self)
        extra = data.pop("extra")
        return json.dumps({**extra, **_finite(data)}, allow_nan=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PolicyMetadata:
        """Parse `to_json` output; ValueError (one line) saying what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"its metadata is not JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError("its metadata is not a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"its metadata has no valid format_version ({version!r})")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"it was exported by a newer robot_rl (metadata format {version}, this robot_rl reads "
                f"{FORMAT_VERSION}): upgrade robot_rl"
            )
        names = {f.name for f in fields(cls)} - {"extra"}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"its metadata lacks {', '.join(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        meta = cls(**known, extra={k: v for k, v in data.items() if k not in names})
        meta._check()
        return meta

    def _check(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"its metadata names an unknown format {self.format!r}")
        if not isinstance(self.task, dict) or not isinstance(self.task.get("name"), str):
            raise ValueError("its metadata names no task")
        if not isinstance(self.action_dim, int) or self.action_dim < 1:
            raise ValueError(f"its metadata has no valid action_dim ({self.action_dim!r})")
        if not isinstance(self.observation, dict) or not self.observation:
            raise ValueError("its metadata has no observation spec")
        for key, spec in self.observation.items():
            if not isinstance(spec, dict) or spec.get("dtype") not in ("float32", "uint8"):
                raise ValueError(f"its metadata's observation '{key}' has no float32/uint8 dtype")
            if not isinstance(spec.get("shape"), list) or not all(isinstance(d, int) for d in spec["shape"]):
                raise ValueError(f"its metadata's observation '{key}' has no shape")
            bounds = [spec[side] for side in ("low", "high") if side in spec]  # float vectors only
            shape = spec["shape"]
            if bounds and (len(shape) != 1 or any(not isinstance(b, list) or len(b) != shape[0] for b in bounds)):
                raise ValueError(f"its metadata's observation '{key}' bounds do not match its shape")
        if len(self.action_low) != self.action_dim or len(self.action_high) != self.action_dim:
            raise ValueError("its metadata's action bounds do not match action_dim")
        self.action_low = [_bound(v, -math.inf) for v in self.action_low]
        self.action_high = [_bound(v, math.inf) for v in self.action_high]
        for spec in self.observation.values():
            for side, missing in (("low", -math.inf), ("high", math.inf)):
                if side in spec:
                    spec[side] = [_bound(v, missing) for v in spec[side]]

    # ---- what it takes, in words ------------------------------------------------------------------------
    def describe(self) -> str:
        """e.g. "task pick_cube with observation state[10] and action[4]"."""
        return (
            f"task {self.task_label} with observation {describe_spec(self.observation)} and action[{self.action_dim}]"
        )

    def check_env(
        self,
        observation_space: Any,
        action_space: Any,
        task_name: str | None,
        where: str = "this policy",
        task_config: Mapping[str, Any] | None = None,
    ) -> None:
        """A one-line UserError unless an env with these spaces (and task) is the one the policy was
        trained for: the same task, observation keys, shapes and dtypes, the same observation bounds (the
        policy scales its inputs by them: another workspace would shift every position it sees) and the
        same action size and bounds. `where` names the policy (its file); `task_config` (the env's resolved
        task config) lets the message name the task keys that differ."""
        env_obs = observation_spec(observation_space)
        env_action = int(np.prod(action_space.shape))
        env_id = (task_config or {}).get("env_id")
        label = f"{task_name} ({env_id})" if task_name and env_id else task_name or "an env"
        env = f"this env is {label} with observation {describe_spec(env_obs)} and action[{env_action}]"
        ours = f"{where} is for {self.describe()}"
        differing = _differing_keys(self.task.get("config") or {}, task_config)
        config_fix = (
            f"deploy it with the task config it was trained with ({', '.join(differing)})"
            if differing
            else "deploy it with the task and robot config it was trained with"
        )
        if task_name is not None and task_name != self.task_name:
            raise UserError(f"{ours}; {env}: deploy it with task={self.task_name} or export a policy for {task_name}")
        ours_id = (self.task.get("config") or {}).get("env_id")
        if env_id and ours_id and env_id != ours_id:  # task=gym: the same name for every gymnasium env
            raise UserError(f"{ours}; {env}: deploy it with task.env_id={ours_id}")
        if _shapes(env_obs) != _shapes(self.observation) or env_action != self.action_dim:
            raise UserError(f"{ours}; {env}: {config_fix}")
        for key, spec in self.observation.items():
            if "low" not in spec:
                continue
            theirs = env_obs[key]
            off = sorted(
                set(_mismatch(spec["low"], theirs.get("low"))) | set(_mismatch(spec["high"], theirs.get("high")))
            )
            if off:
                raise UserError(
                    f"{where} scales observation '{key}' by the bounds it was trained with and this env's "
                    f"'{key}' bounds differ at entries {_ranges(off)} (policy low {_fmt(spec['low'], off)} high "
                    f"{_fmt(spec['high'], off)}; env low {_fmt(theirs['low'], off)} high {_fmt(theirs['high'], off)}): "
                    f"{config_fix} (robot.workspace included)"
                )
        env_low = np.broadcast_to(np.asarray(action_space.low, np.float64), (env_action,))
        env_high = np.broadcast_to(np.asarray(action_space.high, np.float64), (env_action,))
        if _mismatch(self.action_low, env_low) or _mismatch(self.action_high, env_high):
            raise UserError(
                f"{where} emits actions in [{_fmt(self.action_low)}, {_fmt(self.action_high)}] but this env takes "
                f"[{_fmt(env_low)}, {_fmt(env_high)}]: {config_fix}"
            )


# ---- observation specs ------------------------------------------------------------------------------------


def observation_spec(space: Any) -> dict[str, dict[str, Any]]:
    """The spec of a gymnasium Dict observation space (or a {key: Box} mapping), in its key order."""
    items = getattr(space, "spaces", space)
    spec: dict[str, dict[str, Any]] = {}
    for key, box in items.items():
        dtype = np.dtype(box.dtype)
        entry: dict[str, Any] = {"shape": [int(d) for d in box.shape], "dtype": dtype.name}
        if len(box.shape) == 1 and np.issubdtype(dtype, np.floating):
            entry["low"] = [float(v) for v in np.broadcast_to(box.low, box.shape)]
            entry["high"] = [float(v) for v in np.broadcast_to(box.high, box.shape)]
        spec[key] = entry
    return spec


def describe_spec(spec: Mapping[str, Mapping[str, Any]]) -> str:
    """e.g. "image/front[128,128,3], state[7]"."""
    return ", ".join(f"{key}[{','.join(str(d) for d in s['shape'])}]" for key, s in spec.items()) or "nothing"


def _shapes(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple]:
    return {key: (tuple(s["shape"]), s["dtype"]) for key, s in spec.items()}


def _mismatch(ours: Sequence[float], theirs: Sequence[float] | None) -> list[int]:
    """Entries where two bound vectors differ (infinite entries must match exactly)."""
    if theirs is None:
        return list(range(len(ours)))
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if a.shape != b.shape:
        return list(range(max(len(a), len(b))))
    with np.errstate(invalid="ignore"):
        same = (a == b) | np.isclose(a, b, rtol=BOUNDS_RTOL, atol=1e-9)
    return [int(i) for i in np.flatnonzero(~same)]


def _differing_keys(ours: Mapping[str, Any], theirs: Mapping[str, Any] | None) -> list[str]:
    """`task.<key>=<policy's value>` for the task config keys whose values differ (at most 4)."""
    if not theirs:
        return []
    keys = [k for k in ours if k != "name" and k in theirs and _canonical(ours[k]) != _canonical(theirs[k])]
    return [f"task.{k}={json.dumps(ours[k], separators=(',', ':'))}" for k in keys[:4]]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _ranges(indices: list[int]) -> str:
    return ",".join(str(i) for i in indices[:8]) + (",..." if len(indices) > 8 else "")


def _fmt(values: Sequence[float], at: list[int] | None = None) -> str:
    picked = [values[i] for i in (at[:8] if at is not None else range(len(values)))]
    return "[" + ", ".join(f"{float(v):.4g}" for v in picked) + "]"


def _finite(value: Any) -> Any:
    """Non-finite floats -> None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _bound(value: Any, missing: float) -> float:
    return missing if value is None else float(value)
