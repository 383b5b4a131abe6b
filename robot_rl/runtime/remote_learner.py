"""The learner side of distributed training (the ROS `learner` node's logic, transport-free).

Takes episode chunks from any number of actors (robot_rl.runtime.wire), commits whole episodes to
the zarr log, routes their steps to the replay buffers as the embedded runner does, runs one
`Learner.update()` (= `agent.utd` critic updates) per online env step received, checkpoints every
`runtime.checkpoint_every` env steps, and produces weight payloads and a status heartbeat. The agent
is built from the observation space the first actor sends (or the checkpoint's, on a restart), so
actor and learner always agree on observation bounds. A restart resumes from the checkpoint and log.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter
from robot_rl.data.schema import EpisodeLabel, EpisodeSource, Transition, count_takeovers
from robot_rl.runtime.embedded import CHECKPOINT, LOG, check_train_config, copy_demos, make_learner, online_counts
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.wire import WireError, decode_chunk, encode_weights, space_from_json

SPEC_FILE = "spec.json"


class RemoteLearner:
    """See the module docstring. Thread-safe `ingest` (transport callbacks); `work` runs on one thread."""

    def __init__(self, cfg: DictConfig, log=print) -> None:
        self.cfg = cfg
        self.rt = check_train_config(cfg)
        self.log = log
        self.run_dir = Path(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        torch.set_num_threads(self.rt.torch_threads)
        self.inbox: deque[bytes] = deque()
        self.partial: dict[tuple[str, int], list[Transition]] = {}  # (actor, episode) -> steps so far
        self.learner: Learner | None = None
        self.writer: EpisodeLogWriter | None = None
        self.spec: dict | None = None
        self.counts = {"env_steps": 0, "episodes": 0, "interventions": 0, "intervention_steps": 0, "discarded": 0,
                       "demo_episodes": 0}
        self.trained_steps = 0  # online env steps that got their update (or were before learning_starts)
        self.per_actor: dict[str, int] = {}  # online env steps committed per actor (restored on resume)
        self.last_episode: dict[str, int] = {}  # each actor's newest committed episode (its own counter), this run
        self.run_id = uuid.uuid4().hex[:12]  # tells actors this learner process from an earlier one
        self.recent_success: deque[bool] = deque(maxlen=20)
        self.rejected = 0
        self.weights_version = -1  # the last version handed out by weights()
        self.next_checkpoint = self.rt.checkpoint_every
        self.wall_start = time.perf_counter()
        self.lock = threading.Lock()
        spec_file = self.run_dir / SPEC_FILE
        if spec_file.exists():  # a restart: resume before any actor speaks
            self._build(json.loads(spec_file.read_text()))

    # ------------------------------------------------------------------ transport side
    def ingest(self, payload: bytes) -> None:
        """Queue one chunk (called from the transport's thread)."""
        self.inbox.append(payload)

    # ------------------------------------------------------------------ build / resume
    def _build(self, spec: dict) -> None:
        space = space_from_json(spec["observation"])
        action_dim = int(spec["action_dim"])
        self.writer = EpisodeLogWriter(self.run_dir / LOG, space, action_dim,
                                       config=OmegaConf.to_container(self.cfg, resolve=True))
        self.learner = make_learner(self.cfg, self.rt, space, action_dim)
        self.spec = spec
        (self.run_dir / SPEC_FILE).write_text(json.dumps(spec))
        checkpoint = self.run_dir / CHECKPOINT
        if checkpoint.exists():
            saved = self.learner.load(checkpoint)
            self.trained_steps = int(saved.get("trained_steps", 0))
            self.per_actor = dict(saved.get("per_actor", {}))
        if self.writer.num_episodes:
            existing = EpisodeLog(self.run_dir / LOG)
            self.learner.load_log(existing)
            self.counts.update(online_counts(existing))
            self.counts["demo_episodes"] = int((existing.episode_meta()["source"] == EpisodeSource.DEMO).sum())
            self.trained_steps = min(self.trained_steps, self.counts["env_steps"])
            self.log(f"[learner] resuming {self.run_dir}: {existing.num_episodes} episodes in the log, "
                     f"{self.counts['env_steps']} online steps, {self.learner.agent.num_updates} critic updates done")
        elif self.cfg.demos:
            self.counts["demo_episodes"] = copy_demos(self.cfg.demos, self.writer, "learner")
            self.learner.load_log(EpisodeLog(self.run_dir / LOG), online=False)
        self.next_checkpoint = self.counts["env_steps"] + self.rt.checkpoint_every

    # ------------------------------------------------------------------ work
    def work(self, max_updates: int = 8) -> bool:
        """Commit queued chunks, then run up to `max_updates` learner updates; True if it did anything."""
        busy = False
        while self.inbox:
            self._take(self.inbox.popleft())
            busy = True
        if self.learner is None:
            return busy
        for _ in range(max_updates):
            if self.backlog <= 0:
                break
            if len(self.learner.online) < self.rt.learning_starts:
                self.trained_steps = self.counts["env_steps"]  # as embedded: no updates before learning_starts
                break
            with self.lock:
                self.learner.update()
            self.trained_steps += 1
            busy = True
        if self.counts["env_steps"] >= self.next_checkpoint and self.backlog <= 0:
            self.checkpoint()
            self.next_checkpoint = self.counts["env_steps"] + self.rt.checkpoint_every
        return busy

    def _take(self, payload: bytes) -> None:
        try:
            header, steps = decode_chunk(payload)
        except WireError as err:
            self.rejected += 1
            self.log(f"[learner] dropped a chunk: {err}")
            return
        if self.learner is None:
            if not header.get("spec"):
                return  # the middle of an episode from before we started: wait for a first chunk
            self._build(header["spec"])
        elif header.get("spec") and header["spec"] != self.spec:
            self.rejected += 1
            self.log(f"[learner] rejected an episode of actor {header['actor']}: its observation space or action "
                     "size differs from this run's; give all actors the learner's task config")
            return
        key = (header["actor"], int(header["episode"]))
        if header["chunk"] == 0:
            self.partial[key] = []
        elif key not in self.partial:
            return  # its first chunk was rejected or predates a restart
        self.partial[key].extend(steps)
        if header["final"]:
            self._commit(header, self.partial.pop(key))

    def _commit(self, header: dict, steps: list[Transition]) -> None:
        source = EpisodeSource(int(header["source"]))
        self.last_episode[header["actor"]] = int(header["episode"])
        for step in steps:
            self.writer.add(step)
        self.writer.end_episode(source, reset_s=float(header.get("reset_s", 0.0)))
        if source == EpisodeSource.EVAL:
            return
        discarded = steps[-1].label == EpisodeLabel.DISCARD
        if source == EpisodeSource.ONLINE:
            flags = np.array([t.intervention for t in steps])
            self.counts["env_steps"] += len(steps)
            self.counts["episodes"] += 1
            self.counts["interventions"] += count_takeovers(flags)
            self.counts["intervention_steps"] += int(flags.sum())
            self.counts["discarded"] += int(discarded)
            self.per_actor[header["actor"]] = self.per_actor.get(header["actor"], 0) + len(steps)
            self.recent_success.append(any(t.success for t in steps))
        else:
            self.counts["demo_episodes"] += 1
        if not discarded:
            with self.lock:
                for step in steps:
                    self.learner.add(step, source)

    # ------------------------------------------------------------------ outputs
    def weights(self) -> bytes | None:
        """A weights payload when the agent changed since the last one (None otherwise)."""
        if self.learner is None:
            return None
        with self.lock:
            version = self.learner.agent.num_updates
            if version == self.weights_version:
                return None
            self.weights_version = version
            return encode_weights(self.learner.agent.policy_weights(), version)

    @property
    def backlog(self) -> int:
        """Online env steps received that have not had their update yet."""
        return self.counts["env_steps"] - self.trained_steps

    def status(self) -> dict:
        return {"ready": self.learner is not None, "updates": self.learner.agent.num_updates if self.learner else 0,
                "weights_version": self.weights_version, "env_steps": self.counts["env_steps"],
                "trained_steps": self.trained_steps, "backlog": self.backlog,
                "episodes": self.counts["episodes"], "demo_episodes": self.counts["demo_episodes"],
                "actors": self.per_actor, "last_episode": self.last_episode, "run_id": self.run_id,
                "rejected": self.rejected,
                "success_recent": float(np.mean(self.recent_success)) if self.recent_success else 0.0}

    def checkpoint(self) -> None:
        if self.learner is None:
            return
        with self.lock:
            self.learner.save(self.run_dir / CHECKPOINT, {"trained_steps": self.trained_steps,
                                                          "per_actor": self.per_actor})

    def finish(self) -> dict:
        """Checkpoint, close the log and write summary.json."""
        self.checkpoint()
        if self.writer is not None:
            self.writer.close()
        summary = {"command": "learner", "run_dir": str(self.run_dir), "task": self.cfg.task.name,
                   **self.status(), "wall_s": round(time.perf_counter() - self.wall_start, 1),
                   "interventions": self.counts["interventions"], "discarded_episodes": self.counts["discarded"],
                   "replay": {"prior": len(self.learner.prior), "online": len(self.learner.online)} if self.learner else {}}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
