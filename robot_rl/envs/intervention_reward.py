"""RLIF: a person's take-overs are the only reward (`reward.source=interventions`).

RLIF (Luo et al. 2023, "RLIF: Interactive Imitation Learning as Reinforcement Learning") trains an off-policy RL
learner (RLPD) on a reward that needs no task success signal: -1 when a person takes over, else 0. As in the
paper's reference code, the -1 goes on the transition that led to the take-over: the last policy step before the
first step a person drove (its state, the policy's action, the state the person saw and stepped in at). Steps a
person drove, and every other step, get 0. A take-over does not end the episode, and a take-over on an
episode's first step has no policy step before it (no -1), as in the paper's code.

The task's own success is not a reward here: it pays 0 like every other step. The episode's boundaries stay the
environment's, as in the paper's reference code (its offline and online data keep their done flags): an episode
that the task's success or a person's SUCCESS label ends is terminated (a person would stop the robot and reset the
scene), a time limit or a FAILURE/DISCARD label truncates it. The log keeps the truth: each step's `success` stays
the task's (or a person's label), so the episode log, the progress line and evals score the task; its `reward` is
the one the learner used, with `reward_source` INTERVENTION. The learner clips its TD targets to the returns these
rewards can give, [-1/(1 - discount), 0], unless `agent.value_range` says otherwise (robot_rl/runtime/run.py).

Two halves, because the -1 belongs to a step the actor has already returned when the take-over starts:
  - `InterventionReward` (the actor's env, around the InterventionWrapper; robot_rl/envs/factory.py): reward 0,
    `reward_source` INTERVENTION;
  - `relabel_episode` / `relabel_rows`: the -1 on each step followed by a take-over start, applied by the learner's
    side to whole episodes (the run's online episodes before they are logged; demos, a `demos=` store, resumed and
    fine-tuning data as they enter the replay buffers). Both are idempotent.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.config import UserError
from robot_rl.data.schema import RewardSource, StepInfo, Transition

REWARD_SOURCES = ("task", "interventions")
TAKEOVER_REWARD = -1.0
DEVICES = "teleop=sim_operator|spacemouse|gamepad|keyboard|console|ros"


def reward_source(cfg: Any) -> str:
    """The run's `reward.source` (task when unset); a one-line UserError names a bad value."""
    reward = cfg.get("reward") or {}
    source = reward.get("source", "task") or "task"
    if source not in REWARD_SOURCES:
        raise UserError(f"reward.source={source!r} is not a reward source: choose one of {', '.join(REWARD_SOURCES)}")
    return str(source)


def check_reward_source(cfg: Any, actor: bool = True) -> str:
    """Validate `reward.source` against the rest of the config and return it. With `interventions`: no reward
    classifier (one reward source), a value range that holds negative returns, and (`actor`: a process that
    steps an env) a teleop device whose take-overs are the reward. A one-line UserError names the fix."""
    source = reward_source(cfg)
    if source != "interventions":
        return source
    reward = cfg.get("reward") or {}
    if reward.get("classifier"):
        raise UserError(
            "reward.source=interventions and reward.classifier both give the reward: pick one "
            "(drop reward.classifier, or set reward.source=task)"
        )
    value_range = (cfg.get("agent") or {}).get("value_range")
    if value_range is not None and float(value_range[0]) > TAKEOVER_REWARD:
        raise UserError(
            f"agent.value_range={list(value_range)} cannot hold the -1 of a take-over (reward.source=interventions): "
            "set its low end to at most -1 (e.g. agent.value_range=[-5,0]) or null"
        )
    teleop = cfg.get("teleop") or {}
    if actor and not teleop.get("device"):
        raise UserError(
            f"reward.source=interventions needs a person (or the simulated one) to take over: set {DEVICES}"
        )
    return source


def takeover_rewards(intervention: np.ndarray, episode_index: np.ndarray | None = None) -> np.ndarray:
    """float32 rewards of steps with these intervention flags: -1 on each step that a person did not drive and
    whose next step (in the same episode, by `episode_index` when given) a person did, else 0."""
    flags = np.asarray(intervention, bool)
    nxt = np.zeros_like(flags)
    nxt[:-1] = flags[1:]
    if episode_index is not None:
        index = np.asarray(episode_index)
        nxt[:-1] &= index[1:] == index[:-1]
    return np.where(nxt & ~flags, TAKEOVER_REWARD, 0.0).astype(np.float32)


def relabel_episode(steps: list[Transition]) -> list[Transition]:
    """RLIF's labels on one whole episode's transitions, in place (and returned): the take-over rewards and
    `reward_source` INTERVENTION. `success`, `terminated` and `truncated` are left as they were."""
    rewards = takeover_rewards(np.array([t.intervention for t in steps], bool))
    for step, reward in zip(steps, rewards):
        step.reward = float(reward)
        step.reward_source = RewardSource.INTERVENTION
    return steps


def relabel_rows(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """RLIF's labels on an episode log's rows of whole episodes (`EpisodeLog.episode_rows`: `episode_index` tells
    the episodes apart), in place (and returned): `reward` (and `reward_source` when present); the episodes' ends
    are unchanged."""
    episode_index = rows.get("episode_index")
    rows["reward"] = takeover_rewards(rows["intervention"], episode_index)
    if "reward_source" in rows:
        rows["reward_source"] = np.full_like(rows["reward_source"], int(RewardSource.INTERVENTION))
    return rows


class InterventionReward(gym.Wrapper):
    """The actor's side of RLIF (see the module docstring): each step's reward is 0 and its `reward_source`
    INTERVENTION. The -1 of a take-over is placed on the step before it by `relabel_episode` once the episode is
    whole. StepInfo's `success` and the episode's end pass through untouched."""

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        StepInfo.of(info).reward_source = RewardSource.INTERVENTION
        return observation, 0.0, terminated, truncated, info
