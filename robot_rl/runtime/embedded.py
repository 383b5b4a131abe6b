"""The embedded default: actor and learner interleaved in one process, over a `TrainingRun`.

Core split on a small CPU: the sim steps single-threaded (about 1-2 ms per 10 Hz control step) and
then the learner runs `agent.utd` critic updates with `runtime.torch_threads` intra-op threads (all
cores). The phases alternate, so neither starves the other; the progress line and summary.json
report the share of wall time spent in each.

The run directory, resume, bookkeeping, eval rounds, checkpoints and summary are the TrainingRun's
(robot_rl/runtime/run.py, which also explains how a killed run resumes exactly). In the sim with state
resets a killed and resumed run ends with the same counts, eval history and weights as one never killed
(bench/faults.py checks it). With physical resets or a real robot the learner state is still exact; the
world continues from a fresh reset.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

import numpy as np
import torch
from omegaconf import DictConfig

from robot_rl.config import check_device, log
from robot_rl.console.session import open_console
from robot_rl.data.schema import EpisodeSource
from robot_rl.envs.factory import make_actor_env, make_env, without_teleop
from robot_rl.envs.intervention_reward import check_reward_source
from robot_rl.robots.base import RobotUnavailable
from robot_rl.runtime.rollout import env_step, run_episodes, summarize
from robot_rl.runtime.run import SUMMARY, TrainingRun, check_train_config


def evaluate(env, agent, episodes: int, rng: np.random.Generator, writer=None) -> dict:
    """Deterministic-policy rollouts; logged as eval episodes when a writer is given."""
    results = run_episodes(
        env, lambda obs: agent.act(obs, deterministic=True), episodes, rng, writer, EpisodeSource.EVAL
    )
    return summarize(results)


def eval_round(run: TrainingRun, eval_env, attempts: int = 3) -> dict:
    """The eval round due now; a robot that goes away mid-round (a lost link) is waited for by the next
    reset, and the round completes from where it stopped (at most `attempts` tries)."""
    for attempt in range(1, attempts + 1):
        try:
            return run.eval_round(eval_env, run.counts["env_steps"])
        except RobotUnavailable as err:
            run.robot_losses += 1
            if attempt == attempts:
                raise
            log(f"[train] robot unavailable during eval ({err}); completing the round after the next reset")
    raise AssertionError("unreachable")


def train(cfg: DictConfig) -> dict:
    """`robot-rl train`: demos, then online RL with periodic eval and checkpoints; resumes a run_dir.
    Nothing in the run directory changes before the lock is held and everything is validated."""
    rt = check_train_config(cfg)
    check_reward_source(cfg, actor=True)  # reward.source=interventions needs a device: before the run dir is touched
    check_device(cfg.device)
    with TrainingRun(cfg, rt) as run, ExitStack() as envs:
        torch.set_num_threads(rt.torch_threads)
        console = open_console(cfg)  # the web page, when console=true or teleop=console
        if console is not None:
            envs.callback(console.close)
        page = console.device_for if console is not None and cfg.teleop.device == "console" else None
        env = make_actor_env(cfg, run.seed, run.rng, device_factory=page)
        envs.callback(env.close)  # a hardware robot disarms and lets go of its port
        eval_env = make_env(cfg, seed=run.seed + 10_000)  # the task's own success, no person: the truth
        envs.callback(eval_env.close)
        expert_env = without_teleop(env)  # scripted demos: the task env, no person, the task's reward
        if console is not None:  # the page guards every env that moves the robot (e-stop, arm, hold)
            env = console.gate(env)
            eval_env, expert_env = (
                console.gate(eval_env, "eval", person=False),
                console.gate(expert_env, "demo", person=False),
            )
        run.setup(env.observation_space, int(env.action_space.shape[0]))
        if console is not None:
            run.sinks.add(console.sink)
        writer = run.writer
        run.resume()
        run.collect_demos(expert_env)
        run.start_clock()
        if run.pending_eval():
            eval_round(run, eval_env)
        reached = run.reached()
        while run.counts["env_steps"] < run.steps and not reached:
            observation = run.begin_episode(env)  # a robot that stays away raises here: rerun to resume
            lost = None
            while True:
                t0 = time.perf_counter()
                action = run.act(observation, env.action_space)
                try:
                    transition = env_step(env, observation, action, writer.num_episodes, len(run.episode))
                except RobotUnavailable as err:  # the robot holds itself; the episode ends at its last step
                    lost = err
                    break
                run.learn_from(transition, t0)
                if transition.terminated or transition.truncated:
                    break
                observation = transition.next_observation
            if lost is not None and not run.cut_episode(lost):
                continue
            run.commit_online()
            if run.eval_due():
                eval_round(run, eval_env)
                reached = run.reached()
            if run.out_of_wall_time():
                break
            run.maybe_report()
            if run.checkpoint_due():
                run.save_checkpoint()

        if not run.evals or run.evals[-1]["env_steps"] != run.counts["env_steps"]:
            eval_round(run, eval_env)
        run.save_checkpoint()
        writer.close()
        summary = run.summary("train")
        final = summary["final_eval"]
        log(
            f"[train] done: {summary['env_steps']} env steps, {summary['critic_updates']} critic updates in "
            f"{run.wall_s:.0f}s; final eval success {final['success_rate']:.0%} "
            f"mean return {final['mean_return']:.2f} -> {run.run_dir / SUMMARY}"
        )
        return summary
