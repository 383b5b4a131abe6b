"""The embedded default: actor and learner interleaved in one process.

Core split on a small CPU: the sim steps single-threaded (about 1-2 ms per 10 Hz control step) and
then the learner runs `agent.utd` critic updates with `runtime.torch_threads` intra-op threads (all
cores). The phases alternate, so neither starves the other; the progress line and summary.json
report the share of wall time spent in each.

A run directory changes only after `train` holds its lock and has validated the config, the
checkpoint, the episode log and the demos (robot_rl/runtime/run_dir.py). The episode log is the run's
record: the counts, the demos and the eval history are read from it, so a resumed run is the run that
was never killed:
  - every episode draws its randomness from its own stream (seed, kind, index), so it does not depend
    on what ran before it in this process;
  - a checkpoint records how many log episodes its learner state has seen (`log_episodes`); a restart
    loads it and replays the episodes committed after it through the learner with the same `act` and
    `update` calls as live (checking each `act` against the logged policy action), so the learner is
    where it was at the last commit; the episode the kill interrupted then runs again, as it would have;
  - demos are counted in the log, and an interrupted demo phase records (or copies) the rest;
  - eval episodes carry the env step they evaluate (`meta/eval_step`); an eval round the kill
    interrupted is completed;
  - the last episode is cut at `steps` (truncated), so no step is ever counted without being logged.
In the sim with state resets a killed and resumed run ends with the same counts, eval history and
weights as one never killed (bench/faults.py checks it). With physical resets or a real robot the learner
state is still exact; the world continues from a fresh reset.
"""
from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import RuntimeConfig, agent_config, check_device, check_train_config, log
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter
from robot_rl.data.files import write_atomic
from robot_rl.data.schema import EpisodeLabel, EpisodeSource, ResetInfo, RewardSource, Transition, count_takeovers
from robot_rl.envs.factory import make_env
from robot_rl.envs.intervention import InterventionWrapper
from robot_rl.failpoints import failpoint
from robot_rl.runtime.learner import PRIOR_SOURCES, Learner
from robot_rl.runtime.plots import plot_learning_curve
from robot_rl.runtime.rollout import env_step, run_episode, run_episodes, summarize
from robot_rl.runtime.run_dir import RunLock, open_run_dir, remove_stale_temps

CHECKPOINT = "checkpoint.pt"
LOG = "episodes.zarr"
SUMMARY = "summary.json"
DEMO_ATTEMPTS = 5  # scripted-demo attempts per kept demo before the expert is declared broken


def make_learner(cfg: DictConfig, rt: RuntimeConfig, observation_space, action_dim: int) -> Learner:
    """The run's learner: replay capacity `runtime.image_replay_capacity` when observations hold images."""
    has_images = any(len(box.shape) == 3 for box in observation_space.spaces.values())
    return Learner(observation_space, action_dim, agent_config(cfg),
                   rt.image_replay_capacity if has_images else rt.replay_capacity, cfg.device, int(cfg.seed))


def open_demos(demos: str) -> EpisodeLog:
    """The demo store `demos` (validated), with at least one demo or intervention episode."""
    store = EpisodeLog(demo_store_path(demos))
    if not np.isin(store.episode_meta()["source"], [int(s) for s in PRIOR_SOURCES]).any():
        raise ValueError(f"demos={demos} holds no demo episodes: record some with "
                         "`robot-rl record-demos` or drop demos= to record scripted ones")
    return store


def copy_demos(demos: str, writer: EpisodeLogWriter, who: str = "train", have: int = 0) -> int:
    """Copy the demo and intervention episodes of the store `demos` into the run's log, skipping the
    first `have` (already copied by an interrupted run); returns how many the log then holds."""
    copied = writer.copy_episodes(open_demos(demos), sources=PRIOR_SOURCES, skip=have)
    log(f"[{who}] copied {copied} demo episodes from {demos}")
    return have + copied


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


def online_counts(log: EpisodeLog, upto: int | None = None) -> dict[str, int]:
    """What a run has done, from its log's online episodes (the first `upto` episodes when given):
    env_steps, episodes, interventions, intervention_steps, discarded."""
    meta = log.episode_meta()
    online = meta["source"] == EpisodeSource.ONLINE
    if upto is not None:
        online &= np.arange(len(online)) < upto
    return {"env_steps": int(meta["length"][online].sum()), "episodes": int(online.sum()),
            "interventions": int(meta["interventions"][online].sum()),
            "intervention_steps": int(meta["intervention_steps"][online].sum()),
            "discarded": int((meta["label"][online] == EpisodeLabel.DISCARD).sum())}


def evaluate(env, agent, episodes: int, rng: np.random.Generator, writer=None) -> dict:
    """Deterministic-policy rollouts; logged as eval episodes when a writer is given."""
    results = run_episodes(env, lambda obs: agent.act(obs, deterministic=True), episodes, rng, writer,
                           EpisodeSource.EVAL)
    return summarize(results)


def reseed(rng: np.random.Generator, seed: int, *stream: int) -> np.random.Generator:
    """Point `rng` (in place: the expert and the simulated operator hold it) at the random stream
    (seed, *stream): one stream per episode, so an episode does not depend on what ran before it."""
    rng.bit_generator.state = np.random.PCG64(np.random.SeedSequence([seed, *stream])).state
    return rng


def stream_seed(seed: int, *stream: int) -> int:
    """An env reset seed from the random stream (seed, *stream)."""
    return int(np.random.default_rng([seed, *stream]).integers(2**31))


def logged_transitions(episode: dict[str, np.ndarray], keys: list[str]) -> list[Transition]:
    """The Transitions of one logged episode (`EpisodeLog.episode`), as the runner built them live."""
    return [Transition(
        observation={k: episode[f"observation/{k}"][t] for k in keys},
        next_observation={k: episode[f"next_observation/{k}"][t] for k in keys},
        action=episode["action"][t], policy_action=episode["policy_action"][t], reward=float(episode["reward"][t]),
        terminated=bool(episode["terminated"][t]), truncated=bool(episode["truncated"][t]),
        intervention=bool(episode["intervention"][t]), step=int(episode["step"][t]),
        success=bool(episode["success"][t]), reward_source=RewardSource(int(episode["reward_source"][t])),
        grasp_penalty=float(episode["grasp_penalty"][t]))
        for t in range(len(episode["reward"]))]


class EmbeddedRun:
    """One `robot-rl train` run in a locked, validated run directory (see the module docstring)."""

    def __init__(self, cfg: DictConfig, rt: RuntimeConfig, run_dir: Path) -> None:
        self.cfg, self.rt, self.run_dir = cfg, rt, run_dir
        self.seed, self.steps = int(cfg.seed), int(cfg.steps)
        torch.set_num_threads(rt.torch_threads)
        self.rng = np.random.default_rng(self.seed)
        self.env = make_actor_env(cfg, self.seed, self.rng)
        self.eval_env = make_env(cfg, seed=self.seed + 10_000)  # the task's own success, no person: the truth
        self.action_dim = int(self.env.action_space.shape[0])
        self.learner = make_learner(cfg, rt, self.env.observation_space, self.action_dim)
        self.obs_keys = list(self.env.observation_space.spaces)

        # validate everything the run directory holds before anything in it changes
        saved = self.learner.load(run_dir / CHECKPOINT) if (run_dir / CHECKPOINT).exists() else {}
        existing = EpisodeLog(run_dir / LOG) if (run_dir / LOG).exists() else None
        committed = existing.num_episodes if existing is not None else 0
        # episodes the checkpoint's learner has seen (a checkpoint from before log_episodes: all of them)
        self.covered = int(saved.get("log_episodes", committed)) if saved else 0
        if self.covered > committed:
            raise ValueError(f"{run_dir / CHECKPOINT} has seen {self.covered} episodes but {run_dir / LOG} holds "
                             f"{committed}: the log was replaced or cut; restore it, or delete the checkpoint "
                             "to retrain from the log")
        if cfg.demos and self._count(existing, PRIOR_SOURCES) == 0:
            open_demos(cfg.demos)
        self.writer = EpisodeLogWriter(run_dir / LOG, self.env.observation_space, self.action_dim,
                                       config=OmegaConf.to_container(cfg, resolve=True))
        write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

        self.log = EpisodeLog(run_dir / LOG)
        self.wall_s = float(saved.get("wall_s", 0.0))
        self.counts = online_counts(self.log, self.covered)
        self.recent: deque[bool] = deque(maxlen=20)
        self.last_update: dict[str, float] = {}
        self.t_sim = self.t_learn = 0.0
        self.evals: list[dict] = []
        self.rounds: dict[int, list[int]] = {}  # eval_step -> log indices of its eval episodes

    # ------------------------------------------------------------------ reading the log
    def _count(self, log: EpisodeLog | None, sources) -> int:
        if log is None or log.num_episodes == 0:
            return 0
        return int(np.isin(log.episode_meta()["source"], [int(s) for s in sources]).sum())

    def _read_rounds(self) -> None:
        """The eval rounds `train` logged (eval_step >= 0), in log order."""
        self.log.refresh()
        meta = self.log.episode_meta()
        self.rounds = {}
        for i in np.flatnonzero((meta["source"] == EpisodeSource.EVAL) & (meta["eval_step"] >= 0)):
            self.rounds.setdefault(int(meta["eval_step"][i]), []).append(int(i))

    def eval_result(self, eval_step: int) -> dict:
        """An eval round's result, from its logged episodes."""
        meta, ends = self.log.episode_meta(), self.log.episode_ends
        starts = np.concatenate([[0], ends[:-1]])
        episodes = self.rounds[eval_step]
        to_success = []
        for i in episodes:
            hits = np.flatnonzero(self.log.read("success", slice(starts[i], ends[i])))
            if len(hits):
                to_success.append(int(hits[0]) + 1)
        online = np.flatnonzero(meta["source"] == EpisodeSource.ONLINE)
        first = starts[online[0]] if len(online) else starts[episodes[0]]
        first_online, end = (float(t) for t in self.log.read("timestamp", [first, ends[episodes[-1]] - 1]))
        return {"episodes": len(episodes), "success_rate": float(np.mean(meta["success"][episodes])),
                "mean_return": float(np.mean(meta["episode_return"][episodes].astype(np.float64))),
                "mean_steps_to_success": float(np.mean(to_success)) if to_success else None,
                "env_steps": eval_step, "wall_s": round(end - first_online, 1)}

    # ------------------------------------------------------------------ the learner's side of a step / episode
    def step_done(self) -> None:
        """After each online env step (live or replayed): count it, then `utd` updates once learning started."""
        self.counts["env_steps"] += 1
        if len(self.learner.online) >= self.rt.learning_starts:
            self.last_update = self.learner.update()

    def end_online_episode(self, steps: list[Transition]) -> None:
        """A committed online episode: counters, and its steps to the learner unless a person discarded it."""
        flags = np.array([t.intervention for t in steps])
        self.counts["interventions"] += count_takeovers(flags)
        self.counts["intervention_steps"] += int(flags.sum())
        self.counts["episodes"] += 1
        if steps[-1].label == EpisodeLabel.DISCARD:
            self.counts["discarded"] += 1
        else:
            for step in steps:
                self.learner.add(step)
        self.recent.append(any(t.success for t in steps))

    def feed_logged(self, index: int) -> list[Transition]:
        """The Transitions of log episode `index`; a demo or intervention episode also goes to the prior
        buffer (an online one is the caller's: `end_online_episode`)."""
        meta = self.log.episode_meta()
        steps = logged_transitions(self.log.episode(index), self.obs_keys)
        steps[-1].label = EpisodeLabel(int(meta["label"][index]))
        source = EpisodeSource(int(meta["source"][index]))
        if source in PRIOR_SOURCES and steps[-1].label != EpisodeLabel.DISCARD:
            for step in steps:
                self.learner.add(step, source)
        return steps

    # ------------------------------------------------------------------ resume
    def replay(self) -> None:
        """Bring the learner from the checkpoint to the last commit (see the module docstring)."""
        self.learner.load_log(self.log, upto=self.covered)
        meta = self.log.episode_meta()
        for i in np.flatnonzero(meta["source"][:self.covered] == EpisodeSource.ONLINE)[-20:]:
            self.recent.append(bool(meta["success"][i]))
        replayed = steps = mismatches = 0
        for index in range(self.covered, self.log.num_episodes):
            source = EpisodeSource(int(meta["source"][index]))
            if source in PRIOR_SOURCES:
                self.feed_logged(index)
            elif source == EpisodeSource.ONLINE:
                episode = self.feed_logged(index)
                for step in episode:
                    if self.counts["env_steps"] >= self.rt.random_steps:
                        action = self.learner.agent.act(step.observation)
                        mismatches += int(not np.array_equal(action, step.policy_action))
                    self.step_done()
                self.end_online_episode(episode)
                steps += len(episode)
            replayed += 1
        self._read_rounds()
        self.evals = [self.eval_result(x) for x in self.rounds]
        if self.log.num_episodes:
            note = f"; {mismatches} of {steps} replayed policy actions differ from the log" if mismatches else ""
            log(f"[train] resuming {self.run_dir}: {self.log.num_episodes} episodes in the log, "
                f"{self.counts['env_steps']} online steps; replayed {replayed} episodes ({steps} steps) after the "
                f"checkpoint, {self.learner.agent.num_updates} critic updates done{note}")

    # ------------------------------------------------------------------ demos
    def collect_demos(self) -> None:
        """Record `num_demos` scripted demos (or copy `demos`), counting those an interrupted run logged;
        the demo phase is over once the log holds an online episode."""
        if self._count(self.log, [EpisodeSource.ONLINE]):
            return
        have = self._count(self.log, PRIOR_SOURCES)
        start = self.writer.num_episodes
        if self.cfg.demos:
            copy_demos(self.cfg.demos, self.writer, have=have)
        elif have < self.cfg.num_demos:
            from robot_rl.tasks import make_expert
            env = self.env.env if isinstance(self.env, InterventionWrapper) else self.env
            expert = make_expert(env, noise=float(self.cfg.expert_noise), rng=self.rng)
            lengths = []
            for k in range(have, self.cfg.num_demos):
                for attempt in range(DEMO_ATTEMPTS):
                    reseed(self.rng, self.seed, EpisodeSource.DEMO, k, attempt)
                    result = run_episode(env, expert.act, int(self.rng.integers(2**31)), self.writer.num_episodes,
                                         self.writer.add)
                    if result.success:
                        self.writer.end_episode(EpisodeSource.DEMO, reset_s=result.reset_s)
                        failpoint("commit:demo")
                        lengths.append(result.length)
                        break
                    self.writer.discard_episode()
                else:
                    raise RuntimeError(f"the scripted expert failed {DEMO_ATTEMPTS} times in a row on demo {k}: "
                                       "check the task config")
            log(f"[train] recorded {len(lengths)} scripted demos (mean length {np.mean(lengths):.1f} steps)")
        self.log.refresh()
        for index in range(start, self.log.num_episodes):
            self.feed_logged(index)

    # ------------------------------------------------------------------ evaluation, checkpoints
    def eval_round(self, eval_step: int) -> dict:
        """The eval round at `eval_step`: its missing episodes run (each from its own seed) and logged,
        then its result, read from the log, appended to the history."""
        done = len(self.rounds.get(eval_step, []))
        for i in range(done, self.rt.eval_episodes):
            result = run_episode(self.eval_env, lambda obs: self.learner.agent.act(obs, deterministic=True),
                                 stream_seed(self.seed, EpisodeSource.EVAL, eval_step, i), self.writer.num_episodes,
                                 self.writer.add)
            self.writer.end_episode(EpisodeSource.EVAL, reset_s=result.reset_s, eval_step=eval_step)
            failpoint("commit:eval")
        self._read_rounds()
        result = self.eval_result(eval_step)
        self.evals = [e for e in self.evals if e["env_steps"] != eval_step] + [result]
        return result

    def next_eval(self) -> int:
        last = self.evals[-1]["env_steps"] if self.evals else 0
        return (last // self.rt.eval_every + 1) * self.rt.eval_every

    def save_checkpoint(self, start_wall: float) -> None:
        self.wall_s = time.perf_counter() - start_wall
        self.learner.save(self.run_dir / CHECKPOINT, {"log_episodes": self.writer.num_episodes,
                                                     "env_steps": self.counts["env_steps"], "wall_s": self.wall_s})

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        rt, learner, env, writer = self.rt, self.learner, self.env, self.writer
        self.replay()
        self.collect_demos()
        start_wall = time.perf_counter() - self.wall_s
        env_steps = self.counts["env_steps"]
        if env_steps in self.rounds:
            pending = len(self.rounds[env_steps]) < rt.eval_episodes  # a kill came mid-round
        else:
            pending = env_steps > 0 and (env_steps >= self.next_eval() or env_steps >= self.steps)
        if pending:
            self.eval_round(env_steps)
        reached = bool(rt.stop_at_success is not None and self.evals
                       and self.evals[-1]["success_rate"] >= rt.stop_at_success)
        next_ckpt = self.counts["env_steps"] + rt.checkpoint_every
        next_log = (self.counts["env_steps"] // rt.log_every + 1) * rt.log_every
        updates_window = (learner.agent.num_updates, time.perf_counter())
        window = {"interventions": 0, "intervention_steps": 0, "episodes": 0}
        while self.counts["env_steps"] < self.steps and not reached:
            reseed(self.rng, self.seed, EpisodeSource.ONLINE, self.counts["episodes"])
            observation, reset_info = env.reset(seed=int(self.rng.integers(2**31)))
            episode: list[Transition] = []
            while True:
                t0 = time.perf_counter()
                if self.counts["env_steps"] < rt.random_steps:
                    action = self.rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
                else:
                    action = learner.agent.act(observation)
                transition = env_step(env, observation, action, writer.num_episodes, len(episode))
                if self.counts["env_steps"] + 1 >= self.steps:
                    transition.truncated = transition.truncated or not transition.terminated  # the step budget
                writer.add(transition)
                episode.append(transition)
                t1 = time.perf_counter()
                self.step_done()
                self.t_sim += t1 - t0
                self.t_learn += time.perf_counter() - t1
                if transition.terminated or transition.truncated:
                    break
                observation = transition.next_observation
            writer.end_episode(EpisodeSource.ONLINE, reset_s=float(ResetInfo.of(reset_info).reset_s))
            failpoint("commit:online")
            self.end_online_episode(episode)
            flags = np.array([t.intervention for t in episode])
            window["interventions"] += count_takeovers(flags)
            window["intervention_steps"] += int(flags.sum())
            window["episodes"] += 1
            env_steps = self.counts["env_steps"]
            if env_steps >= self.next_eval() or env_steps >= self.steps:
                result = self.eval_round(env_steps)
                log(f"[eval] step {env_steps}: success {result['success_rate']:.0%} "
                    f"return {result['mean_return']:.2f} over {result['episodes']} episodes")
                reached = rt.stop_at_success is not None and result["success_rate"] >= rt.stop_at_success
            if rt.max_wall_s is not None and time.perf_counter() - start_wall >= rt.max_wall_s:
                log(f"[train] wall budget runtime.max_wall_s={rt.max_wall_s:.0f}s spent at step {env_steps}")
                break
            if env_steps >= next_log:
                now = time.perf_counter()
                ups = (learner.agent.num_updates - updates_window[0]) / max(now - updates_window[1], 1e-9)
                updates_window = (learner.agent.num_updates, now)
                busy = max(self.t_sim + self.t_learn, 1e-9)
                log(f"[train] step {env_steps}/{self.steps} | episodes {self.counts['episodes']} | "
                    f"success(last {len(self.recent)}) {np.mean(self.recent):.0%} | {ups:.0f} updates/s | "
                    f"Q {self.last_update.get('q', 0):.2f} temperature {self.last_update.get('temperature', 0):.3g} | "
                    f"interventions {window['interventions']} in {window['episodes']} episodes "
                    f"({window['intervention_steps']} steps) | "
                    f"sim {self.t_sim / busy:.0%} learner {self.t_learn / busy:.0%} | {now - start_wall:.0f}s")
                next_log = (env_steps // rt.log_every + 1) * rt.log_every
                window = dict.fromkeys(window, 0)
            if env_steps >= next_ckpt:
                self.save_checkpoint(start_wall)
                next_ckpt = env_steps + rt.checkpoint_every

        if not self.evals or self.evals[-1]["env_steps"] != self.counts["env_steps"]:
            self.eval_round(self.counts["env_steps"])
        self.save_checkpoint(start_wall)
        writer.close()
        return self.finish()

    def finish(self) -> dict:
        """summary.json and learning_curve.png, each written atomically."""
        cfg, final = self.cfg, self.evals[-1]
        busy = max(self.t_sim + self.t_learn, 1e-9)
        summary = {
            "command": "train", "run_dir": str(self.run_dir), "task": cfg.task.name, "seed": self.seed,
            "env_steps": self.counts["env_steps"], "episodes": self.counts["episodes"],
            "critic_updates": self.learner.agent.num_updates, "wall_s": round(self.wall_s, 1),
            "interventions": self.counts["interventions"], "intervention_steps": self.counts["intervention_steps"],
            "discarded_episodes": self.counts["discarded"],
            "demo_episodes": self._count(self.log, PRIOR_SOURCES),
            "replay": {"prior": len(self.learner.prior), "online": len(self.learner.online)},
            "final_eval": final, "success_rate": final["success_rate"], "mean_return": final["mean_return"],
            "evals": self.evals,
            "time_split": {"sim": round(self.t_sim / busy, 3), "learner": round(self.t_learn / busy, 3),
                           "torch_threads": self.rt.torch_threads},
        }
        write_atomic(self.run_dir / SUMMARY, json.dumps(summary, indent=2))
        plot_learning_curve(self.evals, self.run_dir / "learning_curve.png", title=f"{cfg.task.name} seed {self.seed}")
        log(f"[train] done: {self.counts['env_steps']} env steps, {self.learner.agent.num_updates} critic updates in "
            f"{self.wall_s:.0f}s; final eval success {final['success_rate']:.0%} "
            f"mean return {final['mean_return']:.2f} -> {self.run_dir / SUMMARY}")
        return summary


def train(cfg: DictConfig) -> dict:
    """`robot-rl train`: demos, then online RL with periodic eval and checkpoints; resumes a run_dir.
    Nothing in the run directory changes before the lock is held and everything is validated."""
    rt = check_train_config(cfg)
    check_device(cfg.device)
    run_dir = open_run_dir(cfg.run_dir)
    with RunLock(run_dir):
        remove_stale_temps(run_dir)
        return EmbeddedRun(cfg, rt, run_dir).run()
