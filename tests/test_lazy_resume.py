"""Resume reads an episode log lazily: only the episodes the replay buffers keep, a bounded batch at a time."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from robot_rl.agents.sac import SACConfig
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter
from robot_rl.data.schema import EpisodeSource, Transition
from robot_rl.runtime.learner import Learner

SPACE = spaces.Dict(
    {"state": spaces.Box(-1, 1, (3,), np.float32), "image/wrist": spaces.Box(0, 255, (8, 8, 3), np.uint8)}
)


def obs(episode: int, step: int) -> dict[str, np.ndarray]:
    return {
        "state": np.full(3, (episode * 100 + step) / 1e4, np.float32),
        "image/wrist": np.full((8, 8, 3), (episode * 7 + step) % 251, np.uint8),
    }


def write_log(path, episodes: int, length: int) -> None:
    """Demos, then online episodes, some with intervention steps."""
    with EpisodeLogWriter(path, SPACE, 2) as writer:
        for e in range(episodes):
            source = EpisodeSource.DEMO if e < 3 else EpisodeSource.ONLINE
            for t in range(length):
                writer.add(
                    Transition(
                        obs(e, t),
                        np.full(2, t / length, np.float32),
                        float(t == length - 1),
                        t == length - 1,
                        False,
                        obs(e, t + 1),
                        np.zeros(2, np.float32),
                        intervention=source == EpisodeSource.ONLINE and e % 4 == 0 and t < 3,
                        episode_id=e,
                        step=t,
                    )
                )
            writer.end_episode(source)


def eager(log: EpisodeLog, capacity: int) -> Learner:
    """The buffers filled the way `add` routes every logged step (what resume must reproduce)."""
    learner = Learner(SPACE, 2, SACConfig(compile=False), capacity)
    meta = log.episode_meta()
    for i in range(log.num_episodes):
        ep = log.episode(i)
        source = EpisodeSource(int(meta["source"][i]))
        for t in range(len(ep["reward"])):
            learner.add(
                Transition(
                    {k: ep[f"observation/{k}"][t] for k in SPACE.spaces},
                    ep["action"][t],
                    float(ep["reward"][t]),
                    bool(ep["terminated"][t]),
                    bool(ep["truncated"][t]),
                    {k: ep[f"next_observation/{k}"][t] for k in SPACE.spaces},
                    ep["action"][t],
                    intervention=bool(ep["intervention"][t]),
                ),
                source,
            )
    return learner


def test_resume_reads_only_what_the_image_buffers_keep(tmp_path, monkeypatch):
    """A log of 40 episodes x 10 steps into buffers of 60 rows: the learner reads one episode at a time,
    never an episode the buffers would drop again, and its buffers sample exactly as if every logged
    step had been added one by one."""
    write_log(tmp_path / "log.zarr", episodes=40, length=10)
    log = EpisodeLog(tmp_path / "log.zarr")
    reads: list[tuple[str, int]] = []
    original = EpisodeLog.read

    def counting_read(self, name, rows=slice(None)):
        out = original(self, name, rows)
        if name == "observation/image/wrist":
            reads.append((name, len(out)))
        return out

    monkeypatch.setattr(EpisodeLog, "read", counting_read)
    lazy = Learner(SPACE, 2, SACConfig(compile=False), 60)
    lazy.load_log(log)
    monkeypatch.setattr(EpisodeLog, "read", original)
    image_rows = [n for _, n in reads]
    assert image_rows and max(image_rows) == 10  # one episode per read
    # online: the last 6 episodes fill 60 rows; prior: 3 demos + intervention rows of online episodes
    # 4, 8, ..., 36 (3 rows each) -> only what survives is read: far fewer than the 40 episodes logged
    assert sum(image_rows) < 0.5 * log.num_steps, sum(image_rows)
    reference = eager(log, 60)
    for mine, theirs in ((lazy.online, reference.online), (lazy.prior, reference.prior)):
        assert len(mine) == len(theirs) > 0
        a, b = mine.sample(256, torch.Generator().manual_seed(3)), theirs.sample(256, torch.Generator().manual_seed(3))
        for key in ("action", "reward", "terminated"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        for key in SPACE.spaces:
            torch.testing.assert_close(a["observation"][key], b["observation"][key], rtol=0, atol=0)
            torch.testing.assert_close(a["next_observation"][key], b["next_observation"][key], rtol=0, atol=0)


def test_state_only_resume_reads_in_bounded_batches(tmp_path, monkeypatch):
    """A state-only log is read in batches no larger than the buffer, with the same result as one read."""
    space = spaces.Dict({"state": SPACE["state"]})
    with EpisodeLogWriter(tmp_path / "log.zarr", space, 2) as writer:
        for e in range(30):
            for t in range(10):
                writer.add(
                    Transition(
                        {"state": obs(e, t)["state"]},
                        np.full(2, t / 10, np.float32),
                        0.0,
                        t == 9,
                        False,
                        {"state": obs(e, t + 1)["state"]},
                        np.zeros(2, np.float32),
                    )
                )
            writer.end_episode(EpisodeSource.DEMO if e < 2 else EpisodeSource.ONLINE)
    log = EpisodeLog(tmp_path / "log.zarr")
    sizes: list[int] = []
    original = EpisodeLog.read
    monkeypatch.setattr(
        EpisodeLog,
        "read",
        lambda self, name, rows=slice(None): (
            sizes.append(len(out := original(self, name, rows))) or out
            if name == "reward"
            else original(self, name, rows)
        ),
    )
    learner = Learner(space, 2, SACConfig(compile=False), 50)
    learner.load_log(log)
    assert sizes and max(sizes) <= 50 and sum(sizes) < log.num_steps
    assert len(learner.online) == 50 and len(learner.prior) == 20
    np.testing.assert_allclose(
        learner.online.observation["state"][learner.online._head].numpy(), obs(25, 0)["state"]
    )  # the oldest kept row: episode 25 (the last 5 of 28 online)
