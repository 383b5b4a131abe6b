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

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import check_device, check_train_config, log
from robot_rl.data.schema import EpisodeSource
from robot_rl.envs.factory import make_env
from robot_rl.envs.intervention import InterventionWrapper
from robot_rl.runtime.rollout import env_step, run_episodes, summarize
from robot_rl.runtime.run import SUMMARY, TrainingRun


def make_actor_env(cfg: DictConfig, seed: int, rng: np.random.Generator):
    """The env the actor trains in: the task env, with the reward classifier (`reward.classifier`)
    and a teleop device (`teleop.device`) wrapped around it when configured. With a classifier a sim
    task runs with `reward=dense`, so that only the classifier (not the sim's ground truth) ends episodes."""
    reward_cfg = cfg.get("reward") or {}
    if reward_cfg.get("classifier") and "reward" in cfg.task:
        cfg = cfg.copy()
        cfg.task.reward = "dense"
    env = make_env(cfg, seed=seed)
    if reward_cfg.get("classifier"):
        from robot_rl.envs.classifier_reward import ClassifierReward
        from robot_rl.reward.model import SuccessClassifier

        classifier = SuccessClassifier.load(str(reward_cfg.classifier), device=str(cfg.device))
        env = ClassifierReward(env, classifier, state_check=bool(reward_cfg.get("state_check", False)))
    teleop = OmegaConf.to_container(cfg.teleop, resolve=True) if cfg.get("teleop") else {}
    name = teleop.pop("device", None)
    if name:
        if name == "sim_operator":  # watches the sim it runs in
            from robot_rl.teleop.sim_operator import SimulatedOperator

            device = SimulatedOperator(env, rng=rng, **teleop)
        else:
            from robot_rl.teleop.devices import make_device

            device = make_device(name, **teleop)
        env = InterventionWrapper(env, device)
    return env


def evaluate(env, agent, episodes: int, rng: np.random.Generator, writer=None) -> dict:
    """Deterministic-policy rollouts; logged as eval episodes when a writer is given."""
    results = run_episodes(
        env, lambda obs: agent.act(obs, deterministic=True), episodes, rng, writer, EpisodeSource.EVAL
    )
    return summarize(results)


def train(cfg: DictConfig) -> dict:
    """`robot-rl train`: demos, then online RL with periodic eval and checkpoints; resumes a run_dir.
    Nothing in the run directory changes before the lock is held and everything is validated."""
    rt = check_train_config(cfg)
    check_device(cfg.device)
    with TrainingRun(cfg, rt) as run:
        torch.set_num_threads(rt.torch_threads)
        env = make_actor_env(cfg, run.seed, run.rng)
        eval_env = make_env(cfg, seed=run.seed + 10_000)  # the task's own success, no person: the truth
        run.setup(env.observation_space, int(env.action_space.shape[0]))
        learner, writer = run.learner, run.writer
        run.resume()
        run.collect_demos(env.env if isinstance(env, InterventionWrapper) else env)
        run.start_clock()
        if run.pending_eval():
            run.eval_round(eval_env, run.counts["env_steps"])
        reached = run.reached()
        while run.counts["env_steps"] < run.steps and not reached:
            observation = run.begin_episode(env)
            while True:
                t0 = time.perf_counter()
                if run.counts["env_steps"] < rt.random_steps:
                    action = run.rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
                else:
                    action = learner.agent.act(observation)
                transition = env_step(env, observation, action, writer.num_episodes, len(run.episode))
                run.record(transition)
                t1 = time.perf_counter()
                run.step_done()
                run.t_sim += t1 - t0
                run.t_learn += time.perf_counter() - t1
                if transition.terminated or transition.truncated:
                    break
                observation = transition.next_observation
            run.commit_online()
            if run.eval_due():
                run.eval_round(eval_env, run.counts["env_steps"])
                reached = run.reached()
            if run.out_of_wall_time():
                break
            run.maybe_report()
            if run.checkpoint_due():
                run.save_checkpoint()

        if not run.evals or run.evals[-1]["env_steps"] != run.counts["env_steps"]:
            run.eval_round(eval_env, run.counts["env_steps"])
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
