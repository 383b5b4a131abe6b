"""The actor side of distributed training (the ROS `actor` node's logic, transport-free).

Rolls out whole episodes with the current policy (or the scripted expert, for demos) in the env the
config names (over ROS: `robot=ros`), encodes each finished episode as chunks for the learner
(robot_rl.runtime.wire), and swaps in new weights between steps as they arrive. An episode that
cannot finish (robot unavailable, actor deactivated, learner lost with `hold`) is dropped, never sent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig

from robot_rl.data.schema import EpisodeSource, Transition
from robot_rl.config import agent_config, check_train_config
from robot_rl.runtime.embedded import make_actor_env
from robot_rl.runtime.learner import make_agent
from robot_rl.runtime.rollout import EpisodeResult, run_episode
from robot_rl.runtime.wire import decode_weights, encode_chunk, space_to_json

MAX_CHUNK_BYTES = 4 << 20  # frames per message stay well under DDS's comfortable message sizes


class _Abandoned(Exception):
    """The episode in progress is dropped (the actor was told to stop)."""


class RemoteActor:
    """See the module docstring. `policy_run`: a `robot-rl train` run directory whose checkpoint is a
    fixed policy (deployment); without it the agent starts from its initial weights and takes the
    learner's as they come."""

    def __init__(self, cfg: DictConfig, actor_id: str, deterministic: bool = False,
                 policy_run: str | None = None) -> None:
        check_train_config(cfg)
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

    def run_episode(self, keep_going: Callable[[], bool], source: EpisodeSource = EpisodeSource.ONLINE
                    ) -> tuple[list[bytes], EpisodeResult] | None:
        """One episode with the policy (DEMO: the scripted expert), encoded as chunks; None when
        `keep_going()` turned false before it ended. RobotUnavailable propagates."""
        policy = self._expert_act() if source == EpisodeSource.DEMO else (
            lambda obs: self.agent.act(obs, deterministic=self.deterministic))

        def act(observation):
            if not keep_going():
                raise _Abandoned
            self._load_pending_weights()
            return policy(observation)

        steps: list[Transition] = []
        try:
            result = run_episode(self.env, act, int(self.rng.integers(2**31)), self.episodes, steps.append)
        except _Abandoned:
            return None
        if source == EpisodeSource.DEMO and not result.success:
            return [], result  # a failed demo is not a demo
        chunks = [encode_chunk(steps[i:i + self.chunk_steps], self.actor_id, self.episodes, n,
                               final=i + self.chunk_steps >= len(steps), source=source, reset_s=result.reset_s,
                               spec=self.spec if n == 0 else None)
                  for n, i in enumerate(range(0, len(steps), self.chunk_steps))]
        self.episodes += 1
        if source == EpisodeSource.ONLINE:
            self.steps += len(steps)
        return chunks, result

    def _expert_act(self):
        from robot_rl.tasks import make_expert
        return make_expert(self.env, noise=self.expert_noise, rng=self.rng).act

    def close(self) -> None:
        self.env.close()
