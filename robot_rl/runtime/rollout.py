"""Stepping an env and rolling out whole episodes, producing DESIGN's transitions."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from robot_rl.data.schema import EpisodeSource, Observation, ResetInfo, StepInfo, Transition, safety_bits

ActFn = Callable[[Observation], np.ndarray]


@dataclass
class EpisodeResult:
    length: int
    episode_return: float
    success: bool
    steps_to_success: int | None  # 1-based step at which success was first reported
    reset_s: float = 0.0  # wall seconds of the reset before it (the env's reset info)


def env_step(env: gym.Env, observation: Observation, action: np.ndarray, episode_id: int, step: int) -> Transition:
    """One env step as a Transition. `action` is the policy's proposal (`policy_action`); the executed action
    (`action`) is the safety layer's when it changed what ran (StepInfo's `executed_action`, see
    robot_rl/envs/safety.py), else a person's when one took over (`intervention_action`, see
    InterventionWrapper), else the proposal. The step's fields come from the env's StepInfo
    (`info["step_info"]`; defaults when it set none); `safety` holds the safety layer's actions as bits."""
    next_observation, reward, terminated, truncated, info = env.step(action)
    fields = StepInfo.of(dict(info))
    intervention = bool(fields.intervention)
    if fields.executed_action is not None:
        executed = fields.executed_action
    elif intervention and fields.intervention_action is not None:
        executed = fields.intervention_action
    else:
        executed = action
    return Transition(
        observation=observation,
        action=np.asarray(executed, np.float32),
        reward=float(reward),
        terminated=bool(terminated),
        truncated=bool(truncated),
        next_observation=next_observation,
        policy_action=np.asarray(action, np.float32),
        intervention=intervention,
        episode_id=episode_id,
        step=step,
        timestamp=time.time(),
        success=bool(fields.success),
        reward_source=fields.reward_source,
        grasp_penalty=float(fields.grasp_penalty),
        success_probability=float(fields.success_probability),
        label=fields.label,
        frame_age_s=float(fields.frame_age_s),
        safety=safety_bits(fields.safety_actions) if fields.safety_actions else 0,
        perturbation=fields.perturbation,
    )


def run_episode(
    env: gym.Env,
    act: ActFn,
    seed: int | None,
    episode_id: int = 0,
    on_transition: Callable[[Transition], None] | None = None,
) -> EpisodeResult:
    """Roll out one episode with `act`; each transition goes to `on_transition` (e.g. a log writer)."""
    observation, reset_info = env.reset(seed=seed)
    episode_return, steps_to_success, step = 0.0, None, 0
    while True:
        transition = env_step(env, observation, act(observation), episode_id, step)
        if on_transition is not None:
            on_transition(transition)
        step += 1
        episode_return += transition.reward
        if transition.success and steps_to_success is None:
            steps_to_success = step
        if transition.terminated or transition.truncated:
            return EpisodeResult(
                step,
                episode_return,
                steps_to_success is not None,
                steps_to_success,
                float(ResetInfo.of(reset_info).reset_s),
            )
        observation = transition.next_observation


def summarize(results: list[EpisodeResult]) -> dict[str, float | int | None]:
    """Success rate, mean return, mean steps to success (over successful episodes) of a set of episodes."""
    to_success = [r.steps_to_success for r in results if r.steps_to_success is not None]
    return {
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "mean_return": float(np.mean([r.episode_return for r in results])) if results else 0.0,
        "mean_steps_to_success": float(np.mean(to_success)) if to_success else None,
    }


def run_episodes(
    env: gym.Env,
    act: ActFn,
    episodes: int,
    rng: np.random.Generator,
    writer=None,
    source: EpisodeSource = EpisodeSource.EVAL,
    keep: Callable[[EpisodeResult], bool] | None = None,
) -> list[EpisodeResult]:
    """Roll out `episodes` episodes; with a writer each is committed to the log as `source` (or
    discarded when `keep` rejects it), its episode id being its index in the log. Returns the kept
    episodes' results."""
    results: list[EpisodeResult] = []
    attempts = 0
    while len(results) < episodes:
        if keep is not None and attempts >= 4 * episodes + 10:
            raise RuntimeError(
                f"only {len(results)} of {attempts} episodes were kept; the expert is failing (check the task config)"
            )
        attempts += 1
        episode_id = writer.num_episodes if writer is not None else len(results)
        result = run_episode(env, act, int(rng.integers(2**31)), episode_id, writer.add if writer is not None else None)
        if keep is not None and not keep(result):
            if writer is not None:
                writer.discard_episode()
            continue
        if writer is not None:
            writer.end_episode(source, reset_s=result.reset_s)
        results.append(result)
    return results
