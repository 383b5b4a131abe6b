"""Zarr episode log: one append-only store per run (``<run_dir>/episodes.zarr``), one writer process.

Layout (zarr format 3, nested groups; observation keys keep their ``/``)::

    episodes.zarr/
      data/<field>                 per-step arrays, all episodes concatenated along axis 0 (T steps)
        action f32[T,A]  policy_action f32[T,A]  reward f32[T]  terminated bool[T]  truncated bool[T]
        intervention bool[T]  episode_id i64[T]  step i32[T] (index within the episode)
        timestamp f64[T]  success bool[T]  reward_source u8[T] (RewardSource)  grasp_penalty f32[T]
        success_probability f32[T] (reward classifier output, NaN without one)
        frame_age_s f32[T] (age of the camera frame the observation holds, seconds; NaN when unknown)
        safety u16[T] (SafetyAction bits: what the safety layer changed on the step; 0 = nothing)
        observation/<key>          e.g. observation/state f32[T,D], observation/image/front u8[T,H,W,3]
      meta/episode_ends i64[E]     exclusive end of each episode in the step arrays: THE commit record
      meta/<field>[E]              source u8 (EpisodeSource), success bool, length i32,
                                   intervention_steps i32, interventions i32 (take-overs),
                                   episode_return f32, episode_id i64, label u8 (EpisodeLabel: a
                                   person's verdict; 3 = discarded, never trained on),
                                   reset_s f32 (the reset before it), episode_s f32 (wall time),
                                   eval_step i64 (for an evaluation run by ``robot-rl train``: the
                                   online env-step count it evaluates; -1 for every other episode),
                                   safety_steps i32 (steps whose data/safety is not 0)
      meta/perturbation f32[E,K]   the episode's domain-randomisation values (robot_rl/envs/randomize.py),
                                   column names in the array's ``keys`` attribute (schema.PERTURBATION_FIELDS);
                                   the nominal values (1 for scales, 0 for offsets) for an unperturbed episode
      meta/last_observation/<key>  [E,...] the next observation of each episode's last step

Next observations are not stored per step (that would duplicate every image): within an episode
``next_obs[t] = obs[t + 1]``; for the last step ``t = episode_ends[e] - 1`` it is
``meta/last_observation/<key>[e]``. ``EpisodeLog.transitions`` and ``EpisodeLog.episode`` rebuild it.

Chunking: small per-step items (state, scalars) use chunks of 4096 steps (per-episode meta: 1024
episodes), so a long run is a few hundred files per array. Large per-step items (images, anything of
1 KiB or more per step) use one-step inner chunks inside shards of about 4 MiB: one frame is read
with one byte-range read (no episode decode), while a million frames are a few thousand shard files,
not a million. Images are compressed with blosc zstd (bitshuffle), the rest with zstd.

Integrity (format 3 and later): every chunk (every inner chunk of a shard) ends with a CRC32C of its
compressed bytes (zarr's ``crc32c`` codec after the compressor; shard indexes carry one too), so a damaged
chunk fails to decode instead of reading as garbage. Every chunk that covers committed rows exists on disk,
even when all its values equal the fill value (the writer sets zarr's ``write_empty_chunks``), so a
missing chunk file is damage, never "all zeros": zarr would silently read it as the fill value, so
``EpisodeLog`` takes a chunk inventory (a directory listing) at open and refuses a store with a
missing chunk, and its reads refuse a chunk that disappears later. A chunk that fails its checksum
raises ``EpisodeLogError`` when read. The writer validates a store completely before it modifies
it (format, specs, the inventory, ``meta/episode_ends`` against ``meta/length``, every meta array,
the checksum of every committed chunk, and a decode of the chunks an append will rewrite): a damaged
store is refused and left byte-identical. ``robot-rl check-log <store>`` reports what is damaged and
``robot-rl salvage-log <store> out=<new store>`` copies every intact episode into a new store
(``robot_rl/data/log_check.py``). Format 2 stores (no checksums, empty chunks not written) are still
read; the writer refuses them (``salvage-log`` converts them).

Format 4 adds ``data/frame_age_s``. Format 3 stores (and format 2) lack it: every reader reads their frame
ages as NaN (unknown); the writer refuses to append to them, as to format 2 (``salvage-log`` converts them,
frame ages NaN).

Format 5 adds ``data/safety`` (the safety layer's actions per step, robot_rl/envs/safety.py) and
``meta/safety_steps``. Stores of formats 2 to 4 read both as 0 (no safety action recorded); the writer refuses
to append to them and ``salvage-log`` converts them, as above.

Format 6 adds ``meta/perturbation`` (the values a simulated episode was perturbed by: domain randomisation or a
target sim). Stores of formats 2 to 5 read it as the nominal values (no perturbation); the writer refuses to append to
them and ``salvage-log`` converts them, as above.

Crash-safety protocol (zarr 3.1.6 LocalStore writes every key, chunk or ``zarr.json``, to a temp
file and ``os.replace``-s it into place, so a single key is never seen half-written):

1. Steps of the episode in progress live in writer memory only.
2. ``end_episode`` writes the new rows of every data array, meta array and the new
   ``meta/episode_ends`` value *through a handle whose shape already includes them*: only chunk files
   change, the on-disk shapes (``zarr.json``) do not, so readers see nothing new.
3. It then grows the shape (``zarr.json``) of every data and per-episode meta array.
4. Last, it grows ``meta/episode_ends``'s shape by one. This one atomic file replace is the commit:
   when the new length is visible, its value and everything it points to is already on disk.

Sharded image arrays: a reader reads a shard's index and then a frame's byte range in two file
opens, so it may pair an old index with a newer shard file. That is safe because zarr 3.1.6 rewrites a
shard by keeping the existing inner-chunk bytes and laying chunks out in order with the index at the
end; appends only add chunks at higher step indices, so committed frames keep their byte offsets.

A ``kill -9`` at any point leaves every committed episode intact; the only leftovers are rows past
the last committed episode and ``*.partial`` temp files. A full disk (ENOSPC, EDQUOT, EFBIG) while
committing is the same: the writer removes its temp files, keeps its counters at the last commit and
raises a one-line ``EpisodeLogError``; rerunning resumes. Readers trust ``meta/episode_ends`` only:
read it FIRST, then open the other arrays (shapes only grow, so they are always long enough) and
ignore steps past ``episode_ends[-1]`` and meta rows past ``len(episode_ends)``. A writer re-opening
the store (a resumed run) truncates the leftovers and deletes the temp files, after validating. A new
store is built in a temp directory and renamed into place, so it appears complete or not at all. One
writer at a time is enforced with an ``flock`` on ``<store>.lock`` (released by the OS if the writer
dies). Not covered: power loss (zarr does not fsync; ``salvage-log`` rebuilds what it can).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import google_crc32c  # a zarr dependency (its crc32c codec)
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync
from zarr.storage import LocalStore

from robot_rl.data import schema
from robot_rl.data.schema import EpisodeLabel, EpisodeSource, RewardSource, Transition, count_takeovers

try:  # advisory single-writer lock; Unix only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT_NAME = "robot_rl.episode_log"
# 2 added success_probability, interventions, label, reset_s, episode_s; 3 added chunk checksums,
# every chunk written (a chunk inventory), meta/eval_step; 4 added data/frame_age_s; 5 added data/safety and
# meta/safety_steps; 6 added meta/perturbation
FORMAT_VERSION = 6
OLDEST_READABLE_VERSION = 2
CHECKSUMS_SINCE = 3  # the first format with chunk checksums and a chunk inventory
# What each format added, for the writer's refusal of an older store ("written without ...")
FORMAT_ADDED: dict[int, str] = {
    3: "chunk checksums",
    4: "camera frame ages (data/frame_age_s)",
    5: "safety-layer actions (data/safety)",
    6: "domain-randomisation values (meta/perturbation)",
}
STORE_NAME = "episodes.zarr"

STEP_CHUNK = 4096  # steps per chunk for small per-step items
EPISODE_CHUNK = 1024  # episodes per chunk for per-episode meta
LARGE_ITEM_BYTES = 1024  # per-step items this big or bigger get one-step chunks in shards
SHARD_TARGET_BYTES = 4 << 20  # raw bytes per shard for large items
MAX_SHARD_STEPS = 1024

# Per-step fields besides observations: name -> dtype name (action and policy_action are [A]); defined in
# robot_rl/data/schema.py
STEP_FIELDS: dict[str, str] = {name: dtype.name for name, dtype in schema.STEP_FIELDS.items()}
META_FIELDS: dict[str, str] = {
    "source": "uint8",
    "success": "bool",
    "length": "int32",
    "intervention_steps": "int32",
    "episode_return": "float32",
    "episode_id": "int64",
    "interventions": "int32",
    "label": schema.LABEL_DTYPE.name,
    "reset_s": "float32",
    "episode_s": "float32",
    "eval_step": "int64",
    "safety_steps": "int32",
    "perturbation": "float32",
}
META_SHAPES: dict[str, tuple[int, ...]] = {"perturbation": (len(schema.PERTURBATION_FIELDS),)}  # others: one value
META_FILL: dict[str, int] = {"eval_step": -1}  # fill values other than 0 (perturbation: see meta_fill)
# meta fields older stores lack (read as fill)
FIELDS_SINCE: dict[str, int] = {"eval_step": 3, "safety_steps": 5, "perturbation": 6}
STEP_FIELDS_SINCE: dict[str, int] = {"frame_age_s": 4, "safety": 5}  # step fields older stores lack (read as fill)
STEP_FILL: dict[str, float] = {"frame_age_s": float("nan")}  # fill values other than 0

LAYOUT_DESCRIPTION = (
    "robot_rl episode log. data/<field>: per-step arrays of all episodes concatenated on axis 0 "
    "(action, policy_action, reward, terminated, truncated, intervention, episode_id, step, "
    "timestamp, success, reward_source [0 task, 1 classifier, 2 human, 3 interventions], grasp_penalty, "
    "success_probability [NaN without a reward classifier], frame_age_s [seconds between the capture of the "
    "camera frame the observation holds and the step; NaN when unknown], safety [bits of what the safety layer "
    "changed on the step: 1 clip_box, 2 clip_speed, 4 clip_accel, 8 clip_orientation, 16 gripper_rate, "
    "32 joint_margin, 64 hold_stale_obs, 128 hold_late_command, 256 hold_force, 512 fault_nonfinite; 0 nothing], "
    "observation/<key>). "
    "meta/episode_ends[E]: exclusive end index of each episode in the step arrays; "
    "episode e is steps [episode_ends[e-1], episode_ends[e]) with episode_ends[-1] = 0. "
    "meta/<field>[E]: source [0 demo, 1 online, 2 intervention, 3 eval, 4 deploy], success, length, "
    "intervention_steps, interventions (take-overs), episode_return, episode_id, label [0 none, 1 success, "
    "2 failure, 3 discard: discarded episodes must not be trained on], reset_s, episode_s, eval_step "
    "[the online env-step count an evaluation episode of a training run evaluates; -1 otherwise], "
    "safety_steps [steps of the episode whose data/safety is not 0], "
    "perturbation [E, K: the values a simulated episode was perturbed by, the column names in its 'keys' attribute; "
    "scales are 1 and offsets 0 for an unperturbed episode]. "
    "Next observations are not stored per step: "
    "next_observation[t] = observation[t+1] inside an episode, and for the last step of episode e it "
    "is meta/last_observation/<key>[e]. Trust only meta/episode_ends (read it first): steps past "
    "episode_ends[-1] and meta rows past len(episode_ends) are uncommitted and must be ignored. "
    "Every chunk ends with a crc32c of its bytes, and every chunk covering committed rows exists on disk "
    "(a missing chunk is damage, not fill values)."
)

ObsSpec = dict[str, tuple[tuple[int, ...], np.dtype]]

MISSING, UNREADABLE, SHORT_SHAPE, INCONSISTENT = "missing", "unreadable", "short shape", "inconsistent index"
_EMPTY = np.uint64(2**64 - 1)  # a shard index entry of an absent inner chunk
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


class EpisodeLogError(ValueError):
    """A problem with an episode log a person can act on; the message names the store and the fix."""


def salvage_hint(path: str) -> str:
    """The fix for a damaged store, as the error messages and ``robot-rl check-log`` print it."""
    return f"run `robot-rl check-log {path}`, then `robot-rl salvage-log {path} out=<new store>`"


def _corrupt(path: str, what: str) -> EpisodeLogError:
    return EpisodeLogError(f"episode log {path} is corrupt ({what}): {salvage_hint(path)}")


# --------------------------------------------------------------------------------------------- specs


def parse_obs_spec(obs_spec: Any) -> ObsSpec:
    """Normalise ``{key: (shape, dtype)}``, ``{key: Box}`` or a ``gymnasium.spaces.Dict`` to a spec."""
    items = getattr(obs_spec, "spaces", obs_spec)
    if not isinstance(items, Mapping) or not items:
        raise EpisodeLogError(
            f"observation spec must be a non-empty gymnasium Dict space or {{key: (shape, dtype)}}, "
            f"got {type(obs_spec).__name__}"
        )
    spec: ObsSpec = {}
    for key, value in items.items():
        _check_key(key)
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            shape, dtype = value.shape, value.dtype
        else:
            shape, dtype = value
        spec[key] = (tuple(int(d) for d in shape), np.dtype(dtype))
    keys = sorted(spec)
    for a, b in zip(keys, keys[1:]):
        if b.startswith(a + "/"):
            raise EpisodeLogError(
                f"observation keys {a!r} and {b!r} clash (one would be a group and an array); rename one"
            )
    return dict(sorted(spec.items()))


def _check_key(key: Any) -> None:
    parts = key.split("/") if isinstance(key, str) else [""]
    if any(p in ("", ".", "..") or p.startswith("__") for p in parts):
        raise EpisodeLogError(
            f"observation key {key!r} is not a valid store path; use names like 'state' or 'image/front'"
        )


def _spec_to_json(spec: ObsSpec) -> dict[str, dict[str, Any]]:
    return {k: {"shape": list(s), "dtype": d.name} for k, (s, d) in spec.items()}


def _spec_from_json(data: Mapping[str, Any]) -> ObsSpec:
    return {k: (tuple(v["shape"]), np.dtype(v["dtype"])) for k, v in data.items()}


def meta_fields(version: int) -> dict[str, str]:
    """The per-episode meta fields a store of format ``version`` has."""
    return {k: v for k, v in META_FIELDS.items() if FIELDS_SINCE.get(k, 0) <= version}


def meta_shape(name: str) -> tuple[int, ...]:
    """The item shape of meta field ``name`` (``()``: one value per episode)."""
    return META_SHAPES.get(name, ())


def meta_fill(name: str, episodes: int) -> np.ndarray:
    """What ``episodes`` episodes of meta field ``name`` read as in a store without it: its fill value (the
    nominal values, for ``perturbation``)."""
    if name == "perturbation":
        return np.tile(schema.perturbation_row(None), (episodes, 1))
    return np.full((episodes, *meta_shape(name)), META_FILL.get(name, 0), META_FIELDS[name])


def step_fields(version: int) -> dict[str, str]:
    """The per-step fields (``data/<name>``, observations aside) a store of format ``version`` has."""
    return {k: v for k, v in STEP_FIELDS.items() if STEP_FIELDS_SINCE.get(k, 0) <= version}


def step_fill(name: str, dtype: Any) -> np.ndarray:
    """The fill value of step field ``name`` (what a store without it reads as), as a 0-d array."""
    return np.full((), STEP_FILL.get(name, 0), np.dtype(dtype))


def shard_steps(item_bytes: int) -> int:
    """Steps per shard for a large per-step item of ``item_bytes`` bytes."""
    return int(np.clip(SHARD_TARGET_BYTES // item_bytes, 1, MAX_SHARD_STEPS))


def _chunking(
    item_shape: tuple[int, ...],
    dtype: np.dtype,
    rows_per_chunk: int,
    checksum: bool = True,
    per_shard: int | None = None,
) -> dict[str, Any]:
    """Chunk/shard/codec arguments for an array of items of ``item_shape`` along axis 0.

    ``checksum`` appends the crc32c codec after the compressor (format 3 and later; on the inner chunks of a
    shard, whose index carries its own crc32c). ``per_shard`` overrides the steps per shard.
    """
    item_bytes = int(np.prod(item_shape, dtype=np.int64)) * dtype.itemsize
    tail = (Crc32cCodec(),) if checksum else ()
    if item_bytes < LARGE_ITEM_BYTES:
        return {"chunks": (rows_per_chunk, *item_shape), "compressors": (ZstdCodec(level=0, checksum=False), *tail)}
    return {
        "chunks": (1, *item_shape),
        "shards": (per_shard or shard_steps(item_bytes), *item_shape),
        "compressors": (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), *tail),
    }


def _create(group: zarr.Group, name: str, item_shape: tuple[int, ...], dtype: Any, rows: int, fill: float = 0) -> None:
    dtype = np.dtype(dtype)
    group.create_array(
        name,
        shape=(0, *item_shape),
        dtype=dtype,
        fill_value=np.full((), fill, dtype)[()],
        **_chunking(item_shape, dtype, rows),
    )


def _lock_path(path: str) -> str:
    return os.path.abspath(path).rstrip(os.sep) + ".lock"


# ----------------------------------------------------------------------------- chunk files, checksums


def file_rows(arr: zarr.Array) -> int:
    """Rows (along axis 0) per file of ``arr``: its shard length, or its chunk length if not sharded."""
    return int((arr.shards or arr.chunks)[0])


def has_checksums(arr: zarr.Array) -> bool:
    """Whether every (inner) chunk of ``arr`` ends with a crc32c (format 3 and later)."""
    codecs = arr.metadata.codecs
    if codecs and isinstance(codecs[0], ShardingCodec):
        codecs = codecs[0].codecs
    return bool(codecs) and isinstance(codecs[-1], Crc32cCodec)


def chunk_files(arr: zarr.Array, rows: int) -> list[tuple[int, str]]:
    """``(index along axis 0, key relative to the array)`` of every chunk or shard file that holds
    rows ``[0, rows)`` of ``arr``."""
    shape = arr.shards or arr.chunks
    trailing = [range(-(-int(s) // int(c))) for s, c in zip(arr.shape[1:], shape[1:])]
    count = -(-int(rows) // int(shape[0]))
    return [
        (i, arr.metadata.encode_chunk_key((i, *rest))) for i in range(count) for rest in itertools.product(*trailing)
    ]


def array_dir(store_root: str, arr: zarr.Array) -> str:
    return os.path.join(store_root, *arr.path.split("/"))


def missing_chunk_files(store_root: str, arr: zarr.Array, rows: int) -> list[tuple[int, str]]:
    """The chunk files :func:`chunk_files` expects that the array's directory does not hold (one listing)."""
    base = array_dir(store_root, arr)
    listed = set()
    for dirpath, _, names in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        listed.update(prefix + n for n in names)
    return [(i, key) for i, key in chunk_files(arr, rows) if key not in listed]


def _crc_ok(data: np.ndarray) -> bool:
    """Whether ``data`` (uint8) ends with the crc32c of the bytes before it, as zarr's crc32c codec writes it."""
    if len(data) < 4:
        return False
    return np.uint32(google_crc32c.value(data[:-4])).tobytes() == data[-4:].tobytes()


def _shard_index_layout(arr: zarr.Array) -> tuple[tuple[int, ...], str] | None:
    """(inner chunks per shard, index location) when the shard index is little-endian bytes + crc32c."""
    codec = arr.metadata.codecs[0]
    ic = codec.index_codecs
    if not (
        len(ic) == 2
        and isinstance(ic[0], BytesCodec)
        and ic[0].endian is not None
        and ic[0].endian.value == "little"
        and isinstance(ic[1], Crc32cCodec)
    ):
        return None
    per_shard = tuple(int(s) // int(c) for s, c in zip(arr.shards, arr.chunks))
    return per_shard, codec.index_location.value


def verify_chunk_file(
    store_root: str, arr: zarr.Array, index: int, key: str, rows: int
) -> list[tuple[int, int, str, str]]:
    """Check one chunk or shard file of a format-3 (or later) array without decoding it: the crc32c of the chunk,
    or of the shard index and of every inner chunk holding one of the rows ``[0, rows)``.

    Returns ``(row_start, row_stop, kind, detail)`` for each damaged row range (kind ``missing`` or
    ``unreadable``); empty when the file is sound.
    """
    step = file_rows(arr)
    lo, hi = index * step, min(index * step + step, rows)
    try:
        with open(os.path.join(array_dir(store_root, arr), *key.split("/")), "rb") as f:
            data = np.frombuffer(f.read(), np.uint8)
    except FileNotFoundError:
        return [(lo, hi, MISSING, f"chunk file {key} missing")]
    except OSError as err:
        return [(lo, hi, UNREADABLE, f"chunk file {key}: {err.strerror}")]
    if arr.shards is None:
        return [] if _crc_ok(data) else [(lo, hi, UNREADABLE, f"chunk file {key}: checksum mismatch")]
    layout = _shard_index_layout(arr)
    if layout is None:  # not a layout this module writes; decoding will tell
        return []
    per_shard, location = layout
    index_size = 16 * int(np.prod(per_shard)) + 4
    if len(data) < index_size:
        return [(lo, hi, UNREADABLE, f"shard file {key} truncated ({len(data)} bytes)")]
    index_bytes = data[len(data) - index_size :] if location == "end" else data[:index_size]
    if not _crc_ok(index_bytes):
        return [(lo, hi, UNREADABLE, f"shard file {key}: index checksum mismatch")]
    table = np.frombuffer(index_bytes[:-4], "<u8").reshape(*per_shard, 2)
    inner = int(arr.chunks[0])
    bad: list[tuple[int, int, str, str]] = []
    for j in range(per_shard[0]):
        r0 = lo + j * inner
        if r0 >= hi:
            break
        r1 = min(r0 + inner, hi)
        for offset, length in table[j].reshape(-1, 2):
            if offset == _EMPTY:
                problem = (MISSING, f"shard file {key}: inner chunk {j} missing")
            elif int(offset) + int(length) > len(data):
                problem = (UNREADABLE, f"shard file {key}: inner chunk {j} truncated")
            elif not _crc_ok(data[int(offset) : int(offset) + int(length)]):
                problem = (UNREADABLE, f"shard file {key}: inner chunk {j} checksum mismatch")
            else:
                continue
            if bad and bad[-1][1] == r0 and bad[-1][2] == problem[0]:
                bad[-1] = (bad[-1][0], r1, bad[-1][2], bad[-1][3])
            else:
                bad.append((r0, r1, *problem))
            break
    return bad


def read_error_detail(err: BaseException) -> str:
    """A short reason for a chunk that failed to decode."""
    text = str(err)
    if "checksum" in text.lower():
        return "checksum mismatch"
    first = text.splitlines()[0][:80] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


class _CheckedStore(LocalStore):
    """A LocalStore that refuses to read a missing chunk file holding committed rows.

    zarr reads a missing chunk as the fill value; in a format-3 (or later) log every chunk covering committed
    rows exists, so a missing one is damage (deleted after the inventory, or mid-append) and must not
    read, or be rewritten, as zeros. ``required[array path] = [rows per file, committed rows]``.
    """

    def __init__(self, root: str, *, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self.required: dict[str, list[int]] = {}

    def with_read_only(self, read_only: bool = False) -> _CheckedStore:
        other = type(self)(str(self.root), read_only=read_only)
        other.required = self.required
        return other

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        value = await super().get(key, prototype, byte_range)
        # an empty file is never a valid chunk (it ends with a checksum); zarr would read a shard as fill
        if value is None or (byte_range is None and len(value) == 0):
            array, sep, rest = key.rpartition("/c/")
            need = self.required.get(array) if sep else None
            if need is not None:
                try:
                    index = int(rest.split("/")[0])
                except ValueError:
                    index = -1
                if 0 <= index and index * need[0] < need[1]:
                    what = "missing" if value is None else "empty"
                    raise _corrupt(str(self.root), f"{array} chunk c/{rest} {what}")
        return value


# -------------------------------------------------------------------------------------- raw writes


async def _write_rows(arr: zarr.Array, start: int, values: np.ndarray) -> None:
    """Write ``values`` at rows ``[start, start+len)`` without changing the array's on-disk shape."""
    stop = start + len(values)
    target = arr.async_array
    if stop > arr.shape[0]:
        meta = arr.metadata.update_shape((stop, *arr.shape[1:]))
        target = zarr.AsyncArray(metadata=meta, store_path=arr.store_path, config=target.config)
    await target.setitem(slice(start, stop), values)


async def _write_chunks(arr: zarr.Array, first: int, values: np.ndarray) -> None:
    """Write ``values`` at rows ``[first, first+len)`` of an unsharded array whose chunks span its item
    dimensions, ``first`` being a chunk boundary: whole chunks (the last padded with the fill value, as
    zarr does), encoded with the array's own codecs and stored through zarr's store (temp file, then
    replace). Unlike a zarr ``setitem`` it neither reads the chunk first nor skips all-fill chunks."""
    meta = arr.metadata
    rows = int(meta.chunk_grid.chunk_shape[0])
    prototype = default_buffer_prototype()
    spec = meta.get_chunk_spec((0,) * arr.ndim, arr.async_array.config, prototype)
    chunks, keys = [], []
    for start in range(first, first + len(values), rows):
        block = values[start - first : start - first + rows]
        if len(block) < rows:
            padded = np.full((rows, *block.shape[1:]), meta.fill_value, block.dtype)
            padded[: len(block)] = block
            block = padded
        chunks.append((prototype.nd_buffer.from_numpy_array(np.ascontiguousarray(block)), spec))
        keys.append(meta.encode_chunk_key((start // rows,) + (0,) * (arr.ndim - 1)))
    encoded = await arr.async_array.codec_pipeline.encode(chunks)
    await asyncio.gather(*((arr.store_path / key).set(data) for key, data in zip(keys, encoded)))


async def _set_length(arr: zarr.Array, length: int) -> None:
    """Rewrite the array's ``zarr.json`` with a new axis-0 length (one atomic file replace)."""
    if arr.shape[0] != length:
        await arr.async_array.resize((length, *arr.shape[1:]))


async def _gather(coros: Iterable[Any]) -> None:
    """Await all; then raise the first failure (every write has finished or failed by then)."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _run(*coros: Any) -> None:
    """Run zarr coroutines concurrently on zarr's own event loop and wait for all of them."""
    zarr_sync(_gather(coros))


def _write_error(path: str, err: OSError, doing: str = "writing") -> EpisodeLogError:
    where = os.path.dirname(os.path.abspath(path))
    outcome = "committed episodes are intact" if doing == "writing" else "no store was created"
    if err.errno in _DISK_FULL:
        try:
            free = f"{shutil.disk_usage(where).free / 2**20:.1f}"
        except OSError:
            free = "?"
        why = {
            errno.EFBIG: "file size limit (ulimit -f) reached; ",
            getattr(errno, "EDQUOT", -1): "disk quota exceeded; ",
        }.get(err.errno, "")
        return EpisodeLogError(
            f"disk full {doing} episode log {path} ({why}{free} MB free on {where}): free space and rerun to resume; "
            f"{outcome}"
        )
    return EpisodeLogError(
        f"{doing} episode log {path} failed ({err.strerror or err}: {err.filename or where}): fix that and rerun "
        f"to resume; {outcome}"
    )


def _remove_partials(path: str) -> None:
    """Delete zarr's ``*.partial`` temp files under ``path`` (the writer holds the lock: all are leftovers)."""
    for dirpath, _, filenames in os.walk(path):
        for fname in filenames:
            if fname.endswith(".partial"):
                try:
                    os.unlink(os.path.join(dirpath, fname))
                except FileNotFoundError:
                    pass


# ------------------------------------------------------------------------------------------- writer


class EpisodeLogWriter:
    """Appends finished episodes to a zarr episode log; the only process writing that store."""

    def __init__(
        self,
        path: str | os.PathLike,
        obs_spec: Any,
        action_dim: Any,
        config: dict | None = None,
        action_low: Iterable[float] | None = None,
        action_high: Iterable[float] | None = None,
    ) -> None:
        """Open or create the store at ``path``.

        ``obs_spec``: a ``gymnasium.spaces.Dict`` or ``{key: (shape, dtype)}``. ``action_dim``: an int
        or a gymnasium ``Box`` (its bounds are then used). ``config``: the run's resolved config
        (JSON-able), saved at creation. Re-opening validates the whole store (it refuses a damaged or
        format-2 store and leaves it untouched), checks that the specs match and drops leftovers.
        """
        self.path = os.fspath(path)
        self.obs_spec = parse_obs_spec(obs_spec)
        if hasattr(action_dim, "shape"):  # a Box
            action_low = action_dim.low if action_low is None else action_low
            action_high = action_dim.high if action_high is None else action_high
            action_dim = int(np.prod(action_dim.shape))
        self.action_dim = int(action_dim)
        low = np.broadcast_to(np.asarray(-1.0 if action_low is None else action_low, np.float64), (self.action_dim,))
        high = np.broadcast_to(np.asarray(1.0 if action_high is None else action_high, np.float64), (self.action_dim,))
        self.action_spec = {
            "shape": [self.action_dim],
            "dtype": "float32",
            "low": [float(x) for x in low],
            "high": [float(x) for x in high],
        }
        self._lock_file = None
        self._acquire_lock()
        try:
            if not os.path.exists(self.path):
                self._create_store(config or {})
            self._open_store()
        except BaseException:
            self._release_lock()
            raise
        self._buffer: list[Transition] = []
        self._closed = False

    # -- setup

    def _acquire_lock(self) -> None:
        if fcntl is None:
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._lock_file = open(_lock_path(self.path), "a+")
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise EpisodeLogError(
                f"episode log {self.path} is already open by another writer; stop that process or use "
                f"another run directory"
            ) from None

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _create_store(self, config: dict) -> None:
        try:
            config = json.loads(json.dumps(config))
        except (TypeError, ValueError) as e:
            raise EpisodeLogError(
                f"config for episode log {self.path} is not JSON-serialisable ({e}); pass a resolved plain "
                f"dict (OmegaConf.to_container(cfg, resolve=True))"
            ) from None
        # The metadata is built in memory and written here synchronously: zarr writes a group's keys
        # concurrently, and one that fails (a full disk) leaves its siblings in flight, which would
        # recreate files after the clean-up below removed the temp store.
        keys: dict[str, Any] = {}
        root = zarr.open_group(zarr.storage.MemoryStore(keys), mode="w", zarr_format=3)
        data = root.create_group("data")
        meta = root.create_group("meta")
        for name, dtype in STEP_FIELDS.items():
            shape = (self.action_dim,) if name in ("action", "policy_action") else ()
            _create(data, name, shape, dtype, STEP_CHUNK, STEP_FILL.get(name, 0))
        for key, (shape, dtype) in self.obs_spec.items():
            _create(data, f"observation/{key}", shape, dtype, STEP_CHUNK)
            _create(meta, f"last_observation/{key}", shape, dtype, EPISODE_CHUNK)
        for name, dtype in META_FIELDS.items():
            _create(meta, name, meta_shape(name), dtype, EPISODE_CHUNK, META_FILL.get(name, 0))
        meta["perturbation"].attrs["keys"] = list(schema.PERTURBATION_FIELDS)
        _create(meta, "episode_ends", (), "int64", EPISODE_CHUNK)
        root.attrs.update(
            {
                "format": {"name": FORMAT_NAME, "version": FORMAT_VERSION},
                "config": config,
                "obs_spec": _spec_to_json(self.obs_spec),
                "action_spec": self.action_spec,
                "layout": LAYOUT_DESCRIPTION,
            }
        )
        tmp = f"{self.path}.creating-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for key, buffer in keys.items():
                file = os.path.join(tmp, key)
                os.makedirs(os.path.dirname(file), exist_ok=True)
                with open(file, "wb") as f:
                    f.write(buffer.to_bytes())
            os.rename(tmp, self.path)  # the store appears complete or not at all
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _write_error(self.path, err, "creating") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _open_store(self) -> None:
        # Validate everything before modifying anything: a damaged store must stay byte-identical.
        log = EpisodeLog(self.path)  # format, chunk inventory, index consistency, array lengths
        if log.format_version < FORMAT_VERSION:
            lacks = " and ".join(what for v, what in FORMAT_ADDED.items() if v > log.format_version)
            raise EpisodeLogError(
                f"episode log {self.path} has format {log.format_version} (written by an older robot_rl, without "
                f"{lacks}), which this robot_rl reads but does not append to: convert it with "
                f"`robot-rl salvage-log {self.path} out=<new store>` and use the new store"
            )
        if log.obs_spec != self.obs_spec:
            raise EpisodeLogError(
                f"episode log {self.path} was written with observations {format_obs_spec(log.obs_spec)} but this run "
                f"has {format_obs_spec(self.obs_spec)}; use a new run directory or the task config it was recorded with"
            )
        for field in ("shape", "low", "high"):
            if list(log.action_spec[field]) != self.action_spec[field]:
                raise EpisodeLogError(
                    f"episode log {self.path} was written with action {field} {log.action_spec[field]} but this "
                    f"run has {self.action_spec[field]}; use a new run directory or the matching task config"
                )
        log.episode_meta()  # every meta array in full (checksums), meta/length against episode_ends
        log.verify_checksums()  # every committed chunk's checksum, without decoding
        tails = log.read_tails()  # decode the chunks holding the last committed rows: an append rewrites them
        self._num_episodes, self._num_steps = log.num_episodes, log.num_steps

        # The store is sound: open it for writing. Every handle writes empty chunks too.
        store, root = _open_root(self.path, read_only=False)
        self._store, self._root = store, root
        config = {"write_empty_chunks": True}
        self._data = {n: _get_array(self.path, root, f"data/{n}").with_config(config) for n in STEP_FIELDS}
        for key in self.obs_spec:
            self._data[f"observation/{key}"] = _get_array(self.path, root, f"data/observation/{key}").with_config(
                config
            )
        self._meta = {n: _get_array(self.path, root, f"meta/{n}").with_config(config) for n in META_FIELDS}
        for key in self.obs_spec:
            self._meta[f"last_observation/{key}"] = _get_array(
                self.path, root, f"meta/last_observation/{key}"
            ).with_config(config)
        self._ends = _get_array(self.path, root, "meta/episode_ends").with_config(config)
        # Committed rows of each unsharded array's last, partly filled chunk, kept in memory: an append
        # then writes whole chunks (no read-modify-write of the chunk on disk). Shards are appended to
        # by zarr, which keeps their encoded inner chunks.
        self._tails = {
            arr.path: tails[arr.path]
            for arr in self._handles()
            if arr.shards is None and tuple(arr.chunks[1:]) == tuple(arr.shape[1:])
        }
        self._require_committed()
        self._truncate_leftovers()

    def _handles(self) -> list[zarr.Array]:
        return [*self._data.values(), *self._meta.values(), self._ends]

    def _require_committed(self) -> None:
        """Tell the store which chunks hold committed rows (reading one that is missing then fails)."""
        for arr in self._handles():
            rows = self._num_episodes if arr.path.startswith("meta/") else self._num_steps
            self._store.required[arr.path] = [file_rows(arr), rows]

    def _truncate_leftovers(self) -> None:
        """Drop rows a crashed writer left past the last committed episode, and its temp files."""
        try:
            _run(
                *(_set_length(arr, self._num_steps) for arr in self._data.values()),
                *(_set_length(arr, self._num_episodes) for arr in (*self._meta.values(), self._ends)),
            )
            _remove_partials(self.path)
        except OSError as err:
            _remove_partials(self.path)
            raise _write_error(self.path, err) from None

    # -- public API

    @property
    def num_episodes(self) -> int:
        """Committed episodes in the store."""
        return self._num_episodes

    @property
    def num_steps(self) -> int:
        """Committed steps in the store."""
        return self._num_steps

    @property
    def pending_steps(self) -> int:
        """Steps of the episode in progress (in memory, not yet on disk)."""
        return len(self._buffer)

    def add(self, transition: Transition) -> None:
        """Buffer one step of the episode in progress (validated against the specs)."""
        self._check_open()
        for obs_name in ("observation", "next_observation"):
            obs = getattr(transition, obs_name)
            if set(obs) != set(self.obs_spec):
                raise EpisodeLogError(
                    f"transition {obs_name} keys {sorted(obs)} do not match episode log {self.path} keys "
                    f"{sorted(self.obs_spec)}; log the env's full observation dict"
                )
            for key, (shape, _) in self.obs_spec.items():
                if np.shape(obs[key]) != shape:
                    raise EpisodeLogError(
                        f"transition {obs_name}[{key!r}] has shape {np.shape(obs[key])}, episode log "
                        f"{self.path} expects {shape}; check the env's observation space"
                    )
        for name in ("action", "policy_action"):
            value = getattr(transition, name)
            if value is not None and np.shape(value) != (self.action_dim,):
                raise EpisodeLogError(
                    f"transition {name} has shape {np.shape(value)}, episode log {self.path} expects "
                    f"({self.action_dim},); check the env's action space"
                )
        self._buffer.append(transition)

    def discard_episode(self) -> None:
        """Drop the buffered steps of the episode in progress."""
        self._buffer = []

    def end_episode(
        self,
        source: EpisodeSource,
        success: bool | None = None,
        reset_s: float = 0.0,
        episode_s: float | None = None,
        eval_step: int = -1,
    ) -> int:
        """Append the buffered episode to disk and commit it; returns its index.

        ``success`` defaults to whether any step reported success; the label is the last one a step
        carries; ``reset_s`` is the reset that preceded the episode; ``episode_s`` defaults to the span
        of the step timestamps; ``eval_step``: for an evaluation run by a training run, the online env-step
        count it evaluates (-1 otherwise). ``meta/perturbation`` is the first step's ``perturbation`` (the values the
        sim was perturbed by; nominal when None). A full disk raises ``EpisodeLogError`` and keeps the episode
        buffered (nothing is committed; freeing space and calling ``end_episode`` again commits it).
        """
        self._check_open()
        if not self._buffer:
            raise EpisodeLogError(f"end_episode on {self.path} with no steps; call add() first or discard_episode()")
        steps = self._buffer
        n = len(steps)
        rows: dict[str, np.ndarray] = {
            "action": np.stack([np.asarray(t.action, np.float32) for t in steps]),
            "policy_action": np.stack(
                [np.asarray(t.action if t.policy_action is None else t.policy_action, np.float32) for t in steps]
            ),
            "reward": np.array([t.reward for t in steps], np.float32),
            "terminated": np.array([t.terminated for t in steps], bool),
            "truncated": np.array([t.truncated for t in steps], bool),
            "intervention": np.array([t.intervention for t in steps], bool),
            "episode_id": np.array([t.episode_id for t in steps], np.int64),
            "step": np.arange(n, dtype=np.int32),
            "timestamp": np.array([t.timestamp for t in steps], np.float64),
            "success": np.array([t.success for t in steps], bool),
            "reward_source": np.array([int(RewardSource(t.reward_source)) for t in steps], np.uint8),
            "grasp_penalty": np.array([t.grasp_penalty for t in steps], np.float32),
            "success_probability": np.array([t.success_probability for t in steps], np.float32),
            "frame_age_s": np.array([t.frame_age_s for t in steps], np.float32),
            "safety": np.array([t.safety for t in steps], np.uint16),
        }
        for key, (_, dtype) in self.obs_spec.items():
            rows[f"observation/{key}"] = np.stack([np.asarray(t.observation[key], dtype) for t in steps])
        meta_row: dict[str, np.ndarray] = {
            "source": np.array([int(EpisodeSource(source))], np.uint8),
            "success": np.array([bool(rows["success"].any()) if success is None else bool(success)]),
            "length": np.array([n], np.int32),
            "intervention_steps": np.array([int(rows["intervention"].sum())], np.int32),
            "episode_return": np.array([float(rows["reward"].astype(np.float64).sum())], np.float32),
            "episode_id": np.array([steps[0].episode_id], np.int64),
            "interventions": np.array([count_takeovers(rows["intervention"])], np.int32),
            "label": np.array([next((int(t.label) for t in reversed(steps) if t.label), 0)], np.uint8),
            "reset_s": np.array([reset_s], np.float32),
            "episode_s": np.array(
                [rows["timestamp"][-1] - rows["timestamp"][0] if episode_s is None else episode_s], np.float32
            ),
            "eval_step": np.array([eval_step], np.int64),
            "safety_steps": np.array([np.count_nonzero(rows["safety"])], np.int32),
            "perturbation": schema.perturbation_row(steps[0].perturbation)[None],
        }
        for key, (_, dtype) in self.obs_spec.items():
            meta_row[f"last_observation/{key}"] = np.asarray(steps[-1].next_observation[key], dtype)[None]

        index = self._commit(rows, meta_row)
        self._buffer = []
        return index

    def copy_episodes(self, log: EpisodeLog, sources: Iterable[EpisodeSource] | None = None, skip: int = 0) -> int:
        """Append the committed episodes of another log (e.g. a demo store) whose source is in
        ``sources`` (all if None), keeping their source and meta; returns how many were copied.

        ``skip``: leave out the first ``skip`` matching episodes (to resume an interrupted copy, pass how
        many of them this log already has). Episode ids become indices in this log.
        """
        self._check_open()
        if log.obs_spec != self.obs_spec:
            raise EpisodeLogError(
                f"episode log {log.path} has observations {format_obs_spec(log.obs_spec)} but {self.path} has "
                f"{format_obs_spec(self.obs_spec)}; record demos with the same task config"
            )
        meta = log.episode_meta()
        wanted = None if sources is None else {int(EpisodeSource(x)) for x in sources}
        matched = copied = 0
        for i in range(log.num_episodes):
            if wanted is not None and int(meta["source"][i]) not in wanted:
                continue
            matched += 1
            if matched <= skip:
                continue
            episode = log.episode(i)
            rows = {name: episode[name] for name in self._data}
            meta_row = {name: meta[name][i : i + 1] for name in META_FIELDS}
            for key in self.obs_spec:
                meta_row[f"last_observation/{key}"] = episode[f"next_observation/{key}"][-1:]
            self._append_copy(rows, meta_row)
            copied += 1
        return copied

    def _append_copy(self, rows: dict[str, np.ndarray], meta_row: dict[str, np.ndarray]) -> int:
        """Commit an episode copied from another log, its episode id becoming its index here."""
        rows = dict(rows, episode_id=np.full(len(rows["reward"]), self._num_episodes, np.int64))
        meta_row = dict(meta_row, episode_id=np.array([self._num_episodes], np.int64))
        return self._commit(rows, meta_row)

    def _commit(self, rows: dict[str, np.ndarray], meta_row: dict[str, np.ndarray]) -> int:
        """Append one episode's step rows and meta row with the crash-safe ordering; returns its index.

        On a write error nothing is committed and the counters stay at the last commit (rows written
        past it are leftovers, overwritten by the next commit or dropped when the store is reopened).
        """
        if set(rows) != set(self._data) or set(meta_row) != set(self._meta):
            raise ValueError(f"an episode needs rows for {sorted(self._data)} and a meta row for {sorted(self._meta)}")
        n = len(rows["reward"])
        start, index = self._num_steps, self._num_episodes
        tails: dict[str, np.ndarray] = {}

        def write(arr: zarr.Array, at: int, values: np.ndarray) -> Any:
            values = np.asarray(values, arr.dtype)
            tail = self._tails.get(arr.path)
            if tail is None:  # a sharded array
                return _write_rows(arr, at, values)
            rows_per_chunk = file_rows(arr)
            first, stop = at - len(tail), at + len(values)
            values = np.concatenate([tail, values]) if len(tail) else values
            tails[arr.path] = values[stop // rows_per_chunk * rows_per_chunk - first :].copy()
            return _write_chunks(arr, first, values)

        try:
            # 1. chunk bytes only: nothing new is visible to readers yet
            _run(
                *(write(self._data[name], start, values) for name, values in rows.items()),
                *(write(self._meta[name], index, values) for name, values in meta_row.items()),
                write(self._ends, index, np.array([start + n], np.int64)),
            )
            # 2. make the rows visible (shapes grow); still not committed
            _run(
                *(_set_length(arr, start + n) for arr in self._data.values()),
                *(_set_length(arr, index + 1) for arr in self._meta.values()),
            )
            # 3. commit: one atomic zarr.json replace, strictly after everything above has landed
            _run(_set_length(self._ends, index + 1))
        except OSError as err:
            _remove_partials(self.path)  # zarr removes its temp file on error; be sure
            raise _write_error(self.path, err) from None
        self._num_steps, self._num_episodes = start + n, index + 1
        self._tails.update(tails)
        self._require_committed()
        return index

    def close(self) -> None:
        """Release the store; an unfinished episode is dropped (it was never committed)."""
        if not self._closed:
            self._buffer = []
            self._closed = True
            self._release_lock()

    def _check_open(self) -> None:
        if self._closed:
            raise EpisodeLogError(f"episode log writer for {self.path} is closed; open a new EpisodeLogWriter")

    def __enter__(self) -> EpisodeLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- reader


def format_obs_spec(spec: ObsSpec) -> str:
    """`{key: shape dtype, ...}` for error messages."""
    return "{" + ", ".join(f"{k}: {s} {d.name}" for k, (s, d) in spec.items()) + "}"


def spec_difference(log: EpisodeLog, observation_space: Any, action_dim: int) -> str | None:
    """None when `log`'s episodes have this observation spec and action size; else what differs, for a one-line
    error: "observations {...} and N-dim actions, not {...} and M-dim actions" (the log's first)."""
    theirs, mine = log.obs_spec, parse_obs_spec(observation_space)
    their_actions = int(list(log.action_spec["shape"])[0])
    if theirs == mine and their_actions == int(action_dim):
        return None
    return (
        f"observations {format_obs_spec(theirs)} and {their_actions}-dim actions, not {format_obs_spec(mine)} "
        f"and {int(action_dim)}-dim actions"
    )


def looks_like_log(path: str) -> bool:
    """Whether ``path`` has an episode log's directories (used when its root ``zarr.json`` is unreadable)."""
    return os.path.isfile(os.path.join(path, "meta", "episode_ends", "zarr.json")) or (
        os.path.isdir(os.path.join(path, "data")) and os.path.isdir(os.path.join(path, "meta"))
    )


def _open_root(path: str, read_only: bool) -> tuple[_CheckedStore, zarr.Group]:
    if not os.path.exists(path):
        raise EpisodeLogError(f"no episode log at {path}; check the run directory (it should contain {STORE_NAME})")
    store = _CheckedStore(path, read_only=read_only)
    try:
        return store, zarr.open_group(store=store, mode="r" if read_only else "r+", zarr_format=3)
    except Exception as e:  # zarr raises many kinds; the user needs one line
        if os.path.isdir(path) and looks_like_log(path):
            raise _corrupt(path, "root zarr.json missing or unreadable") from None
        raise EpisodeLogError(
            f"{path} is not a zarr v3 episode log ({type(e).__name__}); point at <run_dir>/{STORE_NAME}"
        ) from None


def _check_format(path: str, root: zarr.Group) -> int:
    """The store's format version (raises unless this robot_rl reads it)."""
    fmt = root.attrs.get("format")
    if not isinstance(fmt, Mapping) or fmt.get("name") != FORMAT_NAME:
        if looks_like_log(path):
            raise _corrupt(path, "root attribute 'format' missing")
        raise EpisodeLogError(
            f"{path} is a zarr store but not a robot_rl episode log (no format attribute); point at "
            f"<run_dir>/{STORE_NAME}"
        )
    try:
        version = int(fmt.get("version", 0))
    except (TypeError, ValueError):
        raise _corrupt(path, f"format version {fmt.get('version')!r}") from None
    if version < OLDEST_READABLE_VERSION:
        raise EpisodeLogError(
            f"episode log {path} has format version {version}, older than this robot_rl reads "
            f"({OLDEST_READABLE_VERSION}: adds labels and intervention counts); re-record it or start a new "
            "run directory"
        )
    if version > FORMAT_VERSION:
        raise EpisodeLogError(
            f"episode log {path} has format version {version}, newer than this robot_rl reads "
            f"({FORMAT_VERSION}); upgrade robot_rl"
        )
    for attr in ("obs_spec", "action_spec"):
        if attr not in root.attrs:
            raise _corrupt(path, f"root attribute {attr!r} missing")
    return version


def _get_array(path: str, root: zarr.Group, name: str) -> zarr.Array:
    try:
        arr = root[name]
    except Exception:
        raise _corrupt(path, f"array {name} missing or unreadable") from None
    if not isinstance(arr, zarr.Array):
        raise _corrupt(path, f"{name} is not an array")
    return arr


class EpisodeLog:
    """Read-only view of the committed episodes of an episode log (a snapshot; see ``refresh``).

    Opening a format-3 (or later) store takes a chunk inventory: a missing chunk file, an index that is not
    strictly increasing or an array shorter than the committed rows raises ``EpisodeLogError``. A chunk
    that fails its checksum raises ``EpisodeLogError`` when ``episode``, ``transitions``,
    ``episode_meta`` or ``read`` reach it. Format-2 stores (no checksums) are read as they are. A step
    field newer than the store's format (``frame_age_s`` of a format-2 or 3 store, ``safety`` of a format-2 to 4
    store) reads as its fill value (NaN, 0) everywhere: ``read``, ``episode``, ``transitions``, ``array``; a
    meta field newer than it (``eval_step``, ``safety_steps``, ``perturbation``) as its fill value (-1, 0, the
    nominal values) in ``episode_meta`` and ``read``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        """Open the store at ``path``; raises ``EpisodeLogError`` if it is missing, damaged or corrupt."""
        self.path = os.fspath(path)
        self._store, self._root = _open_root(self.path, read_only=True)
        self.format_version: int = _check_format(self.path, self._root)
        try:
            self.obs_spec: ObsSpec = _spec_from_json(self._root.attrs["obs_spec"])
            self.action_spec: dict[str, Any] = dict(self._root.attrs["action_spec"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _corrupt(self.path, "root attributes obs_spec/action_spec unreadable") from None
        self.config: dict[str, Any] = dict(self._root.attrs.get("config", {}))
        self._ends = np.zeros(0, np.int64)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the commit record to see episodes appended since opening (and take the inventory again)."""
        checked = self.format_version >= CHECKSUMS_SINCE
        ends_arr = _get_array(self.path, self._root, "meta/episode_ends")
        count = ends_arr.shape[0]
        if checked:
            self._take_inventory("meta/episode_ends", ends_arr, count)
        ends = np.asarray(self._read_array("meta/episode_ends", ends_arr, slice(0, count)), np.int64)
        if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            raise _corrupt(self.path, "meta/episode_ends is not strictly increasing")
        steps = int(ends[-1]) if len(ends) else 0
        present = step_fields(self.format_version)
        names = [f"data/{n}" for n in present] + [f"data/observation/{k}" for k in self.obs_spec]
        arrays: dict[str, zarr.Array] = {}
        for name in names:  # opened after episode_ends, so at least as long as it says
            arr = _get_array(self.path, self._root, name)
            if arr.shape[0] < steps:
                raise _corrupt(self.path, f"{name} has {arr.shape[0]} steps < committed {steps}")
            arrays[name[len("data/") :]] = arr
        meta_names = list(meta_fields(self.format_version)) + [f"last_observation/{k}" for k in self.obs_spec]
        for name in meta_names:
            arr = _get_array(self.path, self._root, f"meta/{name}")
            if arr.shape[0] < len(ends):
                raise _corrupt(self.path, f"meta/{name} has {arr.shape[0]} rows < committed {len(ends)}")
            arrays[f"meta/{name}"] = arr
        if checked:
            for name, arr in arrays.items():
                self._take_inventory(self._store_name(name), arr, len(ends) if name.startswith("meta/") else steps)
        self._ends_arr = ends_arr
        # step fields newer than the store: {name: dtype}, read as their fill value
        self._absent = {n: np.dtype(d) for n, d in STEP_FIELDS.items() if n not in present}
        # meta fields newer than the store: {"meta/<name>": dtype}, read as their fill value
        known = meta_fields(self.format_version)
        self._absent_meta = {f"meta/{n}": np.dtype(d) for n, d in META_FIELDS.items() if n not in known}
        self._ends = ends
        self._starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        self._arrays = arrays

    def _take_inventory(self, name: str, arr: zarr.Array, rows: int) -> None:
        missing = missing_chunk_files(self.path, arr, rows)
        if missing:
            more = f", {len(missing)} chunk files missing in all" if len(missing) > 1 else ""
            raise _corrupt(self.path, f"{name} chunk {missing[0][1]} missing{more}")
        self._store.required[arr.path] = [file_rows(arr), rows]

    @staticmethod
    def _store_name(name: str) -> str:
        return name if name.startswith("meta/") else f"data/{name}"

    def _rows_of(self, name: str) -> int:
        return self.num_episodes if name.startswith("meta/") else self.num_steps

    # -- checked reads

    def _read_array(self, name: str, arr: zarr.Array, rows: Any) -> np.ndarray:
        """``arr[rows]`` (a slice, an int or an array of row indices), with a damaged chunk as one line."""
        try:
            if isinstance(rows, (slice, int, np.integer)):
                return arr[rows]
            return arr.get_orthogonal_selection((np.asarray(rows),) + (slice(None),) * (arr.ndim - 1))
        except EpisodeLogError:
            raise
        except Exception as err:  # crc mismatch, truncated file, bad compression: zarr/numcodecs errors
            raise _corrupt(self.path, self._locate(name, arr, rows, err)) from None

    def _locate(self, name: str, arr: zarr.Array, rows: Any, err: BaseException) -> str:
        """Name the chunk that failed (re-reads the requested rows file by file)."""
        if isinstance(rows, slice):
            wanted = np.arange(*rows.indices(arr.shape[0]))
        else:
            wanted = np.unique(np.atleast_1d(np.asarray(rows, np.int64)) % max(arr.shape[0], 1))
        per_file = file_rows(arr)
        for index in np.unique(wanted // per_file):
            in_file = wanted[wanted // per_file == index]
            try:
                arr[int(in_file.min()) : int(in_file.max()) + 1]
                continue
            except Exception as e:  # noqa: BLE001 - we are looking for the failing chunk
                detail = read_error_detail(e)
            key = arr.metadata.encode_chunk_key((int(index),) + (0,) * (arr.ndim - 1))
            where = ""
            if arr.shards is not None:
                for row in in_file:
                    try:
                        arr[int(row)]
                    except Exception:  # noqa: BLE001
                        where = f" row {int(row)}"
                        break
            return f"{name} chunk {key}{where} unreadable: {detail}"
        return f"{name} rows unreadable: {read_error_detail(err)}"

    def read(self, name: str, rows: Any = slice(None)) -> np.ndarray:
        """Checked read of committed rows of ``data/<name>`` (a step field such as ``observation/state``)
        or ``meta/<field>``; ``rows``: a slice, an int or row indices (relative to the committed rows)."""
        if name not in self._arrays and name not in self._absent and name not in self._absent_meta:
            raise EpisodeLogError(
                f"episode log {self.path} has no array {name!r}; choose from {[*self._arrays, *self._absent]}"
            )
        limit = self._rows_of(name)
        if isinstance(rows, slice):
            rows = slice(*rows.indices(limit))
        elif isinstance(rows, (int, np.integer)):
            if not -limit <= rows < limit:
                raise IndexError(f"row {rows} out of range: {name} has {limit} committed rows")
            rows = int(rows) % limit
        else:
            rows = np.asarray(rows, np.int64)
            if len(rows) and (rows.min() < 0 or rows.max() >= limit):
                raise IndexError(f"rows out of range: {name} has {limit} committed rows")
        if name in self._absent_meta:  # a meta field newer than the store's format
            fill = meta_fill(name[len("meta/") :], 1)[0]
            if isinstance(rows, int):
                return fill[()] if fill.ndim == 0 else fill
            count = len(range(limit)[rows]) if isinstance(rows, slice) else len(rows)
            return np.broadcast_to(fill, (count, *fill.shape)).copy()
        if name in self._absent:  # a step field newer than the store's format
            fill = step_fill(name, self._absent[name])
            if isinstance(rows, int):
                return fill[()]
            return np.full(len(range(limit)[rows]) if isinstance(rows, slice) else len(rows), fill)
        values = self._read_array(self._store_name(name), self._arrays[name], rows)
        if name == "meta/perturbation":
            values = self._perturbation_columns(values)
        return values

    def _perturbation_columns(self, values: np.ndarray) -> np.ndarray:
        """``meta/perturbation`` rows in this robot_rl's columns (schema.PERTURBATION_FIELDS), mapped by the names
        the store recorded: a column it lacks reads as the nominal value, one this robot_rl does not know is
        dropped."""
        keys = self._arrays["meta/perturbation"].attrs.get("keys")
        known = list(schema.PERTURBATION_FIELDS)
        if keys == known:
            return values
        if not isinstance(keys, list) or len(keys) != values.shape[-1]:
            raise _corrupt(self.path, "meta/perturbation attribute 'keys' missing or not one name per column")
        out = np.broadcast_to(schema.perturbation_row(None), values.shape).copy()
        for j, key in enumerate(keys):
            if key in known:
                out[..., known.index(key)] = values[..., j]
        return out

    def verify_checksums(self) -> None:
        """Check the crc32c of every chunk (every inner chunk and index of a shard) holding committed rows,
        without decoding; raises ``EpisodeLogError`` naming the first damaged one. Format 3 and later."""
        if self.format_version < CHECKSUMS_SINCE:
            return
        for name, arr, rows in self._all_arrays():
            if not has_checksums(arr):
                raise _corrupt(self.path, f"{name} has no checksum codec")
            for index, key in chunk_files(arr, rows):
                bad = verify_chunk_file(self.path, arr, index, key, rows)
                if bad:
                    start, stop, _, detail = bad[0]
                    raise _corrupt(self.path, f"{name} rows {start}-{stop - 1}: {detail}")

    def _all_arrays(self) -> list[tuple[str, zarr.Array, int]]:
        """(store name, array, committed rows) of every array, the commit record first."""
        out = [("meta/episode_ends", self._ends_arr, self.num_episodes)]
        return out + [(self._store_name(n), a, self._rows_of(n)) for n, a in self._arrays.items()]

    def read_tails(self) -> dict[str, np.ndarray]:
        """Decode what an append rewrites: the chunk holding the last committed row of every unsharded
        array, and the last committed row of every sharded one (an append to a shard keeps its other
        inner chunks as they are; ``verify_checksums`` checks those). Returns ``{array path: the committed
        rows of the chunk an append continues}`` for the unsharded arrays (empty when the committed rows
        fill their last chunk)."""
        tails = {}
        for name, arr, rows in self._all_arrays():
            if arr.shards is not None:
                self._read_array(name, arr, slice(max(rows - 1, 0), rows))
                continue
            per_file = file_rows(arr)
            last = self._read_array(name, arr, slice(max(rows - 1, 0) // per_file * per_file, rows))
            tails[arr.path] = last[len(last) - rows % per_file :] if rows % per_file else last[:0]
        return tails

    # -- the public view

    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return len(self._ends)

    @property
    def num_steps(self) -> int:
        """Committed steps."""
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        """Exclusive end index of each committed episode."""
        return self._ends.copy()

    def array(self, name: str) -> zarr.Array:
        """The lazy zarr array ``data/<name>`` (e.g. ``observation/image/front``) for frame-level reads.

        Rows past ``num_steps`` are uncommitted; do not use them. A chunk file missing since the store
        was opened raises ``EpisodeLogError``, but a checksum mismatch raises zarr's own error: ``read``
        turns it into a one-line ``EpisodeLogError``.
        """
        if name in self._absent:  # a field newer than the store's format: its fill value, from memory
            dtype = self._absent[name]
            return zarr.create_array(
                store=zarr.storage.MemoryStore(),
                shape=(self.num_steps,),
                dtype=dtype,
                chunks=(STEP_CHUNK,),
                fill_value=step_fill(name, dtype)[()],
            )
        if name not in self._arrays or name.startswith("meta/"):
            raise EpisodeLogError(f"episode log {self.path} has no step array {name!r}; choose from {self.step_fields}")
        return self._arrays[name]

    @property
    def step_fields(self) -> list[str]:
        """Names of the per-step arrays (``data/`` relative), those the store's format predates included."""
        return [n for n in self._arrays if not n.startswith("meta/")] + list(self._absent)

    def episode_meta(self) -> dict[str, np.ndarray]:
        """Per-episode arrays: ``episode_ends``, ``source``, ``success``, ``length``, ... (length E).

        ``eval_step`` is -1 throughout for a format-2 store. Checks ``length`` against the commit record.
        """
        e = self.num_episodes
        out = {}
        for name in META_FIELDS:
            if f"meta/{name}" in self._arrays:
                out[name] = self.read(f"meta/{name}", slice(0, e))
            else:  # a field newer than the store's format
                out[name] = meta_fill(name, e)
        lengths = np.diff(np.concatenate([[0], self._ends]))
        bad = np.flatnonzero(out["length"] != lengths)
        if len(bad):
            i = int(bad[0])
            raise _corrupt(
                self.path, f"meta/length[{i}] is {int(out['length'][i])} but meta/episode_ends says {int(lengths[i])}"
            )
        out["episode_ends"] = self._ends.copy()
        return out

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All per-step arrays of episode ``i`` plus ``next_observation/<key>``."""
        if not -self.num_episodes <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: {self.path} has {self.num_episodes} episodes")
        i %= self.num_episodes
        start, stop = int(self._starts[i]), int(self._ends[i])
        out = {name: self.read(name, slice(start, stop)) for name in self.step_fields}
        for key in self.obs_spec:
            obs = out[f"observation/{key}"]
            nxt = np.empty_like(obs)
            nxt[:-1] = obs[1:]
            nxt[-1] = self.read(f"meta/last_observation/{key}", i)
            out[f"next_observation/{key}"] = nxt
        return out

    def transitions(
        self,
        sources: Iterable[EpisodeSource] | None = None,
        next_observation: bool = True,
        include_discarded: bool = False,
    ) -> dict[str, np.ndarray]:
        """Flat per-step arrays of the committed episodes whose source is in ``sources`` (all if None);
        episodes a person labelled DISCARD are left out unless ``include_discarded``.

        Keys: every ``data/`` field (``action``, ``reward``, ``observation/<key>`` ...), plus
        ``next_observation/<key>``, ``episode_index`` (row in the meta arrays), ``source`` and ``done``
        (terminated or truncated).
        """
        e = self.num_episodes
        ep_source = self.read("meta/source", slice(0, e))
        keep = np.ones(e, bool)
        if sources is not None:
            keep &= np.isin(ep_source, np.array([int(EpisodeSource(s)) for s in sources], np.uint8))
        if not include_discarded:
            keep &= self.read("meta/label", slice(0, e)) != EpisodeLabel.DISCARD
        return self.episode_rows(np.flatnonzero(keep), next_observation, ep_source)

    def episode_rows(
        self, episodes: Iterable[int], next_observation: bool = True, ep_source: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Flat per-step arrays (the layout of ``transitions``) of the whole episodes ``episodes``
        (increasing log indices): reads only their rows."""
        e, t = self.num_episodes, self.num_steps
        lengths = np.diff(np.concatenate([[0], self._ends])).astype(np.int64)
        if ep_source is None:
            ep_source = self.read("meta/source", slice(0, e))
        selected = np.asarray(list(episodes) if not isinstance(episodes, np.ndarray) else episodes, np.int64)
        sel_lengths = lengths[selected]
        episode_index = np.repeat(selected, sel_lengths)
        # global step index of every selected step, without a per-step loop
        offsets = np.repeat(self._starts[selected] - np.concatenate([[0], np.cumsum(sel_lengths)[:-1]]), sel_lengths)
        steps = np.arange(len(episode_index), dtype=np.int64) + offsets
        everything = len(selected) == e
        contiguous = len(selected) > 0 and bool(np.all(np.diff(selected) == 1))

        def read(name: str) -> np.ndarray:
            if everything:
                return self.read(name, slice(0, t))
            if len(steps) == 0:
                if name in self._absent:
                    return np.zeros(0, self._absent[name])
                arr = self._arrays[name]
                return np.zeros((0, *arr.shape[1:]), arr.dtype)
            if contiguous:
                return self.read(name, slice(int(steps[0]), int(steps[-1]) + 1))
            return self.read(name, steps)

        out = {name: read(name) for name in self.step_fields}
        if next_observation:
            is_last = np.zeros(len(steps), bool)
            is_last[np.cumsum(sel_lengths) - 1] = True
            for key in self.obs_spec:
                obs = out[f"observation/{key}"]
                nxt = np.empty_like(obs)
                nxt[:-1] = obs[1:]  # selected episodes are whole and contiguous in the selection
                if len(selected):
                    last_obs = self.read(f"meta/last_observation/{key}", selected)
                    nxt[is_last] = last_obs
                out[f"next_observation/{key}"] = nxt
        out["episode_index"] = episode_index
        out["source"] = ep_source[episode_index]
        out["done"] = out["terminated"] | out["truncated"]
        return out

    def batches(self, episodes: Iterable[int], max_rows: int) -> Iterator[dict[str, np.ndarray]]:
        """``episode_rows`` of ``episodes`` in batches of whole consecutive episodes, each at most
        ``max_rows`` steps (or one episode, when a single one is longer): a bounded read at a time."""
        lengths = np.diff(np.concatenate([[0], self._ends])).astype(np.int64)
        ep_source = self.read("meta/source", slice(0, self.num_episodes))
        batch: list[int] = []
        rows = 0
        for i in episodes:
            i = int(i)
            if batch and (rows + lengths[i] > max_rows or i != batch[-1] + 1):
                yield self.episode_rows(np.array(batch), ep_source=ep_source)
                batch, rows = [], 0
            batch.append(i)
            rows += int(lengths[i])
        if batch:
            yield self.episode_rows(np.array(batch), ep_source=ep_source)

    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        return f"EpisodeLog({self.path!r}, episodes={self.num_episodes}, steps={self.num_steps})"
