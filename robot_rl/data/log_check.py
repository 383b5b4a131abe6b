"""Check and salvage zarr episode logs (the commands ``robot-rl check-log`` and ``robot-rl salvage-log``
are in robot_rl/commands/).

``check_log`` reads every chunk of every array over the committed rows (formats 2, 3 and 4) and reports
what is damaged and which episodes that touches. ``salvage_log`` copies every intact episode into a new
format-4 store (which also converts a format-2 or format-3 store; a field the old format lacks is written
as its fill value: ``meta/eval_step`` -1, ``data/frame_age_s`` NaN). Both work on stores that
``EpisodeLog`` refuses:

- a chunk file that is missing (format 3 and later write every chunk, so absence is damage), fails its crc32c,
  is truncated or does not decode: the rows it holds are lost, and with them the episodes they belong to
  (an episode is intact when every step row, its meta row and its last observation read back);
- an array whose ``zarr.json`` is missing or unreadable: its metadata is rebuilt from the layout rules
  (dtype and item shape from the specs, chunking from a sibling array), and its chunks are then read
  and verified as usual (a wrong guess fails the checksums, it cannot read as garbage);
- a root ``zarr.json`` that is missing or unreadable: the observation and action specs are rebuilt from
  the arrays (the action bounds and the run's config are lost; the report says so);
- a damaged commit record (``meta/episode_ends``): episode boundaries are rebuilt from ``meta/length``,
  else from ``data/step`` (0 at each episode start; ``data/episode_id`` must not change inside an
  episode), and the report says which. ``meta/length`` is derived data: when the boundaries are known,
  a lost ``meta/length`` row loses no episode (salvage writes the boundaries' difference).

The boundaries are checked against ``data/step`` (each episode's steps are 0, 1, 2, ...), so an index
that disagrees with the data marks the episodes concerned as damaged ("inconsistent index").
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore, MemoryStore, StorePath

from robot_rl.data.episode_log import (
    CHECKSUMS_SINCE,
    EPISODE_CHUNK,
    FIELDS_SINCE,
    FORMAT_NAME,
    FORMAT_VERSION,
    INCONSISTENT,
    LARGE_ITEM_BYTES,
    META_FIELDS,
    META_FILL,
    MISSING,
    OLDEST_READABLE_VERSION,
    SHORT_SHAPE,
    STEP_CHUNK,
    STEP_FIELDS,
    STEP_FIELDS_SINCE,
    STEP_FILL,
    STORE_NAME,
    UNREADABLE,
    EpisodeLogError,
    EpisodeLogWriter,
    ObsSpec,
    _chunking,
    chunk_files,
    file_rows,
    has_checksums,
    looks_like_log,
    meta_fields,
    meta_fill,
    meta_shape,
    read_error_detail,
    salvage_hint,
    step_fields,
    verify_chunk_file,
)

ENDS = "meta/episode_ends"


def resolve_store(path: str | os.PathLike) -> str:
    """``path``, or ``path/episodes.zarr`` when ``path`` is a run or demo directory holding one."""
    path = os.fspath(path)
    if (
        os.path.isdir(path)
        and not os.path.exists(os.path.join(path, "zarr.json"))
        and os.path.isdir(os.path.join(path, STORE_NAME))
    ):
        return os.path.join(path, STORE_NAME)
    return path


def ranges(indices: Any) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    values = sorted(int(i) for i in indices)
    if not values:
        return "none"
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


class _Inspection:
    """Everything known about one store: its arrays (opened or rebuilt), the committed episodes and their
    boundaries, which rows of which arrays are damaged, and the problems found."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[dict[str, Any]] = []
        self.notes: list[str] = []
        if not os.path.exists(path):
            raise EpisodeLogError(f"no episode log at {path}; check the path (a run directory holds {STORE_NAME})")
        if not os.path.isdir(path):
            raise EpisodeLogError(f"{path} is not an episode log (not a directory); point at <run_dir>/{STORE_NAME}")
        self.store = LocalStore(path, read_only=True)
        self._load_root()
        self._open_arrays()
        self._find_boundaries()
        self._scan_data()
        self._assign_episodes()

    # -- root: format, specs, config

    def _problem(
        self,
        array: str,
        kind: str,
        detail: str,
        chunk: int | None = None,
        key: str | None = None,
        rows: tuple[int, int] | None = None,
        axis: str = "",
    ) -> dict[str, Any]:
        problem = {
            "array": array,
            "chunk": chunk,
            "key": key,
            "kind": kind,
            "rows": None if rows is None else [int(rows[0]), int(rows[1])],
            "detail": detail,
            "episodes": [],
            "_axis": axis,
        }
        self.problems.append(problem)
        return problem

    def _load_root(self) -> None:
        attrs = None
        try:
            with open(os.path.join(self.path, "zarr.json"), "rb") as f:
                doc = json.loads(f.read())
            if isinstance(doc, Mapping) and doc.get("node_type") == "group":
                attrs = doc.get("attributes", {})
        except FileNotFoundError:
            doc = None
        except (OSError, ValueError):
            doc = "unreadable"
        fmt = attrs.get("format") if isinstance(attrs, Mapping) else None
        version = None
        if isinstance(fmt, Mapping) and fmt.get("name") == FORMAT_NAME:
            try:
                version = int(fmt.get("version"))
            except (TypeError, ValueError):
                version = None
        self.root_ok = version is not None
        if version is not None and version > FORMAT_VERSION:
            raise EpisodeLogError(
                f"episode log {self.path} has format version {version}, newer than this robot_rl "
                f"reads ({FORMAT_VERSION}); upgrade robot_rl"
            )
        if version is not None and version < OLDEST_READABLE_VERSION:
            raise EpisodeLogError(
                f"episode log {self.path} has format version {version}, too old to check or "
                f"salvage (robot_rl reads {OLDEST_READABLE_VERSION} and later); re-record it"
            )
        if not self.root_ok and not looks_like_log(self.path):
            raise EpisodeLogError(
                f"{self.path} is not a robot_rl episode log (no format attribute, no data/ and "
                f"meta/ arrays); point at <run_dir>/{STORE_NAME}"
            )
        self.obs_spec: ObsSpec | None = None
        self.action_spec: dict[str, Any] | None = None
        self.config: dict[str, Any] = {}
        if self.root_ok:
            try:
                self.obs_spec = {
                    k: (tuple(int(d) for d in v["shape"]), np.dtype(v["dtype"])) for k, v in attrs["obs_spec"].items()
                }
                spec = attrs["action_spec"]
                self.action_spec = {
                    "shape": [int(spec["shape"][0])],
                    "dtype": "float32",
                    "low": [float(x) for x in spec["low"]],
                    "high": [float(x) for x in spec["high"]],
                }
                self.config = dict(attrs.get("config", {}))
            except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                self.root_ok = False
        if not self.root_ok:
            what = "missing" if doc is None else "unreadable"
            self._problem(
                "zarr.json",
                MISSING if doc is None else UNREADABLE,
                f"root zarr.json {what}: format, observation/action specs and config rebuilt from the arrays",
            )
            self.notes.append(
                "root zarr.json damaged: observation and action shapes rebuilt from the arrays; "
                "the action bounds (set to [-1, 1]) and the run's config are lost"
            )
        self.version = version if version is not None else self._guess_version()
        if self.version < CHECKSUMS_SINCE:
            self.notes.append(
                f"format {self.version}: no chunk checksums and all-zero chunks were not written, so "
                f"damage inside a chunk or a deleted chunk may go unnoticed; salvage-log converts it"
            )
        for name, since in STEP_FIELDS_SINCE.items():
            if since > self.version:
                self.notes.append(
                    f"format {self.version}: no data/{name} (read as {_fill_text(STEP_FILL.get(name, 0))}); "
                    f"salvage-log converts it to format {FORMAT_VERSION}"
                )

    def _read_meta_json(self, name: str) -> Any:
        try:
            return zarr.open_array(store=self.store, path=name, mode="r", zarr_format=3)
        except Exception:  # noqa: BLE001 - any failure: metadata unusable
            return None

    def _guess_version(self) -> int:
        """The format of a store whose root zarr.json is lost: no checksums mean format 2; with them, the
        latest format whose added step or meta field (``STEP_FIELDS_SINCE``, ``FIELDS_SINCE``) has a directory,
        else 3."""
        for name in (ENDS, "data/reward", "data/step", "meta/length"):
            arr = self._read_meta_json(name)
            if arr is not None:
                if not has_checksums(arr):
                    return OLDEST_READABLE_VERSION
                break
        else:
            return FORMAT_VERSION
        version = CHECKSUMS_SINCE
        added = [("data", n, v) for n, v in STEP_FIELDS_SINCE.items()]
        added += [("meta", n, v) for n, v in FIELDS_SINCE.items()]
        for group, name, since in added:
            if since > version and os.path.isdir(os.path.join(self.path, group, name)):
                version = since
        return version

    def _discover_obs_spec(self) -> ObsSpec:
        spec: ObsSpec = {}
        for group in ("data/observation", "meta/last_observation"):
            base = os.path.join(self.path, *group.split("/"))
            for dirpath, dirnames, filenames in os.walk(base):
                if "c" not in dirnames and "zarr.json" not in filenames:
                    continue
                key = os.path.relpath(dirpath, base).replace(os.sep, "/")
                if key == "." or key in spec:
                    continue
                arr = self._read_meta_json(f"{group}/{key}")
                if arr is not None:
                    spec[key] = (tuple(int(d) for d in arr.shape[1:]), np.dtype(arr.dtype))
                    dirnames.clear()
        return dict(sorted(spec.items()))

    # -- arrays

    def _expected(self) -> dict[str, tuple[tuple[int, ...], np.dtype, str]]:
        """store name -> (item shape, dtype, group) of every array the store should have."""
        if self.obs_spec is None:
            self.obs_spec = self._discover_obs_spec()
        if self.action_spec is None:
            arr = self._read_meta_json("data/action") or self._read_meta_json("data/policy_action")
            if arr is None:
                raise EpisodeLogError(
                    f"episode log {self.path} is damaged beyond salvage (root zarr.json and "
                    f"data/action metadata unreadable: the action size is unknown)"
                )
            dim = int(arr.shape[1])
            self.action_spec = {"shape": [dim], "dtype": "float32", "low": [-1.0] * dim, "high": [1.0] * dim}
        dim = self.action_spec["shape"][0]
        out: dict[str, tuple[tuple[int, ...], np.dtype, str]] = {}
        for name, dtype in step_fields(self.version).items():
            out[f"data/{name}"] = ((dim,) if name in ("action", "policy_action") else (), np.dtype(dtype), "data")
        for key, (shape, dtype) in self.obs_spec.items():
            out[f"data/observation/{key}"] = (shape, dtype, "data")
        for name, dtype in meta_fields(self.version).items():
            out[f"meta/{name}"] = (meta_shape(name), np.dtype(dtype), "meta")
        for key, (shape, dtype) in self.obs_spec.items():
            out[f"meta/last_observation/{key}"] = (shape, dtype, "meta")
        out[ENDS] = ((), np.dtype("int64"), "meta")
        return out

    def _open_arrays(self) -> None:
        self.expected = self._expected()
        self.arrays: dict[str, zarr.Array] = {}
        self.rebuilt: set[str] = set()
        broken: list[str] = []
        for name, (shape, dtype, _) in self.expected.items():
            arr = self._read_meta_json(name)
            if arr is None or tuple(arr.shape[1:]) != shape or np.dtype(arr.dtype) != dtype:
                broken.append(name)
            else:
                self.arrays[name] = arr
        for name in broken:
            exists = os.path.exists(os.path.join(self.path, *name.split("/"), "zarr.json"))
            self.arrays[name] = self._rebuild(name)
            self.rebuilt.add(name)
            self._problem(
                name,
                UNREADABLE if exists else MISSING,
                f"{name}/zarr.json {'unreadable or wrong' if exists else 'missing'}: metadata rebuilt from "
                f"the layout, its chunks are read with it",
            )

    def _rebuild(self, name: str) -> zarr.Array:
        """Array metadata for ``name`` from the layout rules, with the chunking of a sound sibling array."""
        shape, dtype, group = self.expected[name]
        item_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        rows = STEP_CHUNK if group == "data" else EPISODE_CHUNK
        per_shard = None
        siblings = [(n, a) for n, a in self.arrays.items() if self.expected[n][2] == group]
        for n, a in self.arrays.items():  # small items: a sibling's chunk rows; large: any shard of that size
            sib_shape, sib_dtype, sib_group = self.expected[n]
            sib_bytes = int(np.prod(sib_shape, dtype=np.int64)) * sib_dtype.itemsize
            if item_bytes < LARGE_ITEM_BYTES and a.shards is None and sib_group == group:
                rows = int(a.chunks[0])
                break
            if item_bytes >= LARGE_ITEM_BYTES and a.shards is not None and sib_bytes == item_bytes:
                per_shard = int(a.shards[0])
                break
        fields = META_FILL if group == "meta" else STEP_FILL
        fill = fields.get(name.split("/", 1)[1], 0)
        template = zarr.create_array(
            store=MemoryStore(),
            shape=(0, *shape),
            dtype=dtype,
            fill_value=np.full((), fill, dtype)[()],
            **_chunking(shape, dtype, rows, checksum=self.version >= CHECKSUMS_SINCE, per_shard=per_shard),
        )
        length = max([a.shape[0] for n, a in siblings] + [0])
        metadata = template.metadata.update_shape((length, *shape))
        return zarr.Array(zarr.AsyncArray(metadata=metadata, store_path=StorePath(self.store, name)))

    # -- scanning

    def _scan(self, name: str, rows: int, axis: str) -> np.ndarray:
        """Check and decode every chunk of ``name`` over rows ``[0, rows)``; returns the damaged-row mask."""
        arr = self.arrays[name]
        bad = np.zeros(rows, bool)
        limit = rows
        if name not in self.rebuilt and arr.shape[0] < rows:
            limit = arr.shape[0]
            bad[limit:] = True
            self._problem(
                name, SHORT_SHAPE, f"{name} has {arr.shape[0]} rows < committed {rows}", rows=(limit, rows), axis=axis
            )
        checked = self.version >= CHECKSUMS_SINCE and has_checksums(arr)
        per_file = file_rows(arr)
        for index, key in chunk_files(arr, limit):
            found = verify_chunk_file(self.path, arr, index, key, limit) if checked else []
            for start, stop, kind, detail in found:
                bad[start:stop] = True
                self._problem(name, kind, detail, index, key, (start, stop), axis)
            lo, hi = index * per_file, min(index * per_file + per_file, limit)
            for start, stop in _runs(~bad[lo:hi]):
                self._decode(name, arr, index, key, lo + start, lo + stop, bad, axis)
        return bad

    def _decode(
        self, name: str, arr: zarr.Array, index: int, key: str, start: int, stop: int, bad: np.ndarray, axis: str
    ) -> None:
        try:
            arr[start:stop]
            return
        except Exception as err:  # noqa: BLE001 - any decode failure is damage
            detail = read_error_detail(err)
        if arr.shards is None or stop - start == 1:
            bad[start:stop] = True
            self._problem(name, UNREADABLE, f"chunk file {key}: {detail}", index, key, (start, stop), axis)
            return
        inner = int(arr.chunks[0])
        for lo in range(start, stop, inner):
            hi = min(lo + inner, stop)
            try:
                arr[lo:hi]
            except Exception as err:  # noqa: BLE001
                bad[lo:hi] = True
                self._problem(
                    name,
                    UNREADABLE,
                    f"shard file {key} rows {lo}-{hi - 1}: {read_error_detail(err)}",
                    index,
                    key,
                    (lo, hi),
                    axis,
                )

    def _values(self, name: str, rows: int, bad: np.ndarray) -> np.ndarray:
        """Rows ``[0, rows)`` of a small array, decoded chunk by chunk; damaged rows are left 0."""
        arr = self.arrays[name]
        out = np.zeros((rows, *arr.shape[1:]), arr.dtype)
        per_file = file_rows(arr)
        for index in range(-(-rows // per_file)):
            lo, hi = index * per_file, min(index * per_file + per_file, rows)
            for start, stop in _runs(~bad[lo:hi]):
                out[lo + start : lo + stop] = arr[lo + start : lo + stop]
        return out

    # -- the committed episodes and their boundaries

    def _find_boundaries(self) -> None:
        meta_names = [n for n, (_, _, g) in self.expected.items() if g == "meta" and n != ENDS]
        sound_meta = [self.arrays[n].shape[0] for n in meta_names if n not in self.rebuilt]
        ends_arr = self.arrays[ENDS]
        most = min(sound_meta) if sound_meta else ends_arr.shape[0]
        count = most if ENDS in self.rebuilt else ends_arr.shape[0]
        if count > most:
            self._problem(
                ENDS,
                INCONSISTENT,
                f"{ENDS} has {count} rows but the meta arrays only {most}: rows past {most} are not episodes",
                rows=(most, count),
                axis="episodes",
            )
            count = most
        self.num_episodes = count
        self.bad_meta = {n: self._scan(n, count, "episodes") for n in [ENDS, *meta_names]}
        sound_data = [
            a.shape[0] for n, a in self.arrays.items() if self.expected[n][2] == "data" and n not in self.rebuilt
        ]
        data_rows = max(sound_data) if sound_data else None
        self.data_rows = data_rows

        ends = self._values(ENDS, count, self.bad_meta[ENDS]).astype(np.int64)
        lengths = self._values("meta/length", count, self.bad_meta["meta/length"]).astype(np.int64)
        ends_ok = self._valid_ends(ends, self.bad_meta[ENDS], data_rows, ENDS)
        lengths_ok = not self.bad_meta["meta/length"].any() and (
            count == 0 or (lengths.min() > 0 and (data_rows is None or lengths.sum() <= data_rows))
        )
        self.boundaries = None
        if ends_ok:
            self.boundaries = "meta/episode_ends"
        elif lengths_ok:
            ends, self.boundaries = np.cumsum(lengths), "meta/length"
        else:
            ends = self._ends_from_steps(count, data_rows)
            if ends is not None:
                self.boundaries = "data/step"
        if self.boundaries is None:
            self._problem(
                ENDS,
                INCONSISTENT,
                "episode boundaries cannot be rebuilt (meta/episode_ends, meta/length "
                "and data/step all damaged): no episode can be recovered",
                axis="episodes",
                rows=(0, count),
            )
            self.ends = np.zeros(0, np.int64)
            self.lost_all = True
        else:
            self.ends = np.asarray(ends, np.int64)
            self.lost_all = False
        if self.boundaries not in (None, "meta/episode_ends"):
            self.notes.append(f"episode boundaries rebuilt from {self.boundaries} ({ENDS} is damaged)")
        self.starts = np.concatenate([[0], self.ends[:-1]]).astype(np.int64)
        self.num_steps = int(self.ends[-1]) if len(self.ends) else 0
        if self.boundaries in ("meta/episode_ends", "data/step"):  # readable lengths must agree with them
            readable = ~self.bad_meta["meta/length"][: len(self.ends)]
            mismatch = np.flatnonzero((self.ends - self.starts != lengths[: len(self.ends)]) & readable)
            for e in mismatch:
                p = self._problem(
                    "meta/length",
                    INCONSISTENT,
                    f"meta/length[{e}] is {lengths[e]} but the "
                    f"boundaries from {self.boundaries} say {self.ends[e] - self.starts[e]}",
                    rows=(e, e + 1),
                    axis="episodes",
                )
                p["episodes"] = [int(e)]

    def _valid_ends(self, ends: np.ndarray, bad: np.ndarray, data_rows: int | None, name: str) -> bool:
        if bad.any():
            return False
        if len(ends) == 0:
            return True
        if ends[0] <= 0 or np.any(np.diff(ends) <= 0):
            self._problem(
                name, INCONSISTENT, f"{name} is not strictly increasing", rows=(0, len(ends)), axis="episodes"
            )
            return False
        if data_rows is not None and ends[-1] > data_rows:
            self._problem(
                name,
                INCONSISTENT,
                f"{name} ends at step {ends[-1]}, past the data ({data_rows} steps)",
                rows=(0, len(ends)),
                axis="episodes",
            )
            return False
        return True

    def _ends_from_steps(self, count: int, data_rows: int | None) -> np.ndarray | None:
        if data_rows is None or count == 0:
            return np.zeros(0, np.int64) if count == 0 else None
        problems = len(self.problems)
        bad = self._scan("data/step", data_rows, "steps")
        del self.problems[problems:]  # reported again by the full data scan
        if bad.any():
            return None
        step = self._values("data/step", data_rows, bad)
        starts = np.flatnonzero(step == 0)
        if len(starts) < count or (len(starts) and starts[0] != 0):
            return None
        return np.append(starts[1:count], starts[count] if len(starts) > count else data_rows).astype(np.int64)

    def _scan_data(self) -> None:
        names = [n for n, (_, _, g) in self.expected.items() if g == "data"]
        self.bad_data = {n: self._scan(n, self.num_steps, "steps") for n in names}
        # every episode's steps must be 0, 1, 2, ...: checks the boundaries against the data
        if self.num_steps and not self.lost_all:
            bad = self.bad_data["data/step"]
            step = self._values("data/step", self.num_steps, bad)
            lengths = self.ends - self.starts
            want = np.arange(self.num_steps) - np.repeat(self.starts, lengths)
            wrong = (step != want) & ~bad
            episode_of = np.repeat(np.arange(len(lengths)), lengths)
            for e in np.unique(episode_of[wrong]):
                p = self._problem(
                    "data/step",
                    INCONSISTENT,
                    f"episode {e}: data/step is not 0..{lengths[e] - 1} between the boundaries from {self.boundaries}",
                    rows=(self.starts[e], self.ends[e]),
                    axis="steps",
                )
                p["episodes"] = [int(e)]
            if self.boundaries == "data/step":  # boundaries from step == 0 alone: data/episode_id must agree
                bad = self.bad_data["data/episode_id"]
                ids = self._values("data/episode_id", self.num_steps, bad)
                changes = np.flatnonzero((ids[1:] != ids[:-1]) & ~bad[1:] & ~bad[:-1]) + 1
                inside = changes[~np.isin(changes, self.starts)]
                for e in np.unique(np.searchsorted(self.ends, inside, side="right")):
                    p = self._problem(
                        "data/episode_id",
                        INCONSISTENT,
                        f"episode {e}: data/episode_id changes inside the episode rebuilt from data/step",
                        rows=(self.starts[e], self.ends[e]),
                        axis="steps",
                    )
                    p["episodes"] = [int(e)]

    def _assign_episodes(self) -> None:
        damaged: set[int] = set()
        count = len(self.ends)
        for p in self.problems:
            if self.boundaries is not None and p["array"] == "meta/length" and p["kind"] in (MISSING, UNREADABLE):
                continue  # an episode's length is its boundaries' difference: rebuilt, not lost
            if p["rows"] is not None and not p["episodes"] and p["array"] != ENDS:
                lo, hi = p["rows"]
                if p["_axis"] == "steps" and count:
                    first = int(np.searchsorted(self.ends, lo, side="right"))
                    last = int(np.searchsorted(self.ends, hi - 1, side="right"))
                    p["episodes"] = list(range(first, min(last, count - 1) + 1)) if first < count else []
                elif p["_axis"] == "episodes":
                    p["episodes"] = list(range(lo, min(hi, count)))
            damaged.update(p["episodes"])
        if self.lost_all:
            damaged = set(range(self.num_episodes))
        self.damaged = sorted(damaged)
        total = self.num_episodes if self.lost_all else count
        self.intact = sorted(set(range(total)) - damaged)

    # -- reading intact episodes

    def episode_rows(self, e: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        start, stop = int(self.starts[e]), int(self.ends[e])
        rows = {n[len("data/") :]: self.arrays[n][start:stop] for n, (_, _, g) in self.expected.items() if g == "data"}
        for field, dtype in STEP_FIELDS.items():
            if field not in rows:  # a field the store's format lacks
                rows[field] = np.full(stop - start, STEP_FILL.get(field, 0), dtype)
        meta_row: dict[str, np.ndarray] = {}
        for n, (_, _, g) in self.expected.items():
            if g == "meta" and n != ENDS:
                meta_row[n[len("meta/") :]] = self.arrays[n][e : e + 1]
        for field in META_FIELDS:
            if field not in meta_row:  # a field the store's format lacks
                meta_row[field] = meta_fill(field, 1)
        meta_row["length"] = np.array([stop - start], np.int32)  # equal to the stored one, which may be lost
        return rows, meta_row

    def report(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format_version": self.version,
            "ok": not self.problems,
            "committed_episodes": int(self.num_episodes),
            "committed_steps": int(self.num_steps),
            "boundaries": self.boundaries,
            "problems": [{k: v for k, v in p.items() if not k.startswith("_")} for p in self.problems],
            "damaged_episodes": list(self.damaged),
            "intact_episodes": list(self.intact),
            "notes": list(self.notes),
        }


def _fill_text(value: float) -> str:
    """A fill value as a note says it: ``-1``, ``NaN``."""
    return "NaN" if value != value else str(value)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in ``mask``."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


# ----------------------------------------------------------------------------------------- public API


def check_log(path: str | os.PathLike) -> dict[str, Any]:
    """Read every chunk of every array of a store's committed range and report its health.

    Returns ``{"path", "format_version", "ok", "committed_episodes", "committed_steps", "boundaries"
    (where the episode boundaries came from: "meta/episode_ends", "meta/length", "data/step" or None),
    "problems": [{"array", "chunk" (index along axis 0, None for metadata), "key", "kind" (missing |
    unreadable | short shape | inconsistent index), "rows" ([start, stop) in steps or episodes), "detail",
    "episodes"}], "damaged_episodes", "intact_episodes", "notes"}``. Raises ``EpisodeLogError`` when
    ``path`` is not an episode log.
    """
    return _Inspection(resolve_store(path)).report()


def salvage_log(path: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Copy every intact episode of the store at ``path`` into a new store of the current format (4) at ``out``.

    Episode ids are renumbered as ``EpisodeLogWriter.copy_episodes`` does; ``out`` must not exist and is
    built aside and renamed into place (complete or absent). Returns ``{"source", "out", "format_version",
    "recovered" (old episode indices, in order), "lost", "recovered_steps", "lost_steps", "boundaries",
    "problems" (count), "notes"}``.
    """
    source, out = resolve_store(path), os.fspath(out)
    if os.path.lexists(out):
        raise EpisodeLogError(f"{out} already exists: salvage-log writes a new store; choose another out= path")
    src_real, out_real = os.path.realpath(source), os.path.realpath(out)
    if out_real == src_real or out_real.startswith(src_real + os.sep):
        raise EpisodeLogError(f"out={out} is inside the store being salvaged; choose a path outside {source}")
    inspection = _Inspection(source)
    obs_spec, action = inspection.obs_spec, inspection.action_spec
    tmp = f"{out}.salvaging-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = EpisodeLogWriter(
            tmp,
            obs_spec,
            action["shape"][0],
            config=inspection.config,
            action_low=action["low"],
            action_high=action["high"],
        )
        try:
            for e in inspection.intact:
                rows, meta_row = inspection.episode_rows(e)
                writer._append_copy(rows, meta_row)
        finally:
            writer.close()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for leftover in (f"{tmp}.lock",):
            if os.path.exists(leftover):
                os.unlink(leftover)
    lengths = inspection.ends - inspection.starts
    recovered = list(inspection.intact)
    lost = list(inspection.damaged)
    notes = list(inspection.notes)
    if inspection.version < FORMAT_VERSION:
        version = inspection.version
        filled = [
            f"{n} set to {'the nominal values' if n == 'perturbation' else _fill_text(META_FILL.get(n, 0))}"
            for n, v in FIELDS_SINCE.items()
            if v > version
        ]
        filled += [f"{n} set to {_fill_text(STEP_FILL.get(n, 0))}" for n, v in STEP_FIELDS_SINCE.items() if v > version]
        notes.append(f"converted from format {inspection.version} to {FORMAT_VERSION} ({', '.join(filled)})")
    return {
        "source": source,
        "out": out,
        "format_version": inspection.version,
        "recovered": recovered,
        "lost": lost,
        "recovered_steps": int(lengths[recovered].sum()) if recovered else 0,
        "lost_steps": int(lengths[[e for e in lost if e < len(lengths)]].sum()) if lost else 0,
        "boundaries": inspection.boundaries,
        "problems": len(inspection.problems),
        "notes": notes,
    }


__all__ = ["check_log", "salvage_log", "resolve_store", "salvage_hint", "ranges"]
