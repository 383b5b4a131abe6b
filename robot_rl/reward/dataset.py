"""Labelled camera frames from a zarr episode log, the split by episode, and class-balanced batches.

A labelled store is an ordinary episode log (`robot-rl record-labels` writes one; any run's log with
images works too). Step t's `success` flag labels the frame the step produced, i.e. the images of its
next observation: `observation/<key>[t + 1]` inside an episode and `meta/last_observation/<key>[e]`
for an episode's last step. In sim the flag is the task's ground truth; on a real robot it comes from
a person's button.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.data.episode_log import STORE_NAME, EpisodeLog, EpisodeLogError

IMAGE_PREFIX = "image/"


def store_path(path: str | os.PathLike) -> Path:
    """A store given as the store itself or as a directory holding episodes.zarr."""
    p = Path(path)
    return p / STORE_NAME if p.suffix != ".zarr" and (p / STORE_NAME).exists() else p


def open_labelled_store(path: str | os.PathLike) -> EpisodeLog:
    """The episode log at `path` (or `path`/episodes.zarr); one-line errors when missing or empty."""
    p = store_path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"no labelled store at {path}: record one with `robot-rl record-labels task=pick_cube_vision out=<dir>`"
        )
    log = EpisodeLog(p)
    if log.num_episodes == 0:
        raise EpisodeLogError(f"labelled store {p} holds no episodes: record some with `robot-rl record-labels`")
    return log


def image_shapes(log: EpisodeLog, cameras: list[str] | None = None) -> dict[str, tuple[int, int, int]]:
    """`{observation key: (H, W, 3)}` of the chosen cameras (all image keys when None), in that order."""
    available = {
        k: s
        for k, (s, d) in log.obs_spec.items()
        if k.startswith(IMAGE_PREFIX) and len(s) == 3 and s[2] == 3 and d == np.uint8
    }
    if not available:
        raise ValueError(
            f"store {log.path} has no image observations (keys: {', '.join(log.obs_spec)}): "
            "record it with a camera task, e.g. task=pick_cube_vision"
        )
    if cameras is None:
        return dict(sorted(available.items()))
    keys = [c if c.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + c for c in cameras]
    unknown = [k for k in keys if k not in available]
    if unknown or not keys:
        names = ", ".join(k[len(IMAGE_PREFIX) :] for k in sorted(available))
        raise ValueError(
            f"unknown camera {unknown[0][len(IMAGE_PREFIX) :] if unknown else '(none given)'} "
            f"in {log.path}: choose from {names} (cameras=[...] or null for all)"
        )
    return {k: available[k] for k in keys}


@dataclass
class FrameIndex:
    """Per labelled frame (one per committed step): its label, episode and where its images are."""

    labels: np.ndarray  # bool[N]: success flag of the step that produced the frame
    episodes: np.ndarray  # int64[N]: episode row in the store's meta arrays
    steps: np.ndarray  # int64[N]: global step index t (the frame is the next observation of step t)
    is_last: np.ndarray  # bool[N]: step t is its episode's last (frame in meta/last_observation)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> FrameIndex:
        return FrameIndex(self.labels[rows], self.episodes[rows], self.steps[rows], self.is_last[rows])


def frame_index(log: EpisodeLog) -> FrameIndex:
    """Every labelled frame of the store's committed episodes (reads labels only, no images)."""
    ends = log.episode_ends
    lengths = np.diff(np.concatenate([[0], ends]))
    labels = np.asarray(log.read("success"), bool)
    episodes = np.repeat(np.arange(len(ends)), lengths)
    is_last = np.zeros(len(labels), bool)
    is_last[ends - 1] = True
    return FrameIndex(labels, episodes, np.arange(len(labels), dtype=np.int64), is_last)


def every_kth(index: FrameIndex, every: int, rng: np.random.Generator | None = None) -> FrameIndex:
    """Every `every`-th frame of each episode, from its first frame, or from a random one of its first
    `every` frames (drawn per episode) when `rng` is given. Every episode keeps at least one frame."""
    if every < 1:
        raise ValueError(f"every={every} must be a positive integer")
    if every == 1:
        return index
    starts = np.r_[0, np.flatnonzero(index.is_last)[:-1] + 1]
    lengths = np.diff(np.r_[starts, len(index)])
    offsets = np.zeros(len(starts), np.int64) if rng is None else rng.integers(0, np.minimum(every, lengths))
    position = np.arange(len(index)) - np.repeat(starts, lengths)
    return index.subset(np.flatnonzero((position - np.repeat(offsets, lengths)) % every == 0))


def read_images(log: EpisodeLog, index: FrameIndex, keys: list[str], chunk: int = 512) -> dict[str, np.ndarray]:
    """The images `{key: uint8[N, H, W, 3]}` of the indexed frames, read frame by frame from the store
    (checked reads: a missing or damaged chunk is an EpisodeLogError, never zeros)."""
    out: dict[str, np.ndarray] = {}
    inner = np.flatnonzero(~index.is_last)
    last = np.flatnonzero(index.is_last)
    for key in keys:
        shape = log.obs_spec[key][0]
        images = np.empty((len(index), *shape), np.uint8)
        sources = (
            (inner, f"observation/{key}", index.steps[inner] + 1),
            (last, f"meta/last_observation/{key}", index.episodes[last]),
        )
        for rows, name, where in sources:
            for s in range(0, len(rows), chunk):
                sel = where[s : s + chunk]
                if len(sel):
                    images[rows[s : s + chunk]] = log.read(name, sel)
        out[key] = images
    return out


def split_by_episode(
    episode_success: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train episodes, validation episodes): a random split of episode indices, stratified by whether
    the episode has any success frame, with at least one episode on each side."""
    episode_success = np.asarray(episode_success, bool)
    n = len(episode_success)
    if n < 2:
        raise ValueError(f"the store holds {n} episode(s); a split by episode needs at least 2: record more")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
    val: list[np.ndarray] = []
    for group in (np.flatnonzero(episode_success), np.flatnonzero(~episode_success)):
        if len(group) == 0:
            continue
        # each kind gets its share; a kind with 2+ episodes puts at least one in each side
        k = int(round(val_fraction * len(group)))
        k = min(max(k, 1), len(group) - 1) if len(group) >= 2 else 0
        val.append(rng.permutation(group)[:k])
    val_eps = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    if len(val_eps) == 0:  # no kind has 2 episodes: validate on a random one
        val_eps = np.array([int(rng.integers(n))])
    train_eps = np.setdiff1d(np.arange(n), val_eps)
    return train_eps, val_eps


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """`min(n, k)` indices spread evenly over range(n)."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


class BalancedSampler:
    """Minibatch indices with half positives and half negatives (the odd one a random class),
    each drawn uniformly with replacement from its class."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator) -> None:
        labels = np.asarray(labels, bool)
        self.positives, self.negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
        if len(self.positives) == 0 or len(self.negatives) == 0:
            raise ValueError("class-balanced batches need both success and failure frames")
        self.rng = rng

    def sample(self, batch_size: int) -> np.ndarray:
        n_pos = batch_size // 2 + (int(self.rng.integers(2)) if batch_size % 2 else 0)
        batch = np.concatenate(
            [self.rng.choice(self.positives, n_pos), self.rng.choice(self.negatives, batch_size - n_pos)]
        )
        return self.rng.permutation(batch)
