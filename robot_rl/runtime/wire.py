"""Byte payloads for the actor <-> learner transport: episode chunks and policy weights.

Both are plain `.npz` archives (numpy arrays plus one JSON header), read with `allow_pickle=False`:
a payload from the network can never run code, and any numpy can read it without robot_rl.

Episode chunk: consecutive steps of one episode (`obs/<key>` per step, `last_next_obs/<key>` for the
last step's next observation; the next observation of every other step is the following step's
observation, so each frame travels once). Header: actor, episode (the actor's counter), chunk
(index within the episode), final (the episode ends with this chunk), source, reset_s, spec (first
chunk of an episode: the actor's observation space and action size), perturbation (the episode's domain-
randomisation values by name, schema.PERTURBATION_FIELDS; null: the nominal sim).

Anyone on the DDS domain can publish, so decoding is strict: `decode_chunk` checks the archive
before reading it (size, member count, declared array sizes, no object arrays, no compression that
could expand without bound), then every header field's type and range, every array's dtype kind and
shape, the enum values (`safety`: SafetyAction bits, no unknown bit), finiteness (`success_probability`
may be NaN: no classifier; `frame_age_s` may be NaN: unknown, and is never negative) and the action range.
Whatever fails raises `WireError` with a one-line reason and a `kind` for counting (`WIRE_ERROR_KINDS`).
`check_spec` checks a spec's structure, `spec_mismatch` compares two specs and `check_chunk` checks decoded
steps against the run's spec. `RejectCounter` counts rejected network input by kind and logs it rate-limited (the
learner and the robot bridge use it).
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_rl.data import schema
from robot_rl.data.schema import SAFETY_ACTIONS, SAFETY_MASK, EpisodeLabel, EpisodeSource, RewardSource, Transition

HEADER = "__header__"
# Transition attribute -> dtype on the wire: the episode log's per-step fields (robot_rl/data/schema.py) with
# their dtypes, less episode_id (the chunk header names the episode), plus the step's label
STEP_FIELDS: dict[str, np.dtype] = {
    **{name: dtype for name, dtype in schema.STEP_FIELDS.items() if name != "episode_id"},
    "label": schema.LABEL_DTYPE,
}
MAX_PAYLOAD_BYTES = 8 << 20  # a chunk is cut at ~4 MiB of frames (remote_actor); one big frame may add as much
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 256  # members of one archive (16 step fields + 2 per observation key + the header)
MAX_CHUNK_STEPS = 100_000
MAX_OBS_KEYS = 32
MAX_OBS_ELEMENTS = 1 << 24  # elements of one observation entry (a 4k RGB frame is 25M: too big anyway)
MAX_ACTION_DIM = 64
MAX_ACTOR_CHARS = 128
ACTION_TOLERANCE = 1e-5  # actions are in [-1, 1]; float32 rounding may touch the bound
WIRE_ERROR_KINDS = ("malformed", "too_large", "shape", "enum", "nonfinite", "range", "spec")
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}(/[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}){0,3}$")
_FIELD_KINDS = {"f": "float", "b": "bool", "i": "integer", "u": "integer"}
_SCALAR_FIELDS = [name for name in STEP_FIELDS if name not in ("action", "policy_action")]  # one value a step
_INT_FIELDS = tuple(name for name in _SCALAR_FIELDS if STEP_FIELDS[name].kind in "iu")
_BOOL_FIELDS = tuple(name for name in _SCALAR_FIELDS if STEP_FIELDS[name].kind == "b")
_FLOAT_FIELDS = tuple(name for name in _SCALAR_FIELDS if STEP_FIELDS[name].kind == "f")


class WireError(ValueError):
    """A payload that is not what the contract says (wrong kind, corrupt, foreign, hostile). `kind`
    says which check failed (one of WIRE_ERROR_KINDS, for counting); `header` is the payload's header
    when it could be read (so a receiver can drop the rest of that episode)."""

    def __init__(self, message: str, kind: str = "malformed", header: dict | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.header = header


# ---------------------------------------------------------------------------------------- archives
def _pack(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> bytes:
    arrays = {**arrays, HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_npy(raw: bytes, name: str, kind: str) -> np.ndarray:
    """One `.npy` member, its header checked against its size before anything is allocated."""
    fp = io.BytesIO(raw)
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise WireError(f"unreadable {kind} payload: array {name!r} has npy format version {version}, not 1.0 or 2.0")
    if dtype.hasobject:
        raise WireError(f"unreadable {kind} payload: array {name!r} holds Python objects (a pickle): refused")
    if dtype.kind not in _FIELD_KINDS or dtype.fields is not None:
        raise WireError(
            f"unreadable {kind} payload: array {name!r} has dtype {dtype.str}: only bool, integer "
            "and float arrays are allowed"
        )
    count = math.prod(shape)
    offset = fp.tell()
    if count * dtype.itemsize != len(raw) - offset:
        raise WireError(
            f"unreadable {kind} payload: array {name!r} declares shape {shape} "
            f"({count * dtype.itemsize} bytes) but holds {len(raw) - offset} bytes"
        )
    if count == 0:
        return np.empty(shape, dtype)
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).copy()  # writable, like np.load's
    return array.reshape(shape, order="F" if fortran else "C")


def _unpack(
    payload: bytes | memoryview, kind: str, max_bytes: int = MAX_PAYLOAD_BYTES
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    size = memoryview(payload).nbytes
    if size > max_bytes:
        raise WireError(f"{kind} payload of {size} bytes exceeds the limit of {max_bytes} bytes", "too_large")
    try:
        data = payload if isinstance(payload, bytes) else bytes(payload)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ARRAYS:
                raise WireError(f"{kind} payload holds {len(infos)} arrays (at most {MAX_ARRAYS})")
            declared = sum(info.file_size for info in infos)
            if declared > max_bytes:
                raise WireError(f"{kind} payload unpacks to {declared} bytes (limit {max_bytes})", "too_large")
            arrays: dict[str, np.ndarray] = {}
            for info in infos:
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise WireError(
                        f"{kind} payload member {info.filename!r} uses zip compression "
                        f"{info.compress_type} (only stored or deflated)"
                    )
                if not info.filename.endswith(".npy") or info.filename[:-4] in arrays:
                    raise WireError(f"{kind} payload member {info.filename!r} is not one .npy array")
                arrays[info.filename[:-4]] = _read_npy(archive.read(info), info.filename[:-4], kind)
        raw_header = arrays.pop(HEADER, None)
        if raw_header is None or raw_header.dtype != np.uint8 or raw_header.ndim != 1:
            raise WireError(f"{kind} payload has no JSON header: is the sender robot_rl?")
        if raw_header.size > MAX_HEADER_BYTES:
            raise WireError(f"{kind} payload header of {raw_header.size} bytes (limit {MAX_HEADER_BYTES})", "too_large")
        header = json.loads(raw_header.tobytes().decode())
    except WireError:
        raise
    except Exception as err:  # zipfile, npy header, JSON, recursion, memory: all mean "not our payload"
        raise WireError(
            f"unreadable {kind} payload ({type(err).__name__}: {_short(err)}); is the sender robot_rl "
            "of the same version?"
        ) from None
    if not isinstance(header, dict):
        raise WireError(f"{kind} payload header is a {type(header).__name__}, not a JSON object")
    if header.get("kind") != kind:
        raise WireError(
            f"expected a {kind} payload, got {_short(header.get('kind'))!r}: check the topic wiring", header=header
        )
    return arrays, header


def _short(value: Any, limit: int = 80) -> str:
    """`value` as one short line (for messages about untrusted input)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------------------ chunks
def encode_chunk(
    steps: list[Transition],
    actor: str,
    episode: int,
    chunk: int,
    final: bool,
    source: EpisodeSource = EpisodeSource.ONLINE,
    reset_s: float = 0.0,
    spec: dict[str, Any] | None = None,
) -> bytes:
    """Consecutive steps of one episode as bytes (see the module docstring). `spec`: the actor's
    observation space and action size (`{"observation": space_to_json(...), "action_dim": A}`), sent
    with each episode's first chunk so that a learner can build its agent from it."""
    if not steps:
        raise ValueError("encode_chunk needs at least one step")
    arrays = {name: np.asarray([getattr(t, name) for t in steps], dtype=dtype) for name, dtype in STEP_FIELDS.items()}
    for key in steps[0].observation:
        arrays[f"obs/{key}"] = np.stack([t.observation[key] for t in steps])
        arrays[f"last_next_obs/{key}"] = np.asarray(steps[-1].next_observation[key])
    return _pack(
        arrays,
        {
            "kind": "chunk",
            "actor": actor,
            "episode": int(episode),
            "chunk": int(chunk),
            "final": bool(final),
            "source": int(source),
            "reset_s": float(reset_s),
            "spec": spec,
            "perturbation": None if steps[0].perturbation is None else dict(steps[0].perturbation),
        },
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_header(header: dict[str, Any]) -> None:
    """The chunk header's fields: types, ranges and enum values."""

    def fail(message: str, kind: str = "malformed"):
        raise WireError(f"chunk header: {message}", kind, header)

    actor = header.get("actor")
    if not isinstance(actor, str) or not 0 < len(actor) <= MAX_ACTOR_CHARS or not actor.isprintable():
        fail(f"actor {_short(actor)!r} is not a printable string of 1..{MAX_ACTOR_CHARS} characters")
    for name, limit in (("episode", 2**53), ("chunk", 2**31)):
        if not _is_int(header.get(name)) or not 0 <= header[name] < limit:
            fail(f"{name} {_short(header.get(name))!r} is not an integer in [0, {limit})")
    if not isinstance(header.get("final"), bool):
        fail(f"final {_short(header.get('final'))!r} is not a boolean")
    source = header.get("source")
    if not _is_int(source) or source not in {int(s) for s in EpisodeSource}:
        names = ", ".join(f"{int(s)} {s.name.lower()}" for s in EpisodeSource)
        fail(f"source {_short(source)!r} is not an EpisodeSource ({names})", "enum")
    reset_s = header.get("reset_s", 0.0)
    if not isinstance(reset_s, (int, float)) or isinstance(reset_s, bool):
        fail(f"reset_s {_short(reset_s)!r} is not a number")
    if not math.isfinite(reset_s):
        fail(f"reset_s is {reset_s}", "nonfinite")
    if reset_s < 0:
        fail(f"reset_s {reset_s} is negative", "range")
    if header.get("spec") is not None and not isinstance(header["spec"], dict):
        fail(f"spec is a {type(header['spec']).__name__}, not an object or null", "spec")
    perturbation = header.get("perturbation")
    if perturbation is not None:
        if not isinstance(perturbation, dict):
            fail(f"perturbation is a {type(perturbation).__name__}, not an object or null")
        unknown = [k for k in perturbation if k not in schema.PERTURBATION_FIELDS]
        if unknown:
            fail(f"perturbation holds unknown value(s) {[_short(k, 40) for k in unknown[:5]]}")
        for key, value in perturbation.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                fail(f"perturbation {key} {_short(value)!r} is not a number")
            if not math.isfinite(value):
                fail(f"perturbation {key} is {value}", "nonfinite")


def _check_arrays(arrays: dict[str, np.ndarray], max_steps: int) -> tuple[int, list[str]]:
    """Every array of a chunk: presence, dtype kind, shape, values. Returns (steps, observation keys)."""
    missing = [name for name in STEP_FIELDS if name not in arrays]
    if missing:
        raise WireError(f"chunk lacks the field(s) {missing}")
    keys = sorted(name[4:] for name in arrays if name.startswith("obs/"))
    next_keys = sorted(name[len("last_next_obs/") :] for name in arrays if name.startswith("last_next_obs/"))
    unknown = set(arrays) - set(STEP_FIELDS) - {f"obs/{k}" for k in keys} - {f"last_next_obs/{k}" for k in next_keys}
    if unknown:
        raise WireError(f"chunk holds unknown arrays {sorted(unknown)[:5]}")
    if not keys or len(keys) > MAX_OBS_KEYS:
        raise WireError(f"chunk has {len(keys)} observation keys (1..{MAX_OBS_KEYS})", "shape")
    if keys != next_keys:
        raise WireError(
            f"chunk observation keys {keys[:5]} differ from its last_next_obs keys {next_keys[:5]}", "shape"
        )
    bad = [k for k in keys if not _KEY.match(k)]
    if bad:
        raise WireError(f"observation key {_short(bad[0])!r} is not a name like 'state' or 'image/front'")

    reward = arrays["reward"]
    n = reward.shape[0] if reward.ndim == 1 else -1
    if n < 1:
        raise WireError(f"chunk reward has shape {reward.shape}: want one value per step, at least one step", "shape")
    if n > max_steps:
        raise WireError(f"chunk of {n} steps (limit {max_steps})", "too_large")
    for name in (*_FLOAT_FIELDS, *_BOOL_FIELDS, *_INT_FIELDS):
        array = arrays[name]
        if array.shape != (n,):
            raise WireError(f"chunk field {name} has shape {array.shape}, want ({n},)", "shape")
        want = "f" if name in _FLOAT_FIELDS else "b" if name in _BOOL_FIELDS else "iu"
        if array.dtype.kind not in want:
            raise WireError(f"chunk field {name} has dtype {array.dtype.str}, want {_FIELD_KINDS[want[0]]}")
    width = None
    for name in ("action", "policy_action"):
        array = arrays[name]
        if array.ndim != 2 or array.shape[0] != n or not 0 < array.shape[1] <= MAX_ACTION_DIM:
            raise WireError(
                f"chunk {name} has shape {array.shape}, want ({n}, A) with 1 <= A <= {MAX_ACTION_DIM}", "shape"
            )
        if width is not None and array.shape[1] != width:
            raise WireError(
                f"chunk action width {width} differs from its policy_action width {array.shape[1]}", "shape"
            )
        width = array.shape[1]
        if array.dtype.kind != "f":
            raise WireError(f"chunk {name} has dtype {array.dtype.str}, want float")
    for key in keys:
        obs, last = arrays[f"obs/{key}"], arrays[f"last_next_obs/{key}"]
        if obs.ndim < 2 or obs.ndim > 4 or obs.shape[0] != n or obs.size // n > MAX_OBS_ELEMENTS:
            raise WireError(f"chunk obs/{key} has shape {obs.shape}, want ({n}, item...) with 1..3 item dims", "shape")
        if last.shape != obs.shape[1:]:
            raise WireError(f"chunk last_next_obs/{key} has shape {last.shape}, want {obs.shape[1:]}", "shape")
        if last.dtype != obs.dtype:
            raise WireError(f"chunk last_next_obs/{key} dtype {last.dtype} differs from obs/{key} {obs.dtype}")

    # values
    for name in ("reward_source", "label"):
        enum = RewardSource if name == "reward_source" else EpisodeLabel
        if not np.isin(arrays[name], [int(v) for v in enum]).all():
            raise WireError(f"chunk {name} holds values outside {[f'{int(v)} {v.name.lower()}' for v in enum]}", "enum")
    if (arrays["safety"].astype(np.int64) & ~SAFETY_MASK).any() or (arrays["safety"] < 0).any():
        raise WireError(f"chunk safety holds bits outside {SAFETY_MASK} ({', '.join(SAFETY_ACTIONS)})", "enum")
    if (arrays["step"] < 0).any():
        raise WireError("chunk step holds negative values", "range")
    if arrays["step"].max() > np.iinfo(STEP_FIELDS["step"]).max:  # any integer dtype is accepted, then cast
        raise WireError(f"chunk step holds values over {np.iinfo(STEP_FIELDS['step']).max}", "range")
    finite = [
        ("action", arrays["action"]),
        ("policy_action", arrays["policy_action"]),
        ("reward", reward),
        ("grasp_penalty", arrays["grasp_penalty"]),
        ("timestamp", arrays["timestamp"]),
    ]
    finite += [(f"obs/{k}", arrays[f"obs/{k}"]) for k in keys if arrays[f"obs/{k}"].dtype.kind == "f"]
    finite += [
        (f"last_next_obs/{k}", arrays[f"last_next_obs/{k}"])
        for k in keys
        if arrays[f"last_next_obs/{k}"].dtype.kind == "f"
    ]
    for name, array in finite:
        if not np.isfinite(array).all():
            raise WireError(f"chunk {name} holds NaN or infinite values", "nonfinite")
    probability = arrays["success_probability"]
    if np.isinf(probability).any():
        raise WireError("chunk success_probability holds infinite values (NaN means no classifier)", "nonfinite")
    known = probability[~np.isnan(probability)]
    if known.size and (known.min() < 0.0 or known.max() > 1.0):
        raise WireError("chunk success_probability holds values outside [0, 1]", "range")
    age = arrays["frame_age_s"]
    if np.isinf(age).any():
        raise WireError("chunk frame_age_s holds infinite values (NaN means unknown)", "nonfinite")
    if (age < 0).any():  # NaN compares False: unknown ages pass
        raise WireError("chunk frame_age_s holds negative values", "range")
    for name in ("action", "policy_action"):
        if np.abs(arrays[name]).max() > 1.0 + ACTION_TOLERANCE:
            raise WireError(f"chunk {name} holds values outside [-1, 1]", "range")
    return n, keys


def decode_chunk(
    payload: bytes | memoryview, max_bytes: int = MAX_PAYLOAD_BYTES, max_steps: int = MAX_CHUNK_STEPS
) -> tuple[dict[str, Any], list[Transition]]:
    """(header, steps) of an `encode_chunk` payload; raises WireError (with a `kind`) on anything else:
    a payload over `max_bytes`, a chunk of more than `max_steps` steps, or any failed check (see the
    module docstring). The header's `spec` is only checked to be an object or null: `check_spec`."""
    arrays, header = _unpack(payload, "chunk", max_bytes)
    _check_header(header)
    try:
        n, keys = _check_arrays(arrays, max_steps)
    except WireError as err:
        err.header = header
        raise
    fields = {name: arrays[name].astype(dtype, copy=False) for name, dtype in STEP_FIELDS.items()}
    perturbation = header.get("perturbation")
    perturbation = None if perturbation is None else {k: float(v) for k, v in perturbation.items()}
    obs = {key: arrays[f"obs/{key}"] for key in keys}
    last = {key: arrays[f"last_next_obs/{key}"] for key in keys}
    steps = []
    for i in range(n):
        observation = {key: obs[key][i] for key in keys}
        next_observation = {key: obs[key][i + 1] for key in keys} if i + 1 < n else dict(last)
        steps.append(
            Transition(
                observation=observation,
                next_observation=next_observation,
                action=fields["action"][i],
                policy_action=fields["policy_action"][i],
                reward=float(fields["reward"][i]),
                terminated=bool(fields["terminated"][i]),
                truncated=bool(fields["truncated"][i]),
                intervention=bool(fields["intervention"][i]),
                step=int(fields["step"][i]),
                timestamp=float(fields["timestamp"][i]),
                success=bool(fields["success"][i]),
                reward_source=RewardSource(int(fields["reward_source"][i])),
                grasp_penalty=float(fields["grasp_penalty"][i]),
                success_probability=float(fields["success_probability"][i]),
                label=EpisodeLabel(int(fields["label"][i])),
                frame_age_s=float(fields["frame_age_s"][i]),
                safety=int(fields["safety"][i]),
                perturbation=perturbation,
            )
        )
    return header, steps


# ------------------------------------------------------------------------------------------- specs
def check_spec(spec: Any) -> dict[str, Any]:
    """`spec` if it is a well-formed `{"observation": space_to_json(...), "action_dim": A}`; WireError
    (kind "spec") otherwise: observation keys that are store-safe names, shapes of positive sizes,
    numeric dtypes, bounds (float entries) of the entry's shape without NaN and low <= high."""

    def fail(message: str):
        raise WireError(f"spec: {message}", "spec")

    if not isinstance(spec, dict) or set(spec) != {"observation", "action_dim"}:
        fail("want an object with exactly observation and action_dim")
    action_dim = spec["action_dim"]
    if not _is_int(action_dim) or not 0 < action_dim <= MAX_ACTION_DIM:
        fail(f"action_dim {_short(action_dim)!r} is not an integer in 1..{MAX_ACTION_DIM}")
    observation = spec["observation"]
    if not isinstance(observation, dict) or not 0 < len(observation) <= MAX_OBS_KEYS:
        fail(f"observation must be an object of 1..{MAX_OBS_KEYS} entries")
    for key, entry in observation.items():
        if not _KEY.match(key) or any(part.startswith("__") for part in key.split("/")):
            fail(f"observation key {_short(key)!r} is not a name like 'state' or 'image/front'")
        if any(other.startswith(key + "/") for other in observation):
            fail(f"observation keys {key!r} and {key}/... clash (one would be a group and an array in the log)")
        if not isinstance(entry, dict):
            fail(f"observation {key!r} is not an object")
        shape = entry.get("shape")
        if (
            not isinstance(shape, list)
            or not 0 < len(shape) <= 3
            or not all(_is_int(d) and d > 0 for d in shape)
            or math.prod(shape) > MAX_OBS_ELEMENTS
        ):
            fail(f"observation {key!r} shape {_short(shape)!r} is not 1..3 positive sizes")
        try:
            dtype = np.dtype(entry.get("dtype"))
        except TypeError:
            dtype = None
        if not isinstance(entry.get("dtype"), str) or dtype is None or dtype.kind not in "fiu" or dtype.fields:
            fail(f"observation {key!r} dtype {_short(entry.get('dtype'))!r} is not a numeric dtype name")
        if dtype == np.uint8 and "low" not in entry:
            continue
        try:
            low = np.asarray(entry.get("low"), np.float64)
            high = np.asarray(entry.get("high"), np.float64)
        except (TypeError, ValueError):
            fail(f"observation {key!r} bounds are not arrays of numbers")
        if low.shape != tuple(shape) or high.shape != tuple(shape):
            fail(f"observation {key!r} bounds have shapes {low.shape} / {high.shape}, want {tuple(shape)}")
        if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
            fail(f"observation {key!r} bounds hold NaN or low > high")
    return spec


def spec_mismatch(spec: dict[str, Any], reference: dict[str, Any]) -> str | None:
    """Why `spec` differs from `reference` (both well-formed), or None when they agree: the same keys,
    shapes, dtypes and action size, and bounds equal to float32 precision."""
    if spec["action_dim"] != reference["action_dim"]:
        return f"action size {spec['action_dim']} != {reference['action_dim']}"
    a, b = spec["observation"], reference["observation"]
    if set(a) != set(b):
        return f"observation keys {sorted(a)[:5]} != {sorted(b)}"
    for key, entry in b.items():
        other = a[key]
        if list(other["shape"]) != list(entry["shape"]) or other["dtype"] != entry["dtype"]:
            return f"observation {key!r}: {other['shape']} {other['dtype']} != {entry['shape']} {entry['dtype']}"
        for bound in ("low", "high"):
            if (bound in entry) != (bound in other):
                return f"observation {key!r}: bounds given on one side only"
            if bound in entry and not np.allclose(
                np.asarray(other[bound], np.float64), np.asarray(entry[bound], np.float64), rtol=1e-6, atol=1e-7
            ):
                return f"observation {key!r}: {bound} bounds differ"
    return None


def check_chunk(steps: list[Transition], spec: dict[str, Any]) -> None:
    """Decoded steps against a (well-formed) spec: the observation keys, item shapes and dtypes and the
    action width; WireError (kind "spec") otherwise. decode_chunk made every step alike, so the first
    step and the last next observation stand for all."""
    expected = spec["observation"]
    for name, observation in (("observation", steps[0].observation), ("next observation", steps[-1].next_observation)):
        if set(observation) != set(expected):
            raise WireError(f"chunk {name} keys {sorted(observation)[:5]} are not the run's {sorted(expected)}", "spec")
        for key, entry in expected.items():
            value = observation[key]
            if value.shape != tuple(entry["shape"]) or value.dtype != np.dtype(entry["dtype"]):
                raise WireError(
                    f"chunk {name} {key!r} is {value.dtype}{list(value.shape)}, the run's is "
                    f"{entry['dtype']}{entry['shape']}",
                    "spec",
                )
    if steps[0].action.shape != (spec["action_dim"],):
        raise WireError(
            f"chunk actions have {steps[0].action.shape[0]} dims, the run's have {spec['action_dim']}", "spec"
        )


# ----------------------------------------------------------------------------------------- weights
def encode_weights(weights: dict[str, np.ndarray], version: int, meta: dict[str, Any] | None = None) -> bytes:
    """Named weight arrays (see SACAgent.policy_weights) and their version as bytes."""
    return _pack(dict(weights), {"kind": "weights", "version": int(version), **(meta or {})})


def decode_weights(
    payload: bytes | memoryview, max_bytes: int = 256 << 20
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, weights) of an `encode_weights` payload; raises WireError on anything else (including
    a version that is not a non-negative integer and non-finite weights)."""
    arrays, header = _unpack(payload, "weights", max_bytes)
    if not _is_int(header.get("version")) or header["version"] < 0:
        raise WireError(
            f"weights version {_short(header.get('version'))!r} is not a non-negative integer", "malformed", header
        )
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise WireError(f"weights {_short(name)!r} hold NaN or infinite values", "nonfinite", header)
    return header, arrays


def space_to_json(space) -> dict[str, Any]:
    """A Dict observation space as JSON: shape, dtype and (for float vectors) the bounds per key."""
    out = {}
    for key, box in space.spaces.items():
        entry = {"shape": list(box.shape), "dtype": np.dtype(box.dtype).name}
        if np.dtype(box.dtype) != np.uint8:
            entry["low"], entry["high"] = box.low.tolist(), box.high.tolist()
        out[key] = entry
    return out


def space_from_json(spec: dict[str, Any]):
    """The gymnasium Dict space `space_to_json` described (uint8 images in 0..255)."""
    import gymnasium as gym

    spaces = {}
    for key, entry in spec.items():
        dtype = np.dtype(entry["dtype"])
        if dtype == np.uint8:
            spaces[key] = gym.spaces.Box(0, 255, shape=tuple(entry["shape"]), dtype=np.uint8)
        else:
            spaces[key] = gym.spaces.Box(
                np.asarray(entry["low"], dtype),
                np.asarray(entry["high"], dtype),
                shape=tuple(entry["shape"]),
                dtype=dtype,
            )
    return gym.spaces.Dict(spaces)


# ------------------------------------------------------------------------------------- rejections
class RejectCounter:
    """Counts rejected network input by kind and logs it rate-limited: the first rejection of each
    kind at once, then at most one line per kind every `period_s` seconds, saying how many there were
    since the last line. Thread-safe. `counts()` is what status/stats report."""

    def __init__(
        self, log: Callable[[str], None], period_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = log
        self.period_s = float(period_s)
        self.clock = clock
        self._counts: dict[str, int] = {}
        self._unreported: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, message: str) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._unreported[kind] = self._unreported.get(kind, 0) + 1
            now = self.clock()
            last = self._last_log.get(kind)
            if last is not None and now - last < self.period_s:
                return
            n, self._unreported[kind], self._last_log[kind] = self._unreported[kind], 0, now
        self.log(message if n == 1 else f"{message} [{n} {kind} rejections since the last report]")

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
