"""The actor side of distributed training (the ROS `actor` node's logic, transport-free).

Rolls out whole episodes with the current policy (or the scripted expert, for demos) in the env the
config names (over ROS: `robot=ros`), encodes each finished episode as chunks for the learner
(robot_rl.runtime.wire), and swaps in new weights between steps as they arrive. An episode that
cannot finish (robot unavailable, actor deactivated, learner lost with `hold`) is dropped, never sent.

Pacing (`Pacing`, the ROS actor node's parameters): in training mode the actor waits for the learner's
status, records `num_demos` scripted demos if the learner has fewer, then acts with the newest weights.
If the learner goes silent for `learner_timeout_s`: `on_learner_lost=hold` drops the episode in
progress and sends nothing until it returns; `keep` goes on with the last weights and keeps finished
episodes (up to `outbox_episodes`) until it returns. `max_steps_ahead` >= 0 makes an episode wait until
the learner has committed this actor's previous episode and has at most that many received steps left
to train on (0 with a lock-stepped sim: the embedded runner's pacing). The transport (a ROS node, or a
queue in one process) hands in the learner's status and weights and sends `outgoing()` chunks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from robot_rl.agents.sac import agent_config
from robot_rl.data.schema import EpisodeSource, Transition
from robot_rl.envs.factory import make_actor_env
from robot_rl.runtime.learner import make_agent
from robot_rl.runtime.rollout import EpisodeResult, run_episode
from robot_rl.runtime.run import check_train_config
from robot_rl.runtime.wire import decode_weights, encode_chunk, space_to_json

MAX_CHUNK_BYTES = 4 << 20  # frames per message stay well under DDS's comfortable message sizes


@dataclass
class Pacing:
    """When a training actor acts and sends (see the module docstring)."""

    training: bool = True  # False: a fixed policy (deployment), no learner
    num_demos: int = 0
    max_episodes: int = 0  # 0: no limit
    on_learner_lost: str = "hold"  # hold | keep
    learner_timeout_s: float = 2.0
    max_steps_ahead: int = -1  # -1: never wait for the learner to catch up
    outbox_episodes: int = 100

    def __post_init__(self) -> None:
        if self.on_learner_lost not in ("hold", "keep"):
            raise ValueError(
                f"actor on_learner_lost={self.on_learner_lost!r}: use hold (stop acting) or keep (last weights)"
            )


def check_learner_status(status: object) -> dict:
    """The learner's status heartbeat, checked (a ValueError names what is missing)."""
    if not (
        isinstance(status, dict)
        and isinstance(status.get("run_id"), str)
        and isinstance(status.get("last_episode"), dict)
        and isinstance(status.get("backlog"), int)
        and isinstance(status.get("demo_episodes", 0), int)
        and all(isinstance(v, int) for v in status["last_episode"].values())
    ):
        raise ValueError("missing run_id, last_episode, backlog or demo_episodes")
    return status


class _Abandoned(Exception):
    """The episode in progress is dropped (the actor was told to stop)."""


class RemoteActor:
    """See the module docstring. `policy_run`: a `robot-rl train` run directory whose checkpoint is a
    fixed policy (deployment); without it the agent starts from its initial weights and takes the
    learner's as they come."""

    def __init__(
        self,
        cfg: DictConfig,
        actor_id: str,
        deterministic: bool = False,
        policy_run: str | None = None,
        pacing: Pacing | None = None,
        link_ok: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`link_ok`: whether the transport reaches the learner (e.g. a ROS subscriber exists)."""
        check_train_config(cfg)
        self.pacing = pacing or Pacing(training=not policy_run)
        self.training = self.pacing.training
        self.link_ok, self.clock = link_ok, clock
        self.active = False
        self.running = True
        self.learner_status: dict | None = None
        self.learner_seen = 0.0  # clock time of the last heartbeat
        self.outbox: deque[tuple[list[bytes], int]] = deque(maxlen=self.pacing.outbox_episodes)  # (chunks, episode)
        self.awaiting: tuple[str, int] | None = None  # (learner run_id, episode) last sent
        self.successes: deque[bool] = deque(maxlen=20)
        self.dropped = 0
        self.sent_demos = 0
        torch.set_num_threads(1)  # one observation at a time: more threads only add latency
        self.actor_id = actor_id
        self.deterministic = deterministic
        self.rng = np.random.default_rng(int(cfg.seed))
        self.env = make_actor_env(cfg, int(cfg.seed), self.rng)
        space, action_dim = self.env.observation_space, int(self.env.action_space.shape[0])
        if policy_run:
            from robot_rl.runtime.trained import load_trained

            self.agent = load_trained(Path(policy_run), self.env, "cpu", int(cfg.seed)).agent
        else:
            agent_cfg = agent_config(cfg)
            agent_cfg.compile = False  # inference only
            self.agent = make_agent(space, action_dim, agent_cfg, "cpu", int(cfg.seed))
        self.spec = {"observation": space_to_json(space), "action_dim": action_dim}
        self.expert_noise = float(cfg.expert_noise)
        self.weights_version = -1
        self._pending_weights: tuple[int, dict[str, np.ndarray]] | None = None
        self.episodes = 0  # episodes finished (their index in this actor's stream)
        self.steps = 0  # online env steps finished
        # the episode in progress (read by status() from another thread: plain assignments)
        self.episode_source: EpisodeSource | None = None  # None between episodes
        self.episode_step = 0  # steps taken in it
        self.episode_return = 0.0
        self.intervention = False  # a person drove its last step
        self.robot_namespace = str((cfg.get("robot") or {}).get("namespace", ""))
        frame_bytes = sum(int(np.prod(box.shape)) * np.dtype(box.dtype).itemsize for box in space.spaces.values())
        self.chunk_steps = max(1, MAX_CHUNK_BYTES // max(frame_bytes, 1))

    def offer_weights(self, payload: bytes) -> None:
        """Decode and check the newest weights (on the caller's thread, not the control loop's); they are
        loaded before the next step (thread-safe: one assignment). Raises WireError or ValueError for a
        payload that is not weights of this agent, which then never reach the control loop."""
        header, weights = decode_weights(payload)
        self.agent.check_policy_weights(weights)
        self._pending_weights = (int(header["version"]), weights)

    def _load_pending_weights(self) -> None:
        pending, self._pending_weights = self._pending_weights, None
        if pending is not None:
            self.agent.load_policy_weights(pending[1])
            self.weights_version = pending[0]

    def run_episode(
        self, keep_going: Callable[[], bool], source: EpisodeSource = EpisodeSource.ONLINE
    ) -> tuple[list[bytes], EpisodeResult] | None:
        """One episode with the policy (DEMO: the scripted expert), encoded as chunks; None when
        `keep_going()` turned false before it ended. RobotUnavailable propagates."""
        policy = (
            self._expert_act()
            if source == EpisodeSource.DEMO
            else (lambda obs: self.agent.act(obs, deterministic=self.deterministic))
        )

        def act(observation):
            if not keep_going():
                raise _Abandoned
            self._load_pending_weights()
            return policy(observation)

        steps: list[Transition] = []

        def on_step(transition: Transition) -> None:
            steps.append(transition)
            self.episode_step = len(steps)
            self.episode_return += transition.reward
            self.intervention = transition.intervention

        self.episode_source = source
        self.episode_step, self.episode_return, self.intervention = 0, 0.0, False
        try:
            result = run_episode(self.env, act, int(self.rng.integers(2**31)), self.episodes, on_step)
        except _Abandoned:
            return None
        finally:
            self.episode_source = None
        if source == EpisodeSource.DEMO and not result.success:
            return [], result  # a failed demo is not a demo
        chunks = [
            encode_chunk(
                steps[i : i + self.chunk_steps],
                self.actor_id,
                self.episodes,
                n,
                final=i + self.chunk_steps >= len(steps),
                source=source,
                reset_s=result.reset_s,
                spec=self.spec if n == 0 else None,
            )
            for n, i in enumerate(range(0, len(steps), self.chunk_steps))
        ]
        self.episodes += 1
        if source == EpisodeSource.ONLINE:
            self.steps += len(steps)
        return chunks, result

    # ------------------------------------------------------------------ pacing
    def offer_learner_status(self, status: object) -> None:
        """The learner's heartbeat; raises ValueError (nothing changes) when it is not one."""
        self.learner_status = check_learner_status(status)
        self.learner_seen = self.clock()

    def learner_ok(self) -> bool:
        return (
            self.learner_status is not None
            and self.clock() - self.learner_seen < self.pacing.learner_timeout_s
            and self.link_ok()
        )

    def keep_going(self) -> bool:
        """Whether the episode in progress may go on."""
        if not (self.running and self.active):
            return False
        return not (self.training and self.pacing.on_learner_lost == "hold" and not self.learner_ok())

    def wait_reason(self) -> str | None:
        """Why the next episode must wait (None: go)."""
        if not self.active:
            return "inactive"
        if self.pacing.max_episodes and self.episodes >= self.pacing.max_episodes:
            return "done"
        if not self.training:
            return None
        if self.learner_status is None:
            return "waiting for the learner"
        if not self.learner_ok():
            return "learner lost: holding" if self.pacing.on_learner_lost == "hold" else None
        status = self.learner_status
        if self.pacing.max_steps_ahead >= 0:
            run_id, episode = self.awaiting or (None, -1)
            # (a restarted learner lost what it had not committed)
            received = run_id != status["run_id"] or status["last_episode"].get(self.actor_id, -1) >= episode
            if not received or int(status["backlog"]) > self.pacing.max_steps_ahead:
                return "waiting for the learner to catch up"
        return None

    def outgoing(self) -> list[bytes]:
        """The kept episodes' chunks to send now (while the learner is there), oldest first."""
        chunks: list[bytes] = []
        while self.outbox and self.learner_ok():
            episode_chunks, episode = self.outbox.popleft()
            self.awaiting = (self.learner_status["run_id"], episode)
            chunks.extend(episode_chunks)
        return chunks

    def wants_demo(self) -> bool:
        """Record a scripted demo: the learner holds (or has been sent) fewer than `num_demos`."""
        committed = self.learner_status.get("demo_episodes", 0) if self.learner_status else 0
        return self.training and max(committed, self.sent_demos) < self.pacing.num_demos

    def play(self) -> EpisodeResult | None:
        """One episode (a demo while the learner wants them), kept for `outgoing` in training mode; None
        when it was dropped. Call when `wait_reason()` is None; RobotUnavailable/ResetError propagate."""
        source = EpisodeSource.DEMO if self.wants_demo() else EpisodeSource.ONLINE
        outcome = self.run_episode(self.keep_going, source)
        if outcome is None:
            self.dropped += 1
            return None
        chunks, result = outcome
        if source == EpisodeSource.ONLINE:
            self.successes.append(result.success)
        if chunks and self.training:
            if source == EpisodeSource.DEMO:
                self.sent_demos += 1
            self.outbox.append((chunks, self.episodes - 1))
        return result

    def status(self, state: str) -> dict:
        """The actor's status report (`state`: what it is doing)."""
        return {
            "actor": self.actor_id,
            "state": state,
            "active": self.active,
            "learner_ok": self.learner_ok(),
            "weights_version": self.weights_version,
            "episodes": self.episodes,
            "env_steps": self.steps,
            "outbox": len(self.outbox),
            "dropped_episodes": self.dropped,
            "success_recent": sum(self.successes) / len(self.successes) if self.successes else 0.0,
            "robot_namespace": self.robot_namespace,
            "episode_source": None if self.episode_source is None else self.episode_source.name.lower(),
            "episode_step": self.episode_step,
            "episode_return": self.episode_return,
            "intervention": self.intervention,
        }

    def _expert_act(self):
        from robot_rl.tasks import make_expert

        return make_expert(self.env, noise=self.expert_noise, rng=self.rng).act

    def close(self) -> None:
        self.env.close()
