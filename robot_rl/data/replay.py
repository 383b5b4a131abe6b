"""In-memory replay buffers (torch tensors, ring storage) filled from env steps or zarr episode logs.

State keys (anything that is not an image) store the observation and the next observation of every
transition. Image keys (uint8 arrays with 3 dims, e.g. ``image/front`` u8[H, W, 3]) are stored once
per frame in a separate ring of frame rows; a transition holds the frame id of its observation and of
its next observation, so consecutive transitions share the frame between them.

Frame sharing rule: ``add`` writes its next observation to a new frame row, and reuses the previous
add's next-observation row for its observation when the previous add was not ``done`` and, for every
image key, the two arrays hold the same bytes (compared against a copy taken at the previous add, so
an env that reuses its output arrays cannot fool it); otherwise it writes the observation to a new row
too. ``add_arrays`` applies the same rule row by row inside each episode (episodes split by
``episode_index`` and ``done``) and writes each episode's first observation to a new row.

Eviction (FIFO, both rings): frame ids grow monotonically and a transition's observation frame id is
never larger than its next frame id nor than any later transition's observation frame id. Writing frame
id ``f`` overwrites id ``f - frame_capacity``, so before writing it the oldest transitions whose
observation frame id is ``<= f - frame_capacity`` are dropped; they are exactly the transitions that
reference an overwritten frame, so a sampled transition never sees a stale frame. Adding a transition to
a full buffer drops the oldest one, as before. A stream of long episodes needs one frame per transition
plus one per episode, which ``frame_capacity`` (default ``capacity * (1 + frame_margin) + 1``) covers;
with shorter episodes frames run out first and the buffer holds somewhat fewer than ``capacity``
transitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

Batch = dict[str, torch.Tensor | dict[str, torch.Tensor]]


def is_image_spec(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether an observation entry is stored as shared frames: uint8 with 3 dims (H, W, C)."""
    return len(shape) == 3 and np.dtype(dtype) == np.uint8


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def wide_rows(x: torch.Tensor) -> torch.Tensor:
    """A [rows, n] view of contiguous `x` with the widest integer dtype that divides a row's bytes.

    Frames are copied and gathered through this view: torch's CPU index_select on uint8 is ~1000x
    slower than on int64 (3 s vs 0.4 ms for 256 frames of 128x128x3), and a one-frame copy of
    6,144 int64s stays under torch's parallel grain size, so it never wakes the intra-op thread pool.
    """
    row_bytes = x[0].numel() * x.element_size() if len(x) else 0
    for wide in (torch.int64, torch.int32, torch.int16):
        if row_bytes % torch.empty(0, dtype=wide).element_size() == 0:
            return x.view(len(x), -1).view(wide)
    return x.view(len(x), -1)


class ReplayBuffer:
    """Fixed-capacity FIFO buffer of transitions stored as torch tensors on `device`.

    `obs_spec` maps observation keys to (shape, numpy dtype). Sampling gathers with one
    `index_select` per stored array: no per-sample Python loop. Images come back as uint8
    [B, H, W, C] (channels last, not converted to float).
    """

    def __init__(
        self,
        obs_spec: Mapping[str, tuple[tuple[int, ...], np.dtype]],
        action_dim: int,
        capacity: int,
        device: str | torch.device = "cpu",
        frame_margin: float = 0.05,
        frame_capacity: int | None = None,
    ):
        """`frame_margin`: spare frame rows as a fraction of `capacity` (the first frame of each episode
        needs one); `frame_capacity` overrides the number of frame rows (at least 2)."""
        self.capacity = int(capacity)
        if self.capacity < 1:
            raise ValueError(f"replay capacity must be at least 1, got {capacity}")
        self.device = torch.device(device)
        self.obs_spec = {k: (tuple(shape), np.dtype(dtype)) for k, (shape, dtype) in obs_spec.items()}
        self.image_keys = [k for k, (s, d) in self.obs_spec.items() if is_image_spec(s, d)]
        self.state_keys = [k for k in self.obs_spec if k not in self.image_keys]

        def alloc(rows: int, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
            return torch.zeros((rows, *shape), dtype=_torch_dtype(dtype), device=self.device)

        c = self.capacity
        self.observation = {k: alloc(c, *self.obs_spec[k]) for k in self.state_keys}
        self.next_observation = {k: alloc(c, *self.obs_spec[k]) for k in self.state_keys}
        self.action = alloc(c, (action_dim,), np.dtype(np.float32))
        self.reward = alloc(c, (), np.dtype(np.float32))
        self.terminated = alloc(c, (), np.dtype(np.float32))
        self.grasp_penalty = alloc(c, (), np.dtype(np.float32))

        if self.image_keys:
            if frame_capacity is None:
                frame_capacity = c + math.ceil(c * frame_margin) + 1
            self.frame_capacity = int(frame_capacity)
            if self.frame_capacity < 2:
                raise ValueError(
                    f"frame_capacity must be at least 2 (a transition has two frames), got {frame_capacity}"
                )
        else:
            self.frame_capacity = 0
        self.frames = {k: alloc(self.frame_capacity, *self.obs_spec[k]) for k in self.image_keys}
        self._wide_frames = {k: wide_rows(v) for k, v in self.frames.items()}  # same storage
        self.obs_frame = torch.zeros(c, dtype=torch.long, device=self.device)  # frame row per transition
        self.next_frame = torch.zeros(c, dtype=torch.long, device=self.device)
        self._obs_frame_id = np.zeros(c, np.int64)  # host copy of the observation frame ids, for eviction

        self._head = 0  # slot of the oldest transition
        self._size = 0
        self._frames_written = 0  # next frame id; row = id % frame_capacity
        self._last_next_id = -1  # frame id of the previous add's next observation
        self._last_next: dict[str, np.ndarray] | None = None  # its bytes, for the sharing check
        self._last_done = True

    def __len__(self) -> int:
        return self._size

    @property
    def frames_written(self) -> int:
        """Image frames written since creation (per image key); 0 for a state-only buffer."""
        return self._frames_written

    @property
    def bytes_per_transition(self) -> float:
        """Allocated bytes of every stored tensor divided by `capacity`."""
        tensors = [
            *self.observation.values(),
            *self.next_observation.values(),
            *self.frames.values(),
            self.action,
            self.reward,
            self.terminated,
            self.grasp_penalty,
            self.obs_frame,
            self.next_frame,
        ]
        total = sum(t.numel() * t.element_size() for t in tensors) + self._obs_frame_id.nbytes
        return total / self.capacity

    # ------------------------------------------------------------------ adding
    def add(
        self,
        observation: Mapping[str, np.ndarray],
        action: np.ndarray,
        reward: float,
        next_observation: Mapping[str, np.ndarray],
        terminated: bool,
        done: bool = False,
        grasp_penalty: float = 0.0,
    ) -> None:
        """Store one transition (drops the oldest when full). `done` = terminated or truncated: the
        next add starts a new episode, so its observation is not compared with this next observation."""
        frames: dict[str, list[np.ndarray]] = {k: [] for k in self.image_keys}
        if self.image_keys:
            shared = (
                not self._last_done
                and self._last_next is not None
                and all(np.array_equal(observation[k], self._last_next[k]) for k in self.image_keys)
            )
            if not shared:
                for k in self.image_keys:
                    frames[k].append(np.asarray(observation[k]))
            for k in self.image_keys:
                frames[k].append(np.asarray(next_observation[k]))
            first = self._frames_written
            obs_id = np.array([self._last_next_id if shared else first], np.int64)
            next_id = np.array([first + len(frames[self.image_keys[0]]) - 1], np.int64)
            self._last_next = {k: np.array(next_observation[k], copy=True) for k in self.image_keys}
        else:
            obs_id = next_id = np.zeros(1, np.int64)
        self._write(
            {k: np.stack(v) for k, v in frames.items()},
            obs_id,
            next_id,
            {k: np.asarray(observation[k])[None] for k in self.state_keys},
            {k: np.asarray(next_observation[k])[None] for k in self.state_keys},
            np.asarray(action, np.float32)[None],
            np.array([reward], np.float32),
            np.array([terminated], np.float32),
            np.array([grasp_penalty], np.float32),
        )
        self._last_done = bool(done)

    def add_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Store many transitions given as flat arrays (the layout of `EpisodeLog.transitions()`:
        ``observation/<key>``, ``next_observation/<key>``, ``action``, ``reward``, ``terminated`` and,
        when present, ``done``, ``episode_index``, ``grasp_penalty``). Images are written episode by
        episode, each frame once (the observations plus the episode's final next observation)."""
        n = len(arrays["reward"])
        if n > self.capacity:
            raise ValueError(
                f"{n} transitions do not fit a replay buffer of capacity {self.capacity}: "
                "raise the buffer capacity or load fewer episodes"
            )
        if n == 0:
            return
        done = np.asarray(arrays["done"], bool) if "done" in arrays else np.zeros(n, bool)
        starts = np.zeros(n, bool)
        starts[0] = True
        starts[1:] = done[:-1]
        if "episode_index" in arrays:
            episode = np.asarray(arrays["episode_index"])
            starts[1:] |= episode[1:] != episode[:-1]
        if not self.image_keys:  # state only: one write, no episode split needed
            starts[:] = False
            starts[0] = True
        bounds = [*np.flatnonzero(starts), n]
        penalty = arrays.get("grasp_penalty")
        for a, b in zip(bounds[:-1], bounds[1:]):
            self._add_episode(arrays, a, b, np.zeros(b - a, np.float32) if penalty is None else penalty[a:b])
        self._last_done = True  # the next add starts its own frames

    def _add_episode(self, arrays: Mapping[str, np.ndarray], a: int, b: int, penalty: np.ndarray) -> None:
        """Write rows [a, b) of `arrays` (one episode, or all rows for a state-only buffer)."""
        n = b - a
        frames: dict[str, np.ndarray] = {}
        obs_id = next_id = np.zeros(n, np.int64)
        if self.image_keys:
            obs = {k: np.asarray(arrays[f"observation/{k}"][a:b]) for k in self.image_keys}
            nxt = {k: np.asarray(arrays[f"next_observation/{k}"][a:b]) for k in self.image_keys}
            # shared[t]: observation t is the previous row's next observation (same bytes, every key)
            shared = np.zeros(n, bool)
            if n > 1:
                shared[1:] = True
                for k in self.image_keys:
                    shared[1:] &= (obs[k][1:] == nxt[k][:-1]).reshape(n - 1, -1).all(axis=1)
            # frame order: [obs_t unless shared[t], next_t] for t = 0..n-1
            new_obs = ~shared
            count = new_obs.astype(np.int64) + 1  # frames written per row
            end = np.cumsum(count)  # exclusive local end of each row's frames
            next_local = end - 1
            obs_local = np.where(new_obs, end - 2, np.concatenate([[0], next_local[:-1]]))
            first = self._frames_written
            obs_id, next_id = first + obs_local, first + next_local
            for k in self.image_keys:
                out = np.empty((int(end[-1]), *obs[k].shape[1:]), obs[k].dtype)
                out[next_local] = nxt[k]
                out[obs_local[new_obs]] = obs[k][new_obs]
                frames[k] = out
        self._write(
            frames,
            obs_id,
            next_id,
            {k: np.asarray(arrays[f"observation/{k}"][a:b]) for k in self.state_keys},
            {k: np.asarray(arrays[f"next_observation/{k}"][a:b]) for k in self.state_keys},
            np.asarray(arrays["action"][a:b], np.float32),
            np.asarray(arrays["reward"][a:b], np.float32),
            np.asarray(arrays["terminated"][a:b], np.float32),
            np.asarray(penalty, np.float32),
        )

    def _drop_oldest(self, count: int) -> None:
        count = max(0, min(count, self._size))
        self._head = (self._head + count) % self.capacity
        self._size -= count

    def _write(
        self,
        frames: Mapping[str, np.ndarray],
        obs_id: np.ndarray,
        next_id: np.ndarray,
        obs_state: Mapping[str, np.ndarray],
        next_state: Mapping[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        grasp_penalty: np.ndarray,
    ) -> None:
        """Append `len(reward)` transitions and their new frames (ids `_frames_written` onwards)."""
        n = len(reward)
        if self.image_keys:
            m = len(frames[self.image_keys[0]])
            if m > self.frame_capacity:
                raise ValueError(
                    f"an episode of {m} frames does not fit {self.frame_capacity} frame rows: "
                    "raise the replay buffer capacity"
                )
            # drop the transitions whose frames the new frames overwrite (FIFO: they are the oldest)
            oldest_kept = self._frames_written + m - self.frame_capacity
            dropped = 0
            while dropped < self._size and self._obs_frame_id[(self._head + dropped) % self.capacity] < oldest_kept:
                dropped += 1
            self._drop_oldest(dropped)
            # the new rows are contiguous in the ring: at most two slice copies per key
            start = self._frames_written % self.frame_capacity
            first = min(m, self.frame_capacity - start)
            for k in self.image_keys:
                src = wide_rows(torch.from_numpy(np.ascontiguousarray(frames[k])).to(self.device))
                self._wide_frames[k][start : start + first].copy_(src[:first])
                self._wide_frames[k][: m - first].copy_(src[first:])
            self._frames_written += m
            self._last_next_id = int(next_id[-1])
        self._drop_oldest(self._size + n - self.capacity)
        slots_np = (self._head + self._size + np.arange(n)) % self.capacity
        slots = torch.from_numpy(slots_np).to(self.device)

        def put(dst: torch.Tensor, src: np.ndarray) -> None:
            dst.index_copy_(0, slots, torch.as_tensor(np.ascontiguousarray(src), dtype=dst.dtype).to(self.device))

        for k in self.state_keys:
            put(self.observation[k], obs_state[k])
            put(self.next_observation[k], next_state[k])
        put(self.action, action)
        put(self.reward, reward)
        put(self.terminated, terminated)
        put(self.grasp_penalty, grasp_penalty)
        if self.image_keys:
            self._obs_frame_id[slots_np] = obs_id
            put(self.obs_frame, obs_id % self.frame_capacity)
            put(self.next_frame, next_id % self.frame_capacity)
        self._size += n

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniformly sampled batch: observation/next_observation dicts, action, reward, terminated,
        grasp_penalty. Indices are drawn on the generator's device (else the buffer's) and gathered
        on the buffer's device."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer: add transitions or demos first")
        device = generator.device if generator is not None else self.device
        offset = torch.randint(0, self._size, (batch_size,), generator=generator, device=device).to(self.device)
        idx = (offset + self._head) % self.capacity
        observation = {k: v.index_select(0, idx) for k, v in self.observation.items()}
        next_observation = {k: v.index_select(0, idx) for k, v in self.next_observation.items()}
        if self.image_keys:
            obs_rows = self.obs_frame.index_select(0, idx)
            next_rows = self.next_frame.index_select(0, idx)
            for k in self.image_keys:
                shape, dtype = (batch_size, *self.frames[k].shape[1:]), self.frames[k].dtype
                observation[k] = self._wide_frames[k].index_select(0, obs_rows).view(dtype).view(shape)
                next_observation[k] = self._wide_frames[k].index_select(0, next_rows).view(dtype).view(shape)
        return {
            "observation": observation,
            "next_observation": next_observation,
            "action": self.action.index_select(0, idx),
            "reward": self.reward.index_select(0, idx),
            "terminated": self.terminated.index_select(0, idx),
            "grasp_penalty": self.grasp_penalty.index_select(0, idx),
        }


def interleave_batches(a: Batch, b: Batch, blocks: int) -> Batch:
    """Rows of `a` and `b` split into `blocks` blocks each and interleaved: a0 b0 a1 b1 ..."""

    def merge(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.reshape(blocks, -1, *x.shape[1:]), y.reshape(blocks, -1, *y.shape[1:])
        return torch.cat([x, y], dim=1).reshape(-1, *x.shape[2:])

    return {k: interleave_batches(v, b[k], blocks) if isinstance(v, dict) else merge(v, b[k]) for k, v in a.items()}


def sample_symmetric(
    prior: ReplayBuffer,
    online: ReplayBuffer,
    batch_size: int,
    generator: torch.Generator | None = None,
    blocks: int = 1,
) -> Batch:
    """RLPD's symmetric sampling: half the batch from demos/interventions, half from online data,
    arranged as `blocks` consecutive blocks that are each half and half (one block per critic update
    of a UTD batch, so that no update sees only one kind of data).

    Falls back to whichever buffer has data while the other is empty.
    """
    if len(online) == 0 or len(prior) == 0:
        return (prior if len(online) == 0 else online).sample(batch_size, generator)
    if batch_size % (2 * blocks):
        raise ValueError(
            f"batch of {batch_size} rows cannot be split into {blocks} half-and-half blocks: "
            "use an even agent.batch_size"
        )
    half = batch_size // 2
    return interleave_batches(prior.sample(half, generator), online.sample(half, generator), blocks)
