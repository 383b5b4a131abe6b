"""The learner side of distributed training (the ROS `learner` node's logic, transport-free).

Takes episode chunks from any number of actors (robot_rl.runtime.wire), commits whole episodes to
the zarr log, routes their steps to the replay buffers as the embedded runner does, runs one
`Learner.update()` (= `agent.utd` critic updates) per online env step received, checkpoints every
`runtime.checkpoint_every` env steps, and produces weight payloads and a status heartbeat. A restart
resumes from the checkpoint and log.

Anyone on the DDS domain can publish, so nothing from the network is trusted:
  - spec pinning: when the learner can build the task's env itself (`robot=mujoco`, or a gym task) it
    does so at start, pins the observation space and action size from it and builds its agent at
    once; an actor with another spec is rejected. Otherwise (a real robot the learner cannot build)
    the first actor's spec is accepted only once a whole episode with it has validated. spec.json
    (what a restart resumes from) is written only from the pinned or that validated spec, when the
    agent is built; a pinning learner refuses a run_dir whose spec.json is not its env's.
  - every chunk is decoded strictly (wire.decode_chunk) and checked against the episode's spec; an
    episode is committed to the log and the replay buffers only when all of it validated: its first
    chunk carried the spec, its chunk indices were consecutive, its final chunk arrived, and it is at
    most `max_episode_steps` long (default: twice the task's max_steps).
  - memory is bounded: a payload over `max_payload_bytes` is dropped in `ingest` before it is copied;
    the inbox holds at most `inbox_bytes` / `inbox_chunks` (when full the NEWEST payload is dropped:
    what was accepted keeps its order and is never thrown away for an unvetted newcomer); episodes in
    progress are bounded per actor, in number and in bytes (when over, the least recently extended
    one is evicted: a real actor sends an episode's chunks back to back, so its episode is never the
    stalest), and one not extended for `episode_timeout_s` is dropped.
Every rejection is counted by kind in `status()["rejected"]` and logged rate-limited (wire.RejectCounter).

The run directory (lock, validation, resume from checkpoint + log, committing episodes, checkpoints,
events to sinks and summary.json) is a `TrainingRun` (runtime/run.py), as for the embedded runner.
"""

from __future__ import annotations

import array
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig

from robot_rl.config import check_device
from robot_rl.data.episode_log import EpisodeLogError, EpisodeLogWriter
from robot_rl.data.schema import EpisodeSource, Transition
from robot_rl.robots import SIM_ROBOTS  # the learner builds these itself to pin the observation spec
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.run import SPEC_FILE, TrainingRun, check_train_config
from robot_rl.runtime.wire import (
    MAX_PAYLOAD_BYTES,
    RejectCounter,
    WireError,
    check_chunk,
    check_spec,
    decode_chunk,
    encode_weights,
    space_from_json,
    space_to_json,
    spec_mismatch,
)


@dataclass
class IngestLimits:
    """Bounds on what the network can make the learner hold (see the module docstring)."""

    max_payload_bytes: int = MAX_PAYLOAD_BYTES  # one chunk payload
    inbox_bytes: int = 32 << 20  # payloads received, not yet decoded (8 chunks of 4 MiB)
    inbox_chunks: int = 1024
    pending_bytes: int = 128 << 20  # episodes in progress (payload bytes), all actors together
    pending_episodes: int = 64
    pending_per_actor: int = 2  # a real actor has one episode in progress at a time
    episode_timeout_s: float = 60.0  # an episode in progress not extended for this long is dropped
    max_episode_steps: int = 0  # 0: twice the task's max_steps (10000 when the task has no limit)
    chunks_per_work: int = 64  # payloads decoded per work() call, so that training goes on under a flood


@dataclass
class _Pending:
    """An episode in progress: its spec, the chunks validated so far."""

    spec: dict
    source: int
    steps: list[Transition] = field(default_factory=list)
    next_chunk: int = 1
    nbytes: int = 0
    last_seen: float = 0.0


class RemoteLearner:
    """See the module docstring. Thread-safe `ingest` (transport callbacks); `work` runs on one thread."""

    def __init__(self, cfg: DictConfig, log=print, limits: IngestLimits | None = None, sinks=()) -> None:
        """`sinks`: the transport's event sinks, beside the `logger` config's (the ROS node's `events`)."""
        self.cfg = cfg
        self.rt = check_train_config(cfg)
        if cfg.get("init_from") or (cfg.get("finetune") or {}).get("mode", "none") != "none":
            raise ValueError(
                "init_from/finetune (fine-tuning a pretrained run) runs in the embedded trainer only: "
                "run `robot-rl train init_from=<run_dir> finetune=...`, or drop init_from and finetune here"
            )
        self.log = log
        self.limits = limits or IngestLimits()
        check_device(cfg.device)
        torch.set_num_threads(self.rt.torch_threads)
        self.inbox: deque[bytes] = deque()
        self.inbox_bytes = 0
        self.inbox_lock = threading.Lock()
        self.partial: dict[tuple[str, int], _Pending] = {}  # (actor, episode) -> the episode in progress
        self.pending_bytes = 0
        self.rejects = RejectCounter(log)
        self.spec: dict | None = None
        self.trained_steps = 0  # online env steps that got their update (or were before learning_starts)
        self.last_episode: dict[str, int] = {}  # each actor's newest committed episode (its own counter), this run
        self.run_id = uuid.uuid4().hex[:12]  # tells actors this learner process from an earlier one
        self.weights_version = -1  # the last version handed out by weights()
        self.lock = threading.Lock()
        self.eval_env = None
        # held until close(): the run directory's owner
        self.run = TrainingRun(cfg, self.rt, who="learner", log=log, extra_sinks=sinks)
        self.run_dir = self.run.run_dir
        try:
            self.pinned, task_max_steps = self._local_spec(cfg)  # None: a robot this learner cannot build
            self.max_episode_steps = self.limits.max_episode_steps or (2 * task_max_steps if task_max_steps else 10_000)
            self._resume_or_pin()
        except BaseException:
            self.close()
            raise

    def _resume_or_pin(self) -> None:
        """Resume from spec.json (a restart, before any actor speaks) or build from the pinned spec."""
        spec_file = self.run_dir / SPEC_FILE
        if spec_file.exists():
            try:
                saved = check_spec(json.loads(spec_file.read_text()))
            except (ValueError, WireError) as err:
                raise ValueError(
                    f"{spec_file} is not an observation spec ({err}): restore it from the run's "
                    "config, or use a new run_dir"
                ) from None
            reason = spec_mismatch(saved, self.pinned) if self.pinned is not None else None
            if reason:
                raise ValueError(
                    f"{spec_file} does not match the env this config builds ({reason}): resume with the "
                    "config that run was made with, or use a new run_dir"
                )
            self._build(saved)
        elif self.pinned is not None:  # the env is known: build now (config errors show at start)
            self._build(self.pinned)

    # ------------------------------------------------------------------ transport side
    def ingest(self, payload) -> None:
        """Queue one chunk (called from the transport's thread). `payload`: bytes or any buffer (a
        message's uint8 array): one over the payload limit, or arriving while the inbox is full, is
        dropped (and counted) before it is copied."""
        size = memoryview(payload).nbytes
        if size > self.limits.max_payload_bytes:
            self._reject("too_large", f"a payload of {size} bytes (limit {self.limits.max_payload_bytes})")
            return
        with self.inbox_lock:
            full = self.inbox_bytes + size > self.limits.inbox_bytes or len(self.inbox) >= self.limits.inbox_chunks
            if not full:
                self.inbox_bytes += size
        if full:
            self._reject(
                "inbox_full",
                f"a payload of {size} bytes: the inbox is full ({len(self.inbox)} payloads, "
                f"{self.inbox_bytes} bytes); the learner is behind or being flooded",
            )
            return
        # a message's own uint8 array is kept as it is (no copy on the transport's thread: it must keep up
        # with the network); any other buffer might be reused by its owner, so it is copied
        self.inbox.append(payload if isinstance(payload, (bytes, array.array)) else bytes(payload))

    def _pop(self):
        try:
            payload = self.inbox.popleft()
        except IndexError:
            return None
        with self.inbox_lock:
            self.inbox_bytes -= memoryview(payload).nbytes
        return payload

    def _reject(self, kind: str, what: str) -> None:
        self.rejects.add(kind, f"[learner] dropped {what} ({kind})")

    @staticmethod
    def _local_spec(cfg: DictConfig) -> tuple[dict | None, int | None]:
        """(the spec of the env this config builds, its episode step limit) when the learner can build it
        itself: the sim robot or a gym task; (None, task.max_steps) for a robot only actors have."""
        task_max_steps = cfg.task.get("max_steps") if "task" in cfg else None
        robot = cfg.get("robot") or {}
        if cfg.task.get("name") != "gym" and robot.get("name", "mujoco") not in SIM_ROBOTS:
            return None, task_max_steps
        from robot_rl.envs.factory import make_env

        env = make_env(cfg, seed=int(cfg.seed))
        try:
            spec = {"observation": space_to_json(env.observation_space), "action_dim": int(env.action_space.shape[0])}
            limit = getattr(env, "max_episode_steps", None) or getattr(
                getattr(env, "spec", None), "max_episode_steps", None
            )
        finally:
            env.close()
        return check_spec(json.loads(json.dumps(spec))), limit or task_max_steps

    # ------------------------------------------------------------------ build / resume
    def _build(self, spec: dict) -> None:
        """The agent, log writer and spec.json from `spec` (pinned, resumed, or validated with a whole
        episode), then resume from the checkpoint and log, and copy `demos` when the log has none yet."""
        run = self.run
        run.setup(space_from_json(spec["observation"]), int(spec["action_dim"]), spec)
        self.spec = spec
        covered_steps = run.counts["env_steps"]
        replayed = run.resume(check_actions=False)  # actors act: the learner's agent never does
        self.trained_steps = min(int(run.saved.get("trained_steps", covered_steps)), covered_steps) + replayed
        run.collect_demos()
        run.start_clock()

    @property
    def learner(self) -> Learner | None:
        return self.run.learner

    @property
    def writer(self) -> EpisodeLogWriter | None:
        return self.run.writer

    @property
    def counts(self) -> dict[str, int]:
        return self.run.counts

    @property
    def per_actor(self) -> dict[str, int]:
        """Online env steps committed per actor (restored on resume)."""
        return self.run.actors

    # ------------------------------------------------------------------ work
    def work(self, max_updates: int = 8) -> bool:
        """Commit queued chunks, then run up to `max_updates` learner updates; True if it did anything."""
        busy = False
        self._expire()
        for _ in range(self.limits.chunks_per_work):
            payload = self._pop()
            if payload is None:
                break
            self._take(payload)
            busy = True
        if self.learner is None:
            return busy
        for _ in range(max_updates):
            if self.backlog <= 0:
                break
            if len(self.learner.online) < self.rt.learning_starts:
                self.trained_steps = self.counts["env_steps"]  # as embedded: no updates before learning_starts
                break
            t0 = time.perf_counter()
            with self.lock:
                self.run.last_update = self.learner.update()
            self.run.t_learn += time.perf_counter() - t0
            self.trained_steps += 1
            busy = True
        if self.backlog <= 0:
            self.run.maybe_report()
            if self.run.checkpoint_due():
                self.checkpoint()
        return busy

    def _take(self, payload: bytes) -> None:
        """Decode and validate one chunk; commit its episode when that was the last piece. Nothing from
        the network escapes as an exception: a bad chunk is counted, logged and dropped (with the rest of
        its episode)."""
        try:
            episode = self._accept(payload)
        except WireError as err:
            if err.header is not None:
                self._drop_episode(err.header)
            self._reject(err.kind, f"a chunk{self._from(err.header)}: {err}")
            return
        except Exception as err:  # a gap in the checks must not stop the learner either
            self._reject("internal", f"a chunk ({type(err).__name__}: {err})")
            return
        if episode is not None:
            self._commit(*episode)

    @staticmethod
    def _from(header: dict | None) -> str:
        if not isinstance(header, dict) or not isinstance(header.get("actor"), str):
            return ""
        return f" of actor {header['actor'][:64]!r} episode {str(header.get('episode'))[:20]}"

    def _drop_episode(self, header: dict) -> None:
        key = (header.get("actor"), header.get("episode"))
        try:
            pending = self.partial.pop(key, None)
        except TypeError:  # an unhashable actor or episode: it was never stored
            return
        if pending is not None:
            self.pending_bytes -= pending.nbytes

    def _accept(self, payload: bytes) -> tuple[dict, list[Transition]] | None:
        """Validate one chunk against its episode; (final header, steps, spec) once the episode is whole."""
        header, steps = decode_chunk(payload, self.limits.max_payload_bytes, self.max_episode_steps)
        key = (header["actor"], header["episode"])
        now = time.monotonic()
        if header["chunk"] == 0:
            if header["spec"] is None:
                raise WireError("the first chunk of an episode carries no spec", "spec", header)
            spec = check_spec(header["spec"])
            if self.spec is not None:
                reason = spec_mismatch(spec, self.spec)
                if reason:
                    raise WireError(
                        f"its observation space or action size differs from this run's ({reason}); give "
                        "all actors the learner's task config",
                        "spec",
                        header,
                    )
                spec = self.spec
            if key in self.partial:  # restarted from its first chunk: the old one never finishes
                self._drop_episode(header)
                self._reject(
                    "incomplete",
                    f"episode {header['episode']} of actor {header['actor'][:64]!r}: it started again before it ended",
                )
            pending = _Pending(spec, header["source"], last_seen=now)
            self._make_room(header["actor"])
            self.partial[key] = pending
        else:
            pending = self.partial.get(key)
            if pending is None:
                self._reject(
                    "orphan",
                    f"a chunk{self._from(header)}: its episode's first chunk was rejected, "
                    "evicted or predates this learner",
                )
                return None
            if header["chunk"] != pending.next_chunk:
                raise WireError(
                    f"chunk {header['chunk']} follows chunk {pending.next_chunk - 1}: a chunk is missing", "gap", header
                )
            if header["source"] != pending.source:
                raise WireError(
                    f"source {header['source']} differs from its first chunk's {pending.source}", "inconsistent", header
                )
            pending.next_chunk += 1
        check_chunk(steps, pending.spec)
        if len(pending.steps) + len(steps) > self.max_episode_steps:
            raise WireError(f"the episode grew past {self.max_episode_steps} steps", "too_long", header)
        pending.steps.extend(steps)
        size = memoryview(payload).nbytes
        pending.nbytes += size
        pending.last_seen = now
        self.pending_bytes += size
        if header["final"]:
            self._drop_episode(header)
            if self.spec is not None and pending.spec is not self.spec and spec_mismatch(pending.spec, self.spec):
                raise WireError("it began before this run's spec was set, with another spec", "spec", header)
            return header, pending.steps, pending.spec
        if pending.nbytes > self.limits.pending_bytes:
            raise WireError(
                f"the episode in progress holds {pending.nbytes} bytes (limit {self.limits.pending_bytes})",
                "too_large",
                header,
            )
        self._make_room(None)
        return None

    def _make_room(self, actor: str | None) -> None:
        """Evict the least recently extended episodes in progress while over a bound (with `actor`: also
        that actor's while it has too many)."""
        while self.partial:
            mine = [k for k in self.partial if k[0] == actor] if actor is not None else []
            if len(mine) >= self.limits.pending_per_actor:
                victim = min(mine, key=lambda k: self.partial[k].last_seen)
            elif self.pending_bytes > self.limits.pending_bytes or len(self.partial) >= self.limits.pending_episodes + (
                0 if actor is not None else 1
            ):
                victim = min(self.partial, key=lambda k: self.partial[k].last_seen)
            else:
                return
            self._drop_episode({"actor": victim[0], "episode": victim[1]})
            self._reject(
                "evicted",
                f"episode {victim[1]} of actor {victim[0][:64]!r} in progress: too many episodes or bytes in progress",
            )

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self.partial.items() if now - p.last_seen > self.limits.episode_timeout_s]:
            self._drop_episode({"actor": key[0], "episode": key[1]})
            self._reject(
                "stale",
                f"episode {key[1]} of actor {key[0][:64]!r}: no chunk for {self.limits.episode_timeout_s:.0f} s",
            )

    def _commit(self, header: dict, steps: list[Transition], spec: dict) -> None:
        """A whole, validated episode into the log and the replay buffers (the agent is built first, from
        `spec`, when this is the run's first episode)."""
        if self.learner is None:
            try:
                self._build(spec)
            except Exception as err:
                if self.pinned is not None or self.writer is not None:
                    raise  # a config, disk or demo-store problem: the node ends with its one-line message
                self._reject(
                    "spec",
                    f"an episode{self._from(header)}: no agent can be built from its spec "
                    f"({type(err).__name__}: {err})",
                )
                return
        source = EpisodeSource(int(header["source"]))
        try:
            with self.lock:
                self.run.commit(steps, source, reset_s=float(header.get("reset_s", 0.0)), actor=header["actor"])
        except EpisodeLogError as err:  # validated against the spec: should never happen, but never half-write
            self._reject("internal", f"an episode{self._from(header)} the log refused: {err}")
            return
        self.last_episode[header["actor"]] = int(header["episode"])

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
        return {
            "ready": self.learner is not None,
            "updates": self.learner.agent.num_updates if self.learner else 0,
            "weights_version": self.weights_version,
            "env_steps": self.counts["env_steps"],
            "trained_steps": self.trained_steps,
            "backlog": self.backlog,
            "episodes": self.counts["episodes"],
            "demo_episodes": self.counts["demo_episodes"],
            "actors": self.per_actor,
            "last_episode": self.last_episode,
            "run_id": self.run_id,
            "rejected": self.rejects.counts(),
            "spec_pinned": self.pinned is not None,
            "inbox": len(self.inbox),
            "pending_episodes": len(self.partial),
            "success_recent": float(np.mean(self.run.recent)) if self.run.recent else 0.0,
        }

    def checkpoint(self) -> None:
        if self.learner is None:
            return
        with self.lock:
            self.run.save_checkpoint({"trained_steps": self.trained_steps})

    def eval_round(self) -> dict:
        """An eval round at the current env step, as the embedded runner's (its episodes logged with their
        eval step, its result in summary.json); needs an env this learner can build (a pinned spec)."""
        if self.pinned is None or self.learner is None:
            raise ValueError(
                "the learner can run eval rounds only in an env it builds itself (robot=mujoco or "
                "task=gym): evaluate the run with `robot-rl eval` instead"
            )
        if self.eval_env is None:
            from robot_rl.envs.factory import make_env

            self.eval_env = make_env(self.cfg, seed=int(self.cfg.seed) + 10_000)
        with self.lock:
            return self.run.eval_round(self.eval_env, self.counts["env_steps"])

    def finish(self) -> dict:
        """Checkpoint, close the log and write summary.json (the embedded runner's keys)."""
        self.checkpoint()
        if self.writer is not None:
            self.writer.close()
        self.run.rejected = self.rejects.counts()
        if self.learner is None:
            self.run.wall_s = time.perf_counter() - self.run.start_wall
        return self.run.summary("learner")

    def close(self) -> None:
        """Release the run directory (after `finish`)."""
        if self.eval_env is not None:
            self.eval_env.close()
            self.eval_env = None
        self.run.close()
