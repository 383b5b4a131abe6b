"""ReplayBuffer: state-only behaviour, image frames shared between observation and next observation,
episode boundaries, FIFO eviction without stale frames, memory per transition, loading episode logs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from robot_rl.data import EpisodeLog, EpisodeLogWriter, EpisodeSource, Transition
from robot_rl.data.replay import ReplayBuffer, sample_symmetric

IMAGE = (4, 5, 3)
SPEC = {"state": ((2,), np.float32), "image/front": (IMAGE, np.uint8), "image/wrist": (IMAGE, np.uint8)}


def frame_obs(episode: int, step: int) -> dict[str, np.ndarray]:
    """An observation whose images encode (episode, step); "state" holds the same two numbers, and is
    stored per transition, so a sampled image can be checked against its own transition's state."""
    front = np.zeros(IMAGE, np.uint8)
    front[..., 0], front[..., 1], front[..., 2] = episode % 256, step % 256, step // 256
    wrist = front.copy()
    wrist[0, 0, 0] = 255 - wrist[0, 0, 0]  # the two cameras differ
    return {"state": np.array([episode, step], np.float32), "image/front": front, "image/wrist": wrist}


def decode(images: torch.Tensor) -> torch.Tensor:
    """(episode, step) of each image in a uint8 [B, H, W, 3] batch, as float [B, 2]."""
    px = images[:, 1, 1].long()
    return torch.stack([px[:, 0], px[:, 1] + 256 * px[:, 2]], dim=1).float()


def run_episode(buf: ReplayBuffer, episode: int, length: int, end: str, penalty: float = 0.0) -> None:
    """Add `length` steps; `end` = "terminated", "truncated" or "abandoned" (last add not done)."""
    obs = frame_obs(episode, 0)
    for t in range(length):
        nxt = frame_obs(episode, t + 1)
        last = t == length - 1
        terminated = last and end == "terminated"
        done = last and end in ("terminated", "truncated")
        buf.add(
            obs, np.array([episode, t, 0.0], np.float32), float(t), nxt, terminated, done=done, grasp_penalty=penalty
        )
        obs = nxt


def check_consistent(buf: ReplayBuffer, batch: int = 2048, seed: int = 0) -> dict:
    """Sample and check every row: images match the row's own state, next = obs one step later."""
    b = buf.sample(batch, torch.Generator().manual_seed(seed))
    obs, nxt = b["observation"], b["next_observation"]
    for key in ("image/front", "image/wrist"):
        assert obs[key].dtype == torch.uint8 and obs[key].shape == (batch, *IMAGE)
        assert torch.equal(decode(obs[key]), obs["state"]), key
        assert torch.equal(decode(nxt[key]), nxt["state"]), key
    assert torch.equal(nxt["state"][:, 0], obs["state"][:, 0])  # same episode
    assert torch.equal(nxt["state"][:, 1], obs["state"][:, 1] + 1)  # one step later
    assert torch.equal(b["action"][:, :2], obs["state"])  # rows stay aligned across fields
    assert (obs["image/wrist"][:, 0, 0, 0] == 255 - obs["image/front"][:, 0, 0, 0]).all()
    return b


# ------------------------------------------------------------------ state-only behaviour


def test_state_only_ring_and_fields() -> None:
    buf = ReplayBuffer({"state": ((2,), np.float32)}, 1, capacity=5)
    assert buf.image_keys == [] and buf.frames_written == 0
    for i in range(8):
        buf.add({"state": np.full(2, i)}, np.full(1, i), float(i), {"state": np.full(2, i + 1)}, i % 3 == 0)
    assert len(buf) == 5
    b = buf.sample(200, torch.Generator().manual_seed(1))
    assert set(b) == {"observation", "next_observation", "action", "reward", "terminated", "grasp_penalty"}
    i = b["reward"]
    assert set(i.tolist()) == {3.0, 4.0, 5.0, 6.0, 7.0}  # the oldest were overwritten, all newest sampled
    assert torch.equal(b["observation"]["state"][:, 0], i) and torch.equal(b["next_observation"]["state"][:, 1], i + 1)
    assert torch.equal(b["action"][:, 0], i)
    assert torch.equal(b["terminated"], (i % 3 == 0).float())
    assert (b["grasp_penalty"] == 0).all()
    assert buf.bytes_per_transition == pytest.approx((2 + 2 + 1 + 1 + 1 + 1) * 4 + 2 * 8 + 8)


def test_state_only_add_arrays_matches_add() -> None:
    spec = {"state": ((3,), np.float32)}
    rng = np.random.default_rng(0)
    n = 7
    arrays = {
        "observation/state": rng.normal(size=(n, 3)).astype(np.float32),
        "next_observation/state": rng.normal(size=(n, 3)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "terminated": rng.random(n) < 0.5,
        "grasp_penalty": -rng.random(n).astype(np.float32),
    }
    a, b = ReplayBuffer(spec, 2, 10), ReplayBuffer(spec, 2, 10)
    a.add_arrays(arrays)
    for t in range(n):
        b.add(
            {"state": arrays["observation/state"][t]},
            arrays["action"][t],
            arrays["reward"][t],
            {"state": arrays["next_observation/state"][t]},
            arrays["terminated"][t],
            grasp_penalty=arrays["grasp_penalty"][t],
        )
    for name in ("action", "reward", "terminated", "grasp_penalty"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.observation["state"], b.observation["state"])
    assert torch.equal(a.next_observation["state"], b.next_observation["state"])
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(a.sample(16, ga)["grasp_penalty"], b.sample(16, gb)["grasp_penalty"])
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(spec, 2, 5).add_arrays(arrays)


# ------------------------------------------------------------------ images: sharing and boundaries


def test_frames_shared_and_correct_at_episode_boundaries() -> None:
    buf = ReplayBuffer(SPEC, 3, capacity=100)
    run_episode(buf, 1, 6, "terminated")
    assert buf.frames_written == 7  # 6 observations + the final next observation, each stored once
    run_episode(buf, 2, 4, "truncated")
    assert buf.frames_written == 12
    run_episode(buf, 3, 3, "abandoned")  # e.g. an operator aborted it: the last add is not done
    assert buf.frames_written == 16
    run_episode(buf, 4, 5, "terminated")
    assert buf.frames_written == 22
    assert len(buf) == 18
    b = check_consistent(buf)
    seen = {tuple(map(int, row)) for row in b["observation"]["state"].tolist()}
    expected = {(e, t) for e, n in ((1, 6), (2, 4), (3, 3), (4, 5)) for t in range(n)}
    assert seen == expected
    # terminated only on the last step of the terminated episodes; truncation is not termination
    term = {tuple(map(int, s)) for s, d in zip(b["observation"]["state"].tolist(), b["terminated"].tolist()) if d}
    assert term == {(1, 5), (4, 4)}


def test_equal_bytes_are_shared_even_without_identity() -> None:
    """A caller that copies observations (e.g. ROS transport) still shares frames; a new episode whose
    first frame differs gets a new row even when the previous add was not marked done."""
    buf = ReplayBuffer(SPEC, 3, capacity=10)
    copy = lambda o: {k: v.copy() for k, v in o.items()}  # noqa: E731
    for t in range(3):
        buf.add(copy(frame_obs(0, t)), np.array([0, t, 0], np.float32), 0.0, copy(frame_obs(0, t + 1)), False)
    assert buf.frames_written == 4
    buf.add(frame_obs(1, 0), np.array([1, 0, 0], np.float32), 0.0, frame_obs(1, 1), False)  # done not passed
    assert buf.frames_written == 6
    check_consistent(buf)


def test_done_forces_a_new_frame() -> None:
    """After a done step the next observation is never reused, even if its bytes are equal."""
    buf = ReplayBuffer(SPEC, 3, capacity=10)
    buf.add(frame_obs(0, 0), np.zeros(3, np.float32), 0.0, frame_obs(0, 1), True, done=True)
    buf.add(frame_obs(0, 1), np.array([0, 1, 0], np.float32), 0.0, frame_obs(0, 2), False)
    assert buf.frames_written == 4
    check_consistent(buf)


@pytest.mark.parametrize("frame_capacity", [None, 12])
def test_eviction_never_yields_stale_frames(frame_capacity) -> None:
    capacity = 40
    buf = ReplayBuffer(SPEC, 3, capacity=capacity, frame_capacity=frame_capacity)
    rng = np.random.default_rng(0)
    added: list[tuple[int, int]] = []
    for episode in range(1, 120):
        length = int(rng.integers(1, 16))
        end = ("terminated", "truncated", "abandoned")[episode % 3]
        run_episode(buf, episode, length, end)
        added += [(episode, t) for t in range(length)]
        assert len(buf) <= capacity
        if episode % 7 == 0:
            b = check_consistent(buf, batch=1024, seed=episode)
            seen = {tuple(map(int, row)) for row in b["observation"]["state"].tolist()}
            assert seen <= set(added[-len(buf) :])  # FIFO: only the newest transitions survive
            assert len(seen) > 0.9 * len(buf)  # and all of them are sampled (uniformly)
    if frame_capacity is None:
        assert len(buf) >= capacity - 16  # frames run out first only by up to an episode's worth
    else:
        assert len(buf) <= frame_capacity - 1  # fewer frame rows than transitions: frames bound it


def test_long_episodes_fill_the_whole_capacity() -> None:
    buf = ReplayBuffer(SPEC, 3, capacity=200)
    for episode in range(6):
        run_episode(buf, episode, 100, "truncated")
        if episode:
            assert len(buf) == 200
    check_consistent(buf)


def test_memory_per_transition_two_128px_cameras() -> None:
    raw = 2 * 128 * 128 * 3
    spec = {
        "state": ((7,), np.float32),
        "image/front": ((128, 128, 3), np.uint8),
        "image/wrist": ((128, 128, 3), np.uint8),
    }
    buf = ReplayBuffer(spec, 4, capacity=2000)
    assert raw <= buf.bytes_per_transition <= 1.10 * raw
    assert buf.frame_capacity >= buf.capacity + 1


def test_grasp_penalty_is_stored() -> None:
    buf = ReplayBuffer(SPEC, 3, capacity=20)
    run_episode(buf, 1, 5, "terminated", penalty=-0.02)
    run_episode(buf, 2, 5, "terminated", penalty=0.0)
    b = check_consistent(buf)
    expected = torch.where(b["observation"]["state"][:, 0] == 1, -0.02, 0.0)
    assert torch.allclose(b["grasp_penalty"], expected)


def test_symmetric_sampling_with_images() -> None:
    prior, online = ReplayBuffer(SPEC, 3, 50), ReplayBuffer(SPEC, 3, 50)
    run_episode(prior, 1, 10, "terminated")
    run_episode(online, 2, 10, "truncated")
    b = sample_symmetric(prior, online, 4 * 8, torch.Generator().manual_seed(0), blocks=4)
    episodes = decode(b["observation"]["image/front"])[:, 0].reshape(4, 8)
    assert (episodes[:, :4] == 1).all() and (episodes[:, 4:] == 2).all()
    assert torch.equal(decode(b["next_observation"]["image/front"]), b["next_observation"]["state"])


# ------------------------------------------------------------------ loading an episode log


def write_log(path) -> None:
    writer = EpisodeLogWriter(path, SPEC, 3)
    plan = [(1, 6, "terminated"), (2, 4, "truncated"), (3, 1, "terminated"), (4, 5, "truncated")]
    for episode, length, end in plan:
        for t in range(length):
            last = t == length - 1
            writer.add(
                Transition(
                    observation=frame_obs(episode, t),
                    action=np.array([episode, t, 0.5], np.float32),
                    reward=float(t),
                    terminated=last and end == "terminated",
                    truncated=last and end == "truncated",
                    next_observation=frame_obs(episode, t + 1),
                    policy_action=np.zeros(3, np.float32),
                    grasp_penalty=-0.02 * (t % 2),
                )
            )
        writer.end_episode(EpisodeSource.DEMO)
    writer.close()


def test_add_arrays_from_episode_log_equals_step_by_step(tmp_path) -> None:
    path = tmp_path / "episodes.zarr"
    write_log(path)
    arrays = EpisodeLog(path).transitions()
    n = len(arrays["reward"])
    loaded = ReplayBuffer(SPEC, 3, capacity=30)
    loaded.add_arrays(arrays)
    stepped = ReplayBuffer(SPEC, 3, capacity=30)
    for t in range(n):
        stepped.add(
            {k: arrays[f"observation/{k}"][t] for k in SPEC},
            arrays["action"][t],
            arrays["reward"][t],
            {k: arrays[f"next_observation/{k}"][t] for k in SPEC},
            arrays["terminated"][t],
            done=bool(arrays["done"][t]),
            grasp_penalty=arrays["grasp_penalty"][t],
        )
    assert len(loaded) == len(stepped) == n == 16
    assert loaded.frames_written == stepped.frames_written == n + 4  # one extra frame per episode
    for name in ("action", "reward", "terminated", "grasp_penalty", "obs_frame", "next_frame"):
        assert torch.equal(getattr(loaded, name), getattr(stepped, name)), name
    for key in SPEC:
        store = loaded.frames if key.startswith("image/") else loaded.observation
        other = stepped.frames if key.startswith("image/") else stepped.observation
        assert torch.equal(store[key], other[key]), key
    check_consistent(loaded)
    b = loaded.sample(512, torch.Generator().manual_seed(0))
    steps = b["observation"]["state"][:, 1]
    assert torch.allclose(b["grasp_penalty"], -0.02 * (steps % 2))
    # a later add after loading starts its own frames and stays consistent
    run_episode(loaded, 9, 3, "terminated")
    check_consistent(loaded)


def test_add_arrays_without_chaining_writes_both_frames() -> None:
    """Flat arrays whose next observations are not the following observations (not from a log)."""
    n = 5
    obs = [frame_obs(7, 2 * t) for t in range(n)]
    nxt = [frame_obs(7, 2 * t + 1) for t in range(n)]
    arrays = {
        f"{name}/{k}": np.stack([o[k] for o in src])
        for name, src in (("observation", obs), ("next_observation", nxt))
        for k in SPEC
    }
    arrays.update(
        action=np.stack([o["state"].tolist() + [0.0] for o in obs]).astype(np.float32),
        reward=np.zeros(n, np.float32),
        terminated=np.zeros(n, bool),
    )
    buf = ReplayBuffer(SPEC, 3, capacity=10)
    buf.add_arrays(arrays)
    assert buf.frames_written == 2 * n
    check_consistent(buf)


def test_sample_timing_batch_256_two_128px_cameras() -> None:
    """Not a pass/fail benchmark: checks shapes on the real size and prints the time per batch."""
    spec = {
        "state": ((7,), np.float32),
        "image/front": ((128, 128, 3), np.uint8),
        "image/wrist": ((128, 128, 3), np.uint8),
    }
    buf = ReplayBuffer(spec, 4, capacity=5000)
    rng = np.random.default_rng(0)
    frame = {k: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for k in ("image/front", "image/wrist")}
    for _ in range(300):
        nxt = {k: np.roll(v, 1, axis=0) for k, v in frame.items()}
        buf.add({"state": np.zeros(7), **frame}, np.zeros(4), 0.0, {"state": np.zeros(7), **nxt}, False)
        frame = nxt
    g = torch.Generator().manual_seed(0)
    b = buf.sample(256, g)
    assert b["observation"]["image/front"].shape == (256, 128, 128, 3)
    assert b["next_observation"]["image/wrist"].dtype == torch.uint8
    t0 = time.perf_counter()
    for _ in range(20):
        buf.sample(256, g)
    print(f"sample(256), two 128x128 cameras: {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_storage_on_cuda() -> None:
    buf = ReplayBuffer(SPEC, 3, capacity=30, device="cuda")
    run_episode(buf, 1, 8, "terminated")
    assert buf.frames["image/front"].is_cuda
    b = buf.sample(64, torch.Generator(device="cuda").manual_seed(0))
    assert b["observation"]["image/front"].is_cuda
    b = buf.sample(64, torch.Generator().manual_seed(0))  # a CPU generator also works
    assert torch.equal(decode(b["next_observation"]["image/front"]), b["next_observation"]["state"])
