"""The embedded default: actor and learner interleaved in one process.

Core split on a small CPU: the sim steps single-threaded (about 1-2 ms per 10 Hz control step) and
then the learner runs `agent.utd` critic updates with `runtime.torch_threads` intra-op threads (all
cores). The phases alternate, so neither starves the other; the progress line and summary.json
report the share of wall time spent in each.
"""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robot_rl.agents.sac import SACConfig
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter
from robot_rl.data.schema import EpisodeLabel, EpisodeSource, Transition, count_takeovers
from robot_rl.envs.factory import make_env
from robot_rl.envs.intervention import InterventionWrapper
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.plots import plot_learning_curve
from robot_rl.runtime.rollout import env_step, run_episodes, summarize

CHECKPOINT = "checkpoint.pt"
LOG = "episodes.zarr"


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class RuntimeConfig:
    """The `runtime` group, typed (see configs/runtime/embedded.yaml)."""

    torch_threads: int = 2
    replay_capacity: int = 1_000_000
    image_replay_capacity: int = 50_000  # per buffer, when observations hold images (~100 kB a step)
    learning_starts: int = 256
    random_steps: int = 0
    eval_every: int = 1000
    eval_episodes: int = 50
    checkpoint_every: int = 1000
    log_every: int = 500
    stop_at_success: float | None = None
    max_wall_s: float | None = None


def typed(node: DictConfig, schema: type, name: str):
    """`node` checked against the dataclass `schema`: a one-line error names a bad key or value."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        reason = str(err).splitlines()[0]
        raise ValueError(f"bad value for {name}{'.' + key if key else ''}: {reason}") from None


def agent_config(cfg: DictConfig) -> SACConfig:
    return typed(cfg.agent, SACConfig, "agent")


def check_train_config(cfg: DictConfig) -> RuntimeConfig:
    """Validate the top-level train keys and return the typed runtime group."""
    for key in ("steps", "seed", "num_demos"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise ValueError(f"{key}={cfg[key]!r} must be a non-negative integer")
    agent_config(cfg)
    return typed(cfg.runtime, RuntimeConfig, "runtime")


def make_learner(cfg: DictConfig, rt: RuntimeConfig, observation_space, action_dim: int) -> Learner:
    """The run's learner: replay capacity `runtime.image_replay_capacity` when observations hold images."""
    has_images = any(len(box.shape) == 3 for box in observation_space.spaces.values())
    return Learner(observation_space, action_dim, agent_config(cfg),
                   rt.image_replay_capacity if has_images else rt.replay_capacity, cfg.device, int(cfg.seed))


def copy_demos(demos: str, writer: EpisodeLogWriter, who: str = "train") -> int:
    """Copy the demo and intervention episodes of the store `demos` into the run's log."""
    copied = writer.copy_episodes(EpisodeLog(demo_store_path(demos)),
                                  sources={EpisodeSource.DEMO, EpisodeSource.INTERVENTION})
    log(f"[{who}] copied {copied} demo episodes from {demos}")
    if copied == 0:
        raise ValueError(f"demos={demos} holds no demo episodes: record some with "
                         "`robot-rl record-demos` or drop demos= to record scripted ones")
    return copied


def collect_demos(cfg: DictConfig, env, writer: EpisodeLogWriter, rng: np.random.Generator) -> None:
    """Record demos with the task's scripted expert (sim), or copy them from `cfg.demos`."""
    if cfg.demos:
        copy_demos(cfg.demos, writer)
        return
    if cfg.num_demos == 0:
        return
    from robot_rl.teleop.scripted import make_expert
    expert = make_expert(env, noise=float(cfg.expert_noise), rng=rng)
    results = run_episodes(env, expert.act, cfg.num_demos, rng, writer, EpisodeSource.DEMO,
                           keep=lambda r: r.success)
    log(f"[train] recorded {len(results)} scripted demos "
        f"(mean length {np.mean([r.length for r in results]):.1f} steps)")


def demo_store_path(path: str) -> Path:
    """A demo store given as the store itself or as a run/output directory holding episodes.zarr."""
    p = Path(path)
    return p if p.suffix == ".zarr" or not (p / LOG).exists() else p / LOG


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


def online_counts(log: EpisodeLog) -> dict[str, int]:
    """What a resumed run has done, from its log's online episodes: env_steps, episodes,
    interventions, intervention_steps, discarded."""
    meta = log.episode_meta()
    online = meta["source"] == EpisodeSource.ONLINE
    return {"env_steps": int(meta["length"][online].sum()), "episodes": int(online.sum()),
            "interventions": int(meta["interventions"][online].sum()),
            "intervention_steps": int(meta["intervention_steps"][online].sum()),
            "discarded": int((meta["label"][online] == EpisodeLabel.DISCARD).sum())}


def evaluate(env, agent, episodes: int, rng: np.random.Generator, writer=None) -> dict:
    """Deterministic-policy rollouts; logged as eval episodes when a writer is given."""
    results = run_episodes(env, lambda obs: agent.act(obs, deterministic=True), episodes, rng, writer,
                           EpisodeSource.EVAL)
    return summarize(results)


def train(cfg: DictConfig) -> dict:
    """`robot-rl train`: demos, then online RL with periodic eval and checkpoints; resumes a run_dir."""
    rt = check_train_config(cfg)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.set_num_threads(rt.torch_threads)
    rng = np.random.default_rng(cfg.seed)
    env = make_actor_env(cfg, cfg.seed, rng)
    eval_env = make_env(cfg, seed=cfg.seed + 10_000)  # the task's own success, no person: the truth
    writer = EpisodeLogWriter(run_dir / LOG, env.observation_space, env.action_space.shape[0],
                              config=OmegaConf.to_container(cfg, resolve=True))
    learner = make_learner(cfg, rt, env.observation_space, env.action_space.shape[0])
    state = {"env_steps": 0, "episodes": 0, "evals": [], "wall_s": 0.0, "rng": None,
             "interventions": 0, "intervention_steps": 0, "discarded": 0}

    checkpoint = run_dir / CHECKPOINT
    existing = EpisodeLog(run_dir / LOG) if writer.num_episodes else None
    if checkpoint.exists():
        state.update(learner.load(checkpoint))
        rng.bit_generator.state = state["rng"]
    if existing is not None:
        learner.load_log(existing)
        state.update(online_counts(existing))
        log(f"[train] resuming {run_dir}: {existing.num_episodes} episodes in the log, "
            f"{state['env_steps']} online steps, {learner.agent.num_updates} critic updates done")
    if len(learner.prior) == 0:
        collect_demos(cfg, env.env if isinstance(env, InterventionWrapper) else env, writer, rng)
        learner.load_log(EpisodeLog(run_dir / LOG), online=False)

    steps = int(cfg.steps)
    start_wall = time.perf_counter() - state["wall_s"]
    t_sim = t_learn = 0.0
    recent = deque(maxlen=20)
    updates_window = (learner.agent.num_updates, time.perf_counter())
    next_eval = (state["env_steps"] // rt.eval_every + 1) * rt.eval_every
    next_ckpt = state["env_steps"] + rt.checkpoint_every
    next_log = (state["env_steps"] // rt.log_every + 1) * rt.log_every
    last_eval = state["evals"][-1] if state["evals"] else None
    reached = bool(rt.stop_at_success is not None and last_eval and last_eval["success_rate"] >= rt.stop_at_success)

    def save_checkpoint() -> None:
        state["wall_s"] = time.perf_counter() - start_wall
        state["rng"] = rng.bit_generator.state
        learner.save(checkpoint, state)

    def run_eval() -> dict:
        result = evaluate(eval_env, learner.agent, rt.eval_episodes, rng, writer)
        result.update(env_steps=state["env_steps"], wall_s=round(time.perf_counter() - start_wall, 1))
        state["evals"].append(result)
        return result

    observation, reset_info = env.reset(seed=int(rng.integers(2**31)))
    episode: list[Transition] = []  # the episode in progress: the learner gets it once it ends unless discarded
    window = {"interventions": 0, "intervention_steps": 0, "episodes": 0}
    last_update: dict[str, float] = {}
    while state["env_steps"] < steps and not reached:
        t0 = time.perf_counter()
        if state["env_steps"] < rt.random_steps:
            action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        else:
            action = learner.agent.act(observation)
        transition = env_step(env, observation, action, writer.num_episodes, len(episode))
        writer.add(transition)
        episode.append(transition)
        state["env_steps"] += 1
        t1 = time.perf_counter()
        if len(learner.online) >= rt.learning_starts:
            last_update = learner.update()
        t2 = time.perf_counter()
        t_sim += t1 - t0
        t_learn += t2 - t1
        observation = transition.next_observation
        if not (transition.terminated or transition.truncated):
            continue
        # episode boundary: commit it, hand it to the learner, then evaluate / checkpoint / report when due
        writer.end_episode(EpisodeSource.ONLINE, reset_s=float(reset_info.get("reset_s", 0.0)))
        flags = np.array([t.intervention for t in episode])
        takeovers, steps_in = count_takeovers(flags), int(flags.sum())
        state["interventions"] += takeovers
        state["intervention_steps"] += steps_in
        window["interventions"] += takeovers
        window["intervention_steps"] += steps_in
        window["episodes"] += 1
        if transition.label == EpisodeLabel.DISCARD:
            state["discarded"] += 1
        else:
            for step in episode:
                learner.add(step)
        episode = []
        state["episodes"] += 1
        recent.append(transition.success)
        observation, reset_info = env.reset(seed=int(rng.integers(2**31)))
        if state["env_steps"] >= next_eval or state["env_steps"] >= steps:
            result = run_eval()
            log(f"[eval] step {state['env_steps']}: success {result['success_rate']:.0%} "
                f"return {result['mean_return']:.2f} over {result['episodes']} episodes")
            next_eval = (state["env_steps"] // rt.eval_every + 1) * rt.eval_every
            reached = rt.stop_at_success is not None and result["success_rate"] >= rt.stop_at_success
        if rt.max_wall_s is not None and time.perf_counter() - start_wall >= rt.max_wall_s:
            log(f"[train] wall budget runtime.max_wall_s={rt.max_wall_s:.0f}s spent at step {state['env_steps']}")
            break
        if state["env_steps"] >= next_log:
            now = time.perf_counter()
            ups = (learner.agent.num_updates - updates_window[0]) / max(now - updates_window[1], 1e-9)
            updates_window = (learner.agent.num_updates, now)
            busy = max(t_sim + t_learn, 1e-9)
            log(f"[train] step {state['env_steps']}/{steps} | episodes {state['episodes']} | "
                f"success(last {len(recent)}) {np.mean(recent):.0%} | {ups:.0f} updates/s | "
                f"Q {last_update.get('q', 0):.2f} temperature {last_update.get('temperature', 0):.3g} | "
                f"interventions {window['interventions']} in {window['episodes']} episodes "
                f"({window['intervention_steps']} steps) | "
                f"sim {t_sim / busy:.0%} learner {t_learn / busy:.0%} | {now - start_wall:.0f}s")
            next_log = (state["env_steps"] // rt.log_every + 1) * rt.log_every
            window = dict.fromkeys(window, 0)
        if state["env_steps"] >= next_ckpt:
            save_checkpoint()
            next_ckpt = state["env_steps"] + rt.checkpoint_every
    writer.discard_episode()

    if not state["evals"] or state["evals"][-1]["env_steps"] != state["env_steps"]:
        run_eval()
    save_checkpoint()
    writer.close()
    final = state["evals"][-1]
    busy = max(t_sim + t_learn, 1e-9)
    summary = {
        "command": "train", "run_dir": str(run_dir), "task": cfg.task.name, "seed": int(cfg.seed),
        "env_steps": state["env_steps"], "episodes": state["episodes"],
        "critic_updates": learner.agent.num_updates, "wall_s": round(state["wall_s"], 1),
        "interventions": state["interventions"], "intervention_steps": state["intervention_steps"],
        "discarded_episodes": state["discarded"], "replay": {"prior": len(learner.prior), "online": len(learner.online)},
        "final_eval": final, "success_rate": final["success_rate"], "mean_return": final["mean_return"],
        "evals": state["evals"],
        "time_split": {"sim": round(t_sim / busy, 3), "learner": round(t_learn / busy, 3),
                       "torch_threads": rt.torch_threads},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_learning_curve(state["evals"], run_dir / "learning_curve.png", title=f"{cfg.task.name} seed {cfg.seed}")
    log(f"[train] done: {state['env_steps']} env steps, {learner.agent.num_updates} critic updates in "
        f"{state['wall_s']:.0f}s; final eval success {final['success_rate']:.0%} "
        f"mean return {final['mean_return']:.2f} -> {run_dir / 'summary.json'}")
    return summary
