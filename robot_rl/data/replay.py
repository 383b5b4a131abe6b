"""In-memory replay buffers (torch tensors, ring storage) filled from env steps or zarr episode logs."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

Batch = dict[str, torch.Tensor | dict[str, torch.Tensor]]


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions stored as torch tensors on `device`.

    `obs_spec` maps observation keys to (shape, numpy dtype). Sampling gathers with one index
    tensor per field: no per-sample Python loop.
    """

    def __init__(self, obs_spec: Mapping[str, tuple[tuple[int, ...], np.dtype]], action_dim: int,
                 capacity: int, device: str | torch.device = "cpu"):
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs_spec = {k: (tuple(shape), np.dtype(dtype)) for k, (shape, dtype) in obs_spec.items()}

        def alloc(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
            return torch.zeros((self.capacity, *shape), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype,
                               device=self.device)

        self.observation = {k: alloc(s, d) for k, (s, d) in self.obs_spec.items()}
        self.next_observation = {k: alloc(s, d) for k, (s, d) in self.obs_spec.items()}
        self.action = alloc((action_dim,), np.dtype(np.float32))
        self.reward = alloc((), np.dtype(np.float32))
        self.terminated = alloc((), np.dtype(np.float32))
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, observation: Mapping[str, np.ndarray], action: np.ndarray, reward: float,
            next_observation: Mapping[str, np.ndarray], terminated: bool) -> None:
        """Store one transition (overwrites the oldest when full)."""
        i = self._next
        for k in self.observation:
            self.observation[k][i] = torch.as_tensor(observation[k])
            self.next_observation[k][i] = torch.as_tensor(next_observation[k])
        self.action[i] = torch.as_tensor(action)
        self.reward[i] = float(reward)
        self.terminated[i] = float(terminated)
        self._next = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def add_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Store many transitions given as flat arrays (the layout of `EpisodeLog.transitions()`)."""
        n = len(arrays["reward"])
        if n > self.capacity:
            raise ValueError(f"{n} transitions do not fit a replay buffer of capacity {self.capacity}: "
                             "raise the buffer capacity or load fewer episodes")
        idx = (self._next + torch.arange(n)) % self.capacity
        for k in self.observation:
            self.observation[k][idx] = torch.as_tensor(np.asarray(arrays[f"observation/{k}"])).to(self.device)
            self.next_observation[k][idx] = torch.as_tensor(np.asarray(arrays[f"next_observation/{k}"])).to(self.device)
        self.action[idx] = torch.as_tensor(np.asarray(arrays["action"], np.float32)).to(self.device)
        self.reward[idx] = torch.as_tensor(np.asarray(arrays["reward"], np.float32)).to(self.device)
        self.terminated[idx] = torch.as_tensor(np.asarray(arrays["terminated"], np.float32)).to(self.device)
        self._next = (self._next + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniformly sampled batch: observation/next_observation dicts, action, reward, terminated."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer: add transitions or demos first")
        idx = torch.randint(0, self._size, (batch_size,), generator=generator).to(self.device)
        return {
            "observation": {k: v.index_select(0, idx) for k, v in self.observation.items()},
            "next_observation": {k: v.index_select(0, idx) for k, v in self.next_observation.items()},
            "action": self.action.index_select(0, idx),
            "reward": self.reward.index_select(0, idx),
            "terminated": self.terminated.index_select(0, idx),
        }


def interleave_batches(a: Batch, b: Batch, blocks: int) -> Batch:
    """Rows of `a` and `b` split into `blocks` blocks each and interleaved: a0 b0 a1 b1 ..."""
    def merge(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.reshape(blocks, -1, *x.shape[1:]), y.reshape(blocks, -1, *y.shape[1:])
        return torch.cat([x, y], dim=1).reshape(-1, *x.shape[2:])
    return {k: interleave_batches(v, b[k], blocks) if isinstance(v, dict) else merge(v, b[k]) for k, v in a.items()}


def sample_symmetric(prior: ReplayBuffer, online: ReplayBuffer, batch_size: int,
                     generator: torch.Generator | None = None, blocks: int = 1) -> Batch:
    """RLPD's symmetric sampling: half the batch from demos/interventions, half from online data,
    arranged as `blocks` consecutive blocks that are each half and half (one block per critic update
    of a UTD batch, so that no update sees only one kind of data).

    Falls back to whichever buffer has data while the other is empty.
    """
    if len(online) == 0 or len(prior) == 0:
        return (prior if len(online) == 0 else online).sample(batch_size, generator)
    if batch_size % (2 * blocks):
        raise ValueError(f"batch of {batch_size} rows cannot be split into {blocks} half-and-half blocks: "
                         "use an even agent.batch_size")
    half = batch_size // 2
    return interleave_batches(prior.sample(half, generator), online.sample(half, generator), blocks)
