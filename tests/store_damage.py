"""A damage toolkit for episode-log stores (format 3 and later), for the integrity tests and the fault bench.

``damage(store, kind, rng)`` applies one kind of damage and returns which committed episodes it makes
unrecoverable. That answer is computed here from the store's own metadata (read with plain zarr and
json before the damage) and the episode boundaries, independently of ``robot_rl.data.log_check``:

- a data chunk or shard file deleted, truncated or with a flipped byte: every episode with a committed
  step in the rows that file holds (a flipped byte in a shard's inner chunk: the rows of that inner chunk);
- ``meta/episode_ends`` damaged (a chunk deleted, its shape grown past the data), an array's
  ``zarr.json`` corrupted, the root ``zarr.json`` deleted: none, because the store holds that
  information twice (boundaries in ``meta/length`` and ``data/step``; metadata in the layout rules
  and sibling arrays; specs in the arrays' shapes).

``store_digest(path)`` hashes every file's relative path and bytes (byte-identity checks).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import zarr

DAMAGE_KINDS = (
    "delete_state_chunk",  # a chunk file of data/observation/state (else the first unsharded observation)
    "delete_image_shard",  # a shard file of data/observation/image/front (else the first image array)
    "delete_ends_chunk",  # a chunk file of meta/episode_ends (the commit record)
    "flip_state_byte",  # one byte of a data/observation/state chunk file
    "flip_image_byte",  # one byte inside an inner chunk of an image shard (not its index)
    "truncate_chunk",  # a chunk or shard file of any data array cut short
    "corrupt_array_json",  # an array's zarr.json cut in half
    "delete_root_json",  # the root zarr.json (format, specs, config)
    "grow_index",  # meta/episode_ends grown by one row pointing past the data
)

ENDS = "meta/episode_ends"
IMAGE_KINDS = ("delete_image_shard", "flip_image_byte")  # need a sharded (image) observation array


def store_digest(path: str) -> str:
    """sha256 of every file under ``path``: its relative path and its bytes."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                digest.update(f.read())
            digest.update(b"\0")
    return digest.hexdigest()


def _metadata(store: str, name: str) -> dict:
    with open(os.path.join(store, *name.split("/"), "zarr.json")) as f:
        return json.load(f)


def _file_layout(store: str, name: str) -> tuple[int, int | None, int]:
    """(rows per file, rows per inner chunk or None when unsharded, ndim) from the array's zarr.json."""
    meta = _metadata(store, name)
    outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
    codec = meta["codecs"][0]
    inner = codec["configuration"]["chunk_shape"][0] if codec["name"] == "sharding_indexed" else None
    return int(outer[0]), inner, len(meta["shape"])


def _file_path(store: str, name: str, index: int, ndim: int) -> str:
    return os.path.join(store, *name.split("/"), "c", str(index), *(["0"] * (ndim - 1)))


def _boundaries(store: str) -> np.ndarray:
    return np.asarray(zarr.open_array(os.path.join(store, *ENDS.split("/")), mode="r")[:], np.int64)


def _episodes_touching(ends: np.ndarray, lo: int, hi: int) -> list[int]:
    starts = np.concatenate([[0], ends[:-1]])
    return [int(e) for e in np.flatnonzero((starts < hi) & (ends > lo))]


def _pick_file(store: str, name: str, committed: int, rng: np.random.Generator) -> tuple[int, str, int, int | None]:
    """A random file of ``name`` holding committed rows: (index, path, rows per file, inner rows)."""
    per_file, inner, ndim = _file_layout(store, name)
    index = int(rng.integers(-(-committed // per_file)))
    return index, _file_path(store, name, index, ndim), per_file, inner


def _data_arrays(store: str) -> list[str]:
    names = []
    base = os.path.join(store, "data")
    for dirpath, _, filenames in os.walk(base):
        if "zarr.json" in filenames and _metadata_of_dir(dirpath).get("node_type") == "array":
            names.append("data/" + os.path.relpath(dirpath, base).replace(os.sep, "/"))
    return sorted(names)


def _all_arrays(store: str) -> list[str]:
    names = []
    for dirpath, _, filenames in os.walk(store):
        if "zarr.json" in filenames and _metadata_of_dir(dirpath).get("node_type") == "array":
            names.append(os.path.relpath(dirpath, store).replace(os.sep, "/"))
    return sorted(names)


def _metadata_of_dir(dirpath: str) -> dict:
    with open(os.path.join(dirpath, "zarr.json")) as f:
        return json.load(f)


def _observation_arrays(store: str, sharded: bool) -> list[str]:
    return [
        n
        for n in _data_arrays(store)
        if n.startswith("data/observation/") and (_file_layout(store, n)[1] is not None) == sharded
    ]


def _state_array(store: str) -> str:
    """``data/observation/state``, else the first unsharded observation array."""
    names = _observation_arrays(store, sharded=False)
    if not names:
        raise ValueError(f"{store} has no unsharded observation array to damage")
    return "data/observation/state" if "data/observation/state" in names else names[0]


def _image_array(store: str) -> str:
    """``data/observation/image/front``, else the first sharded (image) observation array."""
    names = _observation_arrays(store, sharded=True)
    if not names:
        raise ValueError(f"{store} has no sharded (image) observation array: kinds {IMAGE_KINDS} do not apply")
    return "data/observation/image/front" if "data/observation/image/front" in names else names[0]


def applicable_kinds(store_path: str) -> tuple[str, ...]:
    """The damage kinds that apply to this store (the image kinds need an image observation)."""
    images = bool(_observation_arrays(os.fspath(store_path), sharded=True))
    return tuple(k for k in DAMAGE_KINDS if images or k not in IMAGE_KINDS)


def damage(store_path: str, kind: str, rng: np.random.Generator) -> dict:
    """Apply one kind of damage (see ``DAMAGE_KINDS``; ``applicable_kinds`` for this store) to the
    format-3 store at ``store_path``, which must hold at least one committed episode.

    Returns ``{"kind", "array", "file", "rows" (the damaged [start, stop) rows or None), "unrecoverable"
    (sorted indices of the committed episodes that can no longer be recovered)}``.
    """
    store = os.fspath(store_path)
    ends = _boundaries(store)
    steps, episodes = int(ends[-1]), len(ends)
    result = {"kind": kind, "array": None, "file": None, "rows": None, "unrecoverable": []}

    def lose_rows(lo: int, hi: int) -> None:
        hi = min(hi, steps)
        result["rows"] = [lo, hi]
        result["unrecoverable"] = _episodes_touching(ends, lo, hi)

    if kind in ("delete_state_chunk", "delete_image_shard", "flip_state_byte"):
        name = _image_array(store) if kind == "delete_image_shard" else _state_array(store)
        index, path, per_file, _ = _pick_file(store, name, steps, rng)
        if kind == "flip_state_byte":
            data = bytearray(open(path, "rb").read())
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
            open(path, "wb").write(bytes(data))
        else:
            os.remove(path)
        result.update(array=name, file=os.path.relpath(path, store))
        lose_rows(index * per_file, index * per_file + per_file)
    elif kind == "flip_image_byte":
        name = _image_array(store)
        index, path, per_file, inner = _pick_file(store, name, steps, rng)
        data = bytearray(open(path, "rb").read())
        n_inner = per_file // inner
        table = np.frombuffer(bytes(data[len(data) - (16 * n_inner + 4) : -4]), "<u8").reshape(n_inner, 2)
        committed = [j for j in range(n_inner) if index * per_file + j * inner < steps]
        j = int(rng.choice(committed))
        offset, length = (int(x) for x in table[j])
        data[offset + int(rng.integers(length))] ^= 1 << int(rng.integers(8))
        open(path, "wb").write(bytes(data))
        result.update(array=name, file=os.path.relpath(path, store))
        lo = index * per_file + j * inner
        lose_rows(lo, lo + inner)
    elif kind == "truncate_chunk":
        names = _data_arrays(store)
        name = names[int(rng.integers(len(names)))]
        index, path, per_file, _ = _pick_file(store, name, steps, rng)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(int(rng.integers(size)))
        result.update(array=name, file=os.path.relpath(path, store))
        lose_rows(index * per_file, index * per_file + per_file)
    elif kind == "delete_ends_chunk":
        index, path, _, _ = _pick_file(store, ENDS, episodes, rng)
        os.remove(path)
        result.update(array=ENDS, file=os.path.relpath(path, store))
    elif kind == "corrupt_array_json":
        names = _all_arrays(store)
        name = names[int(rng.integers(len(names)))]
        path = os.path.join(store, *name.split("/"), "zarr.json")
        text = open(path, "rb").read()
        open(path, "wb").write(text[: len(text) // 2])
        result.update(array=name, file=os.path.relpath(path, store))
    elif kind == "delete_root_json":
        os.remove(os.path.join(store, "zarr.json"))
        result.update(array="(root)", file="zarr.json")
    elif kind == "grow_index":
        arr = zarr.open_array(os.path.join(store, *ENDS.split("/")), mode="r+").with_config(
            {"write_empty_chunks": True}
        )
        arr.resize((episodes + 1,))
        arr[episodes] = steps + 7  # strictly increasing, readable, checksummed: but past every data array
        result.update(array=ENDS, file=f"{ENDS}/zarr.json")
    else:
        raise ValueError(f"unknown damage kind {kind!r}; choose from {DAMAGE_KINDS}")
    return result
