"""Zarr episode log: one append-only store per run (``<run_dir>/episodes.zarr``), one writer process.

Layout (zarr format 3, nested groups; observation keys keep their ``/``)::

    episodes.zarr/
      data/<field>                 per-step arrays, all episodes concatenated along axis 0 (T steps)
        action f32[T,A]  policy_action f32[T,A]  reward f32[T]  terminated bool[T]  truncated bool[T]
        intervention bool[T]  episode_id i64[T]  step i32[T] (index within the episode)
        timestamp f64[T]  success bool[T]  reward_source u8[T] (RewardSource)  grasp_penalty f32[T]
        success_probability f32[T] (reward classifier output, NaN without one)
        observation/<key>          e.g. observation/state f32[T,D], observation/image/front u8[T,H,W,3]
      meta/episode_ends i64[E]     exclusive end of each episode in the step arrays: THE commit record
      meta/<field>[E]              source u8 (EpisodeSource), success bool, length i32,
                                   intervention_steps i32, interventions i32 (take-overs),
                                   episode_return f32, episode_id i64, label u8 (EpisodeLabel: a
                                   person's verdict; 3 = discarded, never trained on),
                                   reset_s f32 (the reset before it), episode_s f32 (wall time)
      meta/last_observation/<key>  [E,...] the next observation of each episode's last step

Next observations are not stored per step (that would duplicate every image): within an episode
``next_obs[t] = obs[t + 1]``; for the last step ``t = episode_ends[e] - 1`` it is
``meta/last_observation/<key>[e]``. ``EpisodeLog.transitions`` and ``EpisodeLog.episode`` rebuild it.

Chunking: small per-step items (state, scalars) use chunks of 4096 steps (per-episode meta: 1024
episodes), so a long run is a few hundred files per array. Large per-step items (images, anything of
1 KiB or more per step) use one-step inner chunks inside shards of about 4 MiB: one frame is read
with one byte-range read (no episode decode), while a million frames are a few thousand shard files,
not a million. Images are compressed with blosc zstd (bitshuffle), the rest with zarr's default zstd.

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
the last committed episode and ``*.partial`` temp files. Readers trust ``meta/episode_ends`` only:
read it FIRST, then open the other arrays (shapes only grow, so they are always long enough) and
ignore steps past ``episode_ends[-1]`` and meta rows past ``len(episode_ends)``. A writer re-opening
the store (a resumed run) truncates the leftovers and deletes the temp files. A new store is built in
a temp directory and renamed into place, so it appears complete or not at all. One writer at a time
is enforced with an ``flock`` on ``<store>.lock`` (released by the OS if the writer dies). Not
covered: power loss (zarr does not fsync).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync as zarr_sync

from robot_rl.data.schema import EpisodeLabel, EpisodeSource, RewardSource, Transition, count_takeovers

try:  # advisory single-writer lock; Unix only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT_NAME = "robot_rl.episode_log"
FORMAT_VERSION = 2  # 2 added success_probability, interventions, label, reset_s, episode_s
STORE_NAME = "episodes.zarr"

STEP_CHUNK = 4096  # steps per chunk for small per-step items
EPISODE_CHUNK = 1024  # episodes per chunk for per-episode meta
LARGE_ITEM_BYTES = 1024  # per-step items this big or bigger get one-step chunks in shards
SHARD_TARGET_BYTES = 4 << 20  # raw bytes per shard for large items
MAX_SHARD_STEPS = 1024

# Per-step fields besides observations: name -> dtype (action and policy_action are [A])
STEP_FIELDS: dict[str, str] = {
    "action": "float32",
    "policy_action": "float32",
    "reward": "float32",
    "terminated": "bool",
    "truncated": "bool",
    "intervention": "bool",
    "episode_id": "int64",
    "step": "int32",
    "timestamp": "float64",
    "success": "bool",
    "reward_source": "uint8",
    "grasp_penalty": "float32",
    "success_probability": "float32",
}
META_FIELDS: dict[str, str] = {
    "source": "uint8",
    "success": "bool",
    "length": "int32",
    "intervention_steps": "int32",
    "episode_return": "float32",
    "episode_id": "int64",
    "interventions": "int32",
    "label": "uint8",
    "reset_s": "float32",
    "episode_s": "float32",
}

LAYOUT_DESCRIPTION = (
    "robot_rl episode log. data/<field>: per-step arrays of all episodes concatenated on axis 0 "
    "(action, policy_action, reward, terminated, truncated, intervention, episode_id, step, "
    "timestamp, success, reward_source [0 task, 1 classifier, 2 human], grasp_penalty, "
    "success_probability [NaN without a reward classifier], observation/<key>). meta/episode_ends[E]: exclusive end index of each episode in the step arrays; "
    "episode e is steps [episode_ends[e-1], episode_ends[e]) with episode_ends[-1] = 0. "
    "meta/<field>[E]: source [0 demo, 1 online, 2 intervention, 3 eval], success, length, "
    "intervention_steps, interventions (take-overs), episode_return, episode_id, label [0 none, 1 success, "
    "2 failure, 3 discard: discarded episodes must not be trained on], reset_s, episode_s. Next observations are not stored per step: "
    "next_observation[t] = observation[t+1] inside an episode, and for the last step of episode e it "
    "is meta/last_observation/<key>[e]. Trust only meta/episode_ends (read it first): steps past "
    "episode_ends[-1] and meta rows past len(episode_ends) are uncommitted and must be ignored."
)

ObsSpec = dict[str, tuple[tuple[int, ...], np.dtype]]


class EpisodeLogError(ValueError):
    """A problem with an episode log a person can act on; the message names the store and the fix."""


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


def _chunking(item_shape: tuple[int, ...], dtype: np.dtype, rows_per_chunk: int) -> dict[str, Any]:
    """Chunk/shard/compressor arguments for an array of items of ``item_shape`` along axis 0."""
    item_bytes = int(np.prod(item_shape, dtype=np.int64)) * dtype.itemsize
    if item_bytes < LARGE_ITEM_BYTES:
        return {"chunks": (rows_per_chunk, *item_shape)}
    per_shard = int(np.clip(SHARD_TARGET_BYTES // item_bytes, 1, MAX_SHARD_STEPS))
    return {
        "chunks": (1, *item_shape),
        "shards": (per_shard, *item_shape),
        "compressors": BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
    }


def _create(group: zarr.Group, name: str, item_shape: tuple[int, ...], dtype: Any, rows: int) -> None:
    dtype = np.dtype(dtype)
    group.create_array(
        name,
        shape=(0, *item_shape),
        dtype=dtype,
        fill_value=np.zeros((), dtype)[()],
        **_chunking(item_shape, dtype, rows),
    )


def _lock_path(path: str) -> str:
    return os.path.abspath(path).rstrip(os.sep) + ".lock"


# -------------------------------------------------------------------------------------- raw writes


async def _write_rows(arr: zarr.Array, start: int, values: np.ndarray) -> None:
    """Write ``values`` at rows ``[start, start+len)`` without changing the array's on-disk shape."""
    stop = start + len(values)
    target = arr.async_array
    if stop > arr.shape[0]:
        meta = arr.metadata.update_shape((stop, *arr.shape[1:]))
        target = zarr.AsyncArray(metadata=meta, store_path=arr.store_path, config=target.config)
    await target.setitem(slice(start, stop), values)


async def _set_length(arr: zarr.Array, length: int) -> None:
    """Rewrite the array's ``zarr.json`` with a new axis-0 length (one atomic file replace)."""
    if arr.shape[0] != length:
        await arr.async_array.resize((length, *arr.shape[1:]))


async def _gather(coros: Iterable[Any]) -> None:
    await asyncio.gather(*coros)


def _run(*coros: Any) -> None:
    """Run zarr coroutines concurrently on zarr's own event loop and wait for all of them."""
    zarr_sync(_gather(coros))


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
        (JSON-able), saved at creation. Re-opening checks that the specs match and drops leftovers.
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
        tmp = f"{self.path}.creating-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        data = root.create_group("data")
        meta = root.create_group("meta")
        for name, dtype in STEP_FIELDS.items():
            shape = (self.action_dim,) if name in ("action", "policy_action") else ()
            _create(data, name, shape, dtype, STEP_CHUNK)
        for key, (shape, dtype) in self.obs_spec.items():
            _create(data, f"observation/{key}", shape, dtype, STEP_CHUNK)
            _create(meta, f"last_observation/{key}", shape, dtype, EPISODE_CHUNK)
        for name, dtype in META_FIELDS.items():
            _create(meta, name, (), dtype, EPISODE_CHUNK)
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
        os.rename(tmp, self.path)  # the store appears complete or not at all

    def _open_store(self) -> None:
        root = _open_root(self.path, mode="r+")
        _check_format(self.path, root)
        stored = _spec_from_json(root.attrs["obs_spec"])
        if stored != self.obs_spec:
            raise EpisodeLogError(
                f"episode log {self.path} was written with observations {_fmt_spec(stored)} but this run has "
                f"{_fmt_spec(self.obs_spec)}; use a new run directory or the task config it was recorded with"
            )
        stored_action = root.attrs["action_spec"]
        for field in ("shape", "low", "high"):
            if list(stored_action[field]) != self.action_spec[field]:
                raise EpisodeLogError(
                    f"episode log {self.path} was written with action {field} {stored_action[field]} but this "
                    f"run has {self.action_spec[field]}; use a new run directory or the matching task config"
                )
        self._root = root
        self._data = {n: _get_array(self.path, root, f"data/{n}") for n in STEP_FIELDS}
        for key in self.obs_spec:
            self._data[f"observation/{key}"] = _get_array(self.path, root, f"data/observation/{key}")
        self._meta = {n: _get_array(self.path, root, f"meta/{n}") for n in META_FIELDS}
        for key in self.obs_spec:
            self._meta[f"last_observation/{key}"] = _get_array(self.path, root, f"meta/last_observation/{key}")
        self._ends = _get_array(self.path, root, "meta/episode_ends")
        ends = self._ends[:]
        self._num_episodes = len(ends)
        self._num_steps = int(ends[-1]) if len(ends) else 0
        self._truncate_leftovers()

    def _truncate_leftovers(self) -> None:
        """Drop rows a crashed writer left past the last committed episode, and its temp files."""
        for name, arr in self._data.items():
            if arr.shape[0] < self._num_steps:
                raise _corrupt(self.path, f"data/{name} has {arr.shape[0]} steps < committed {self._num_steps}")
        for name, arr in self._meta.items():
            if arr.shape[0] < self._num_episodes:
                raise _corrupt(self.path, f"meta/{name} has {arr.shape[0]} rows < committed {self._num_episodes}")
        _run(
            *(_set_length(arr, self._num_steps) for arr in self._data.values()),
            *(_set_length(arr, self._num_episodes) for arr in self._meta.values()),
        )
        for dirpath, _, filenames in os.walk(self.path):
            for fname in filenames:
                if fname.endswith(".partial"):
                    os.unlink(os.path.join(dirpath, fname))

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

    def end_episode(self, source: EpisodeSource, success: bool | None = None, reset_s: float = 0.0,
                    episode_s: float | None = None) -> int:
        """Append the buffered episode to disk and commit it; returns its index.

        ``success`` defaults to whether any step reported success; the label is the last one a step
        carries; ``reset_s`` is the reset that preceded the episode; ``episode_s`` defaults to the span
        of the step timestamps.
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
            "episode_s": np.array([rows["timestamp"][-1] - rows["timestamp"][0] if episode_s is None
                                   else episode_s], np.float32),
        }
        for key, (_, dtype) in self.obs_spec.items():
            meta_row[f"last_observation/{key}"] = np.asarray(steps[-1].next_observation[key], dtype)[None]

        index = self._commit(rows, meta_row)
        self._buffer = []
        return index

    def copy_episodes(self, log: EpisodeLog, sources: Iterable[EpisodeSource] | None = None) -> int:
        """Append the committed episodes of another log (e.g. a demo store) whose source is in
        ``sources`` (all if None), keeping their source; returns how many were copied."""
        self._check_open()
        if log.obs_spec != self.obs_spec:
            raise EpisodeLogError(
                f"episode log {log.path} has observations {_fmt_spec(log.obs_spec)} but {self.path} has "
                f"{_fmt_spec(self.obs_spec)}; record demos with the same task config")
        meta = log.episode_meta()
        wanted = None if sources is None else {int(EpisodeSource(x)) for x in sources}
        copied = 0
        for i in range(log.num_episodes):
            if wanted is not None and int(meta["source"][i]) not in wanted:
                continue
            episode = log.episode(i)
            rows = {name: episode[name] for name in self._data}
            meta_row = {name: meta[name][i:i + 1] for name in META_FIELDS}
            rows["episode_id"] = np.full(len(rows["reward"]), self._num_episodes, np.int64)  # ids are log indices
            meta_row["episode_id"] = np.array([self._num_episodes], np.int64)
            for key in self.obs_spec:
                meta_row[f"last_observation/{key}"] = episode[f"next_observation/{key}"][-1:]
            self._commit(rows, meta_row)
            copied += 1
        return copied

    def _commit(self, rows: dict[str, np.ndarray], meta_row: dict[str, np.ndarray]) -> int:
        """Append one episode's step rows and meta row with the crash-safe ordering; returns its index."""
        n = len(rows["reward"])
        start, index = self._num_steps, self._num_episodes
        # 1. chunk bytes only: nothing new is visible to readers yet
        _run(
            *(_write_rows(self._data[name], start, values) for name, values in rows.items()),
            *(_write_rows(self._meta[name], index, values) for name, values in meta_row.items()),
            _write_rows(self._ends, index, np.array([start + n], np.int64)),
        )
        # 2. make the rows visible (shapes grow); still not committed
        _run(
            *(_set_length(arr, start + n) for arr in self._data.values()),
            *(_set_length(arr, index + 1) for arr in self._meta.values()),
        )
        # 3. commit: one atomic zarr.json replace, strictly after everything above has landed
        _run(_set_length(self._ends, index + 1))
        self._num_steps, self._num_episodes = start + n, index + 1
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


def _corrupt(path: str, what: str) -> EpisodeLogError:
    return EpisodeLogError(
        f"episode log {path} is corrupt ({what}); restore it from a backup or start a new run directory"
    )


def _fmt_spec(spec: ObsSpec) -> str:
    return "{" + ", ".join(f"{k}: {s} {d.name}" for k, (s, d) in spec.items()) + "}"


def _open_root(path: str, mode: str) -> zarr.Group:
    if not os.path.exists(path):
        raise EpisodeLogError(f"no episode log at {path}; check the run directory (it should contain {STORE_NAME})")
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except Exception as e:  # zarr raises many kinds; the user needs one line
        raise EpisodeLogError(
            f"{path} is not a zarr v3 episode log ({type(e).__name__}); point at <run_dir>/{STORE_NAME}"
        ) from None


def _check_format(path: str, root: zarr.Group) -> None:
    fmt = root.attrs.get("format")
    if not isinstance(fmt, Mapping) or fmt.get("name") != FORMAT_NAME:
        raise EpisodeLogError(
            f"{path} is a zarr store but not a robot_rl episode log (no format attribute); point at "
            f"<run_dir>/{STORE_NAME}"
        )
    if int(fmt.get("version", 0)) < FORMAT_VERSION:
        raise EpisodeLogError(
            f"episode log {path} has format version {fmt.get('version')}, older than this robot_rl's "
            f"({FORMAT_VERSION}: adds labels and intervention counts); re-record it or start a new run directory"
        )
    if int(fmt.get("version", 0)) > FORMAT_VERSION:
        raise EpisodeLogError(
            f"episode log {path} has format version {fmt.get('version')}, newer than this robot_rl reads "
            f"({FORMAT_VERSION}); upgrade robot_rl"
        )
    for attr in ("obs_spec", "action_spec"):
        if attr not in root.attrs:
            raise _corrupt(path, f"root attribute {attr!r} missing")


def _get_array(path: str, root: zarr.Group, name: str) -> zarr.Array:
    try:
        arr = root[name]
    except Exception:
        raise _corrupt(path, f"array {name} missing or unreadable") from None
    if not isinstance(arr, zarr.Array):
        raise _corrupt(path, f"{name} is not an array")
    return arr


class EpisodeLog:
    """Read-only view of the committed episodes of an episode log (a snapshot; see ``refresh``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        """Open the store at ``path``; raises ``EpisodeLogError`` if it is missing or corrupt."""
        self.path = os.fspath(path)
        self._root = _open_root(self.path, mode="r")
        _check_format(self.path, self._root)
        self.obs_spec: ObsSpec = _spec_from_json(self._root.attrs["obs_spec"])
        self.action_spec: dict[str, Any] = dict(self._root.attrs["action_spec"])
        self.config: dict[str, Any] = dict(self._root.attrs.get("config", {}))
        self._ends = np.zeros(0, np.int64)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the commit record to see episodes appended since opening."""
        ends = np.asarray(_get_array(self.path, self._root, "meta/episode_ends")[:], np.int64)
        if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            raise _corrupt(self.path, "meta/episode_ends is not strictly increasing")
        self._ends = ends
        self._starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        steps = self.num_steps
        names = [f"data/{n}" for n in STEP_FIELDS] + [f"data/observation/{k}" for k in self.obs_spec]
        self._arrays: dict[str, zarr.Array] = {}
        for name in names:  # opened after episode_ends, so at least as long as it says
            arr = _get_array(self.path, self._root, name)
            if arr.shape[0] < steps:
                raise _corrupt(self.path, f"{name} has {arr.shape[0]} steps < committed {steps}")
            self._arrays[name[len("data/"):]] = arr
        meta_names = list(META_FIELDS) + [f"last_observation/{k}" for k in self.obs_spec]
        for name in meta_names:
            arr = _get_array(self.path, self._root, f"meta/{name}")
            if arr.shape[0] < len(ends):
                raise _corrupt(self.path, f"meta/{name} has {arr.shape[0]} rows < committed {len(ends)}")
            self._arrays[f"meta/{name}"] = arr

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

        Rows past ``num_steps`` are uncommitted; do not use them.
        """
        if name not in self._arrays or name.startswith("meta/"):
            raise EpisodeLogError(f"episode log {self.path} has no step array {name!r}; choose from {self.step_fields}")
        return self._arrays[name]

    @property
    def step_fields(self) -> list[str]:
        """Names of the per-step arrays (``data/`` relative)."""
        return [n for n in self._arrays if not n.startswith("meta/")]

    def episode_meta(self) -> dict[str, np.ndarray]:
        """Per-episode arrays: ``episode_ends``, ``source``, ``success``, ``length``, ... (length E)."""
        e = self.num_episodes
        out = {name: self._arrays[f"meta/{name}"][:e] for name in META_FIELDS}
        out["episode_ends"] = self._ends.copy()
        return out

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All per-step arrays of episode ``i`` plus ``next_observation/<key>``."""
        if not -self.num_episodes <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: {self.path} has {self.num_episodes} episodes")
        i %= self.num_episodes
        start, stop = int(self._starts[i]), int(self._ends[i])
        out = {name: self._arrays[name][start:stop] for name in self.step_fields}
        for key in self.obs_spec:
            obs = out[f"observation/{key}"]
            nxt = np.empty_like(obs)
            nxt[:-1] = obs[1:]
            nxt[-1] = self._arrays[f"meta/last_observation/{key}"][i]
            out[f"next_observation/{key}"] = nxt
        return out

    def transitions(
        self, sources: Iterable[EpisodeSource] | None = None, next_observation: bool = True,
        include_discarded: bool = False,
    ) -> dict[str, np.ndarray]:
        """Flat per-step arrays of the committed episodes whose source is in ``sources`` (all if None);
        episodes a person labelled DISCARD are left out unless ``include_discarded``.

        Keys: every ``data/`` field (``action``, ``reward``, ``observation/<key>`` ...), plus
        ``next_observation/<key>``, ``episode_index`` (row in the meta arrays), ``source`` and ``done``
        (terminated or truncated).
        """
        e, t = self.num_episodes, self.num_steps
        lengths = np.diff(np.concatenate([[0], self._ends])).astype(np.int64)
        ep_source = self._arrays["meta/source"][:e]
        keep = np.ones(e, bool)
        if sources is not None:
            keep &= np.isin(ep_source, np.array([int(EpisodeSource(s)) for s in sources], np.uint8))
        if not include_discarded:
            keep &= self._arrays["meta/label"][:e] != EpisodeLabel.DISCARD
        selected = np.flatnonzero(keep)
        sel_lengths = lengths[selected]
        episode_index = np.repeat(selected, sel_lengths)
        # global step index of every selected step, without a per-step loop
        offsets = np.repeat(self._starts[selected] - np.concatenate([[0], np.cumsum(sel_lengths)[:-1]]), sel_lengths)
        steps = np.arange(len(episode_index), dtype=np.int64) + offsets
        everything = len(selected) == e

        def read(arr: zarr.Array) -> np.ndarray:
            if everything:
                return arr[:t]
            if len(steps) == 0:
                return np.zeros((0, *arr.shape[1:]), arr.dtype)
            return arr.get_orthogonal_selection((steps,) + (slice(None),) * (arr.ndim - 1))

        out = {name: read(arr) for name, arr in self._arrays.items() if not name.startswith("meta/")}
        if next_observation:
            is_last = np.zeros(len(steps), bool)
            is_last[np.cumsum(sel_lengths) - 1] = True
            for key in self.obs_spec:
                obs = out[f"observation/{key}"]
                nxt = np.empty_like(obs)
                nxt[:-1] = obs[1:]  # selected episodes are whole and contiguous in the selection
                last_obs = self._arrays[f"meta/last_observation/{key}"][:e]
                nxt[is_last] = last_obs[episode_index[is_last]]
                out[f"next_observation/{key}"] = nxt
        out["episode_index"] = episode_index
        out["source"] = ep_source[episode_index]
        out["done"] = out["terminated"] | out["truncated"]
        return out

    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        return f"EpisodeLog({self.path!r}, episodes={self.num_episodes}, steps={self.num_steps})"
