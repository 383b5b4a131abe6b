"""Byte payloads for the actor <-> learner transport: episode chunks and policy weights.

Both are plain `.npz` archives (numpy arrays plus one JSON header), read with `allow_pickle=False`:
a payload from the network can never run code, and any numpy can read it without robot_rl.

Episode chunk: consecutive steps of one episode (`obs/<key>` per step, `last_next_obs/<key>` for the
last step's next observation; the next observation of every other step is the following step's
observation, so each frame travels once). Header: actor, episode (the actor's counter), chunk
(index within the episode), final (the episode ends with this chunk), source, reset_s, spec (first
chunk of an episode: the actor's observation space and action size).
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from robot_rl.data.schema import EpisodeLabel, EpisodeSource, RewardSource, Transition

HEADER = "__header__"
STEP_FIELDS = {  # Transition attribute -> dtype on the wire
    "action": np.float32, "policy_action": np.float32, "reward": np.float32, "terminated": bool,
    "truncated": bool, "intervention": bool, "step": np.int64, "timestamp": np.float64, "success": bool,
    "reward_source": np.int8, "grasp_penalty": np.float32, "success_probability": np.float32, "label": np.int8,
}


class WireError(ValueError):
    """A payload that is not what the contract says (wrong kind, corrupt, foreign)."""


def _pack(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> bytes:
    arrays = {**arrays, HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(payload: bytes | memoryview, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        with np.load(io.BytesIO(bytes(payload)), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(arrays.pop(HEADER).tobytes().decode())
    except Exception as err:  # zipfile, JSON or pickle refusals: all mean "not our payload"
        raise WireError(f"unreadable {kind} payload ({type(err).__name__}: {err}); is the sender robot_rl "
                        "of the same version?") from None
    if header.get("kind") != kind:
        raise WireError(f"expected a {kind} payload, got {header.get('kind')!r}: check the topic wiring")
    return arrays, header


def encode_chunk(steps: list[Transition], actor: str, episode: int, chunk: int, final: bool,
                 source: EpisodeSource = EpisodeSource.ONLINE, reset_s: float = 0.0,
                 spec: dict[str, Any] | None = None) -> bytes:
    """Consecutive steps of one episode as bytes (see the module docstring). `spec`: the actor's
    observation space and action size (`{"observation": space_to_json(...), "action_dim": A}`), sent
    with each episode's first chunk so that a learner can build its agent from it."""
    if not steps:
        raise ValueError("encode_chunk needs at least one step")
    arrays = {name: np.asarray([getattr(t, name) for t in steps], dtype=dtype) for name, dtype in STEP_FIELDS.items()}
    for key in steps[0].observation:
        arrays[f"obs/{key}"] = np.stack([t.observation[key] for t in steps])
        arrays[f"last_next_obs/{key}"] = np.asarray(steps[-1].next_observation[key])
    return _pack(arrays, {"kind": "chunk", "actor": actor, "episode": int(episode), "chunk": int(chunk),
                          "final": bool(final), "source": int(source), "reset_s": float(reset_s),
                          "spec": spec})


def decode_chunk(payload: bytes | memoryview) -> tuple[dict[str, Any], list[Transition]]:
    """(header, steps) of an `encode_chunk` payload; raises WireError on anything else."""
    arrays, header = _unpack(payload, "chunk")
    keys = [name[4:] for name in arrays if name.startswith("obs/")]
    n = len(arrays["reward"])
    steps = []
    for i in range(n):
        observation = {key: arrays[f"obs/{key}"][i] for key in keys}
        next_observation = ({key: arrays[f"obs/{key}"][i + 1] for key in keys} if i + 1 < n
                            else {key: arrays[f"last_next_obs/{key}"] for key in keys})
        steps.append(Transition(
            observation=observation, next_observation=next_observation, action=arrays["action"][i],
            policy_action=arrays["policy_action"][i], reward=float(arrays["reward"][i]),
            terminated=bool(arrays["terminated"][i]), truncated=bool(arrays["truncated"][i]),
            intervention=bool(arrays["intervention"][i]), step=int(arrays["step"][i]),
            timestamp=float(arrays["timestamp"][i]), success=bool(arrays["success"][i]),
            reward_source=RewardSource(int(arrays["reward_source"][i])),
            grasp_penalty=float(arrays["grasp_penalty"][i]),
            success_probability=float(arrays["success_probability"][i]),
            label=EpisodeLabel(int(arrays["label"][i]))))
    return header, steps


def encode_weights(weights: dict[str, np.ndarray], version: int, meta: dict[str, Any] | None = None) -> bytes:
    """Named weight arrays (see SACAgent.policy_weights) and their version as bytes."""
    return _pack(dict(weights), {"kind": "weights", "version": int(version), **(meta or {})})


def decode_weights(payload: bytes | memoryview) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, weights) of an `encode_weights` payload; raises WireError on anything else."""
    arrays, header = _unpack(payload, "weights")
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
            spaces[key] = gym.spaces.Box(np.asarray(entry["low"], dtype), np.asarray(entry["high"], dtype),
                                         shape=tuple(entry["shape"]), dtype=dtype)
    return gym.spaces.Dict(spaces)
