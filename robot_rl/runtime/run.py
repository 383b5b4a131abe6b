"""`TrainingRun`: the one owner of a training run directory, for the embedded runner and the ROS learner.

Layout of a run directory:
  checkpoint.pt    the learner (agent, sampler RNG) and the run's counters, written atomically
  episodes.zarr    the episode log: the run's record (demos, online, eval episodes)
  summary.json     the run's result, one set of keys whoever trained (`TrainingRun.summary`)
  spec.json        the observation spec a ROS learner pinned (runtime/remote_learner.py)
  config.yaml      the resolved config
  tb/              TensorBoard event files (runtime/sinks.py)

A run directory changes only after its owner holds the lock and has validated the checkpoint, the
episode log and the demos (runtime/run_dir.py). The log is the run's record: counts, demos and the
eval history are read from it, so a resumed run is the run that was never killed:
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
"""

from __future__ import annotations

import copy
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.agents.sac import agent_config
from robot_rl.config import RuntimeConfig, log, typed
from robot_rl.data.episode_log import EpisodeLog, EpisodeLogError, EpisodeLogWriter
from robot_rl.data.files import write_atomic
from robot_rl.data.schema import (
    EpisodeEnd,
    EpisodeLabel,
    EpisodeSource,
    EvalEvent,
    InterventionEnd,
    InterventionStart,
    LabelEvent,
    LearnerStats,
    ResetEvent,
    ResetInfo,
    RewardSource,
    RunEvent,
    StepEvent,
    Transition,
    count_takeovers,
)
from robot_rl.envs.intervention_reward import TAKEOVER_REWARD, check_reward_source, relabel_episode
from robot_rl.failpoints import failpoint
from robot_rl.robots.base import RobotUnavailable
from robot_rl.runtime.finetune import SOURCE_EPISODES, check_spec, finetune_config, load_pretrained
from robot_rl.runtime.learner import PRIOR_SOURCES, Learner
from robot_rl.runtime.plots import plot_learning_curve
from robot_rl.runtime.rollout import run_episode
from robot_rl.runtime.run_dir import RunLock, open_run_dir, remove_stale_temps
from robot_rl.runtime.sinks import Sink, Sinks, make_sinks

CHECKPOINT = "checkpoint.pt"
LOG = "episodes.zarr"
SUMMARY = "summary.json"
SPEC_FILE = "spec.json"
CONFIG_FILE = "config.yaml"
DEMO_ATTEMPTS = 5  # scripted-demo attempts per kept demo before the expert is declared broken
RECENT = 20  # online episodes behind the progress line's success rate


# ---------------------------------------------------------------------------------------------- helpers
def check_train_config(cfg: DictConfig) -> RuntimeConfig:
    """Validate the top-level train keys and the agent group; return the typed runtime group."""
    for key in ("steps", "seed", "num_demos"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise ValueError(f"{key}={cfg[key]!r} must be a non-negative integer")
    agent_config(cfg)
    check_reward_source(cfg, actor=False)  # the device is an actor's (make_actor_env checks it)
    return typed(cfg.runtime, RuntimeConfig, "runtime")


def make_learner(cfg: DictConfig, rt: RuntimeConfig, observation_space, action_dim: int) -> Learner:
    """The run's learner: replay capacity `runtime.image_replay_capacity` when observations hold images."""
    has_images = any(len(box.shape) == 3 for box in observation_space.spaces.values())
    config = agent_config(cfg)
    rlif = check_reward_source(cfg, actor=False) == "interventions"
    if rlif and config.value_range is None:  # rewards of 0 and -1: returns lie in [-1/(1 - discount), 0]
        config.value_range = [TAKEOVER_REWARD / (1.0 - config.discount), 0.0]
    return Learner(
        observation_space,
        action_dim,
        config,
        rt.image_replay_capacity if has_images else rt.replay_capacity,
        cfg.device,
        int(cfg.seed),
        rlif=rlif,
    )


def demo_store_path(path: str) -> Path:
    """A demo store given as the store itself or as a run/output directory holding episodes.zarr."""
    p = Path(path)
    return p if p.suffix == ".zarr" or not (p / LOG).exists() else p / LOG


def open_demos(demos: str) -> EpisodeLog:
    """The demo store `demos` (validated), with at least one demo or intervention episode."""
    store = EpisodeLog(demo_store_path(demos))
    if not np.isin(store.episode_meta()["source"], [int(s) for s in PRIOR_SOURCES]).any():
        raise ValueError(
            f"demos={demos} holds no demo episodes: record some with "
            "`robot-rl record-demos` or drop demos= to record scripted ones"
        )
    return store


def copy_demos(
    demos: str, writer: EpisodeLogWriter, who: str = "train", have: int = 0, log: Callable[[str], None] = log
) -> int:
    """Copy the demo and intervention episodes of the store `demos` into the run's log, skipping the
    first `have` (already copied by an interrupted run); returns how many the log then holds."""
    copied = writer.copy_episodes(open_demos(demos), sources=PRIOR_SOURCES, skip=have)
    log(f"[{who}] copied {copied} demo episodes from {demos}")
    return have + copied


def online_counts(log: EpisodeLog, upto: int | None = None) -> dict[str, int]:
    """What a run has done, from its log's online episodes (the first `upto` episodes when given):
    env_steps, episodes, interventions, intervention_steps, discarded, safety_steps (steps the safety layer
    changed)."""
    meta = log.episode_meta()
    online = meta["source"] == EpisodeSource.ONLINE
    if upto is not None:
        online &= np.arange(len(online)) < upto
    return {
        "env_steps": int(meta["length"][online].sum()),
        "episodes": int(online.sum()),
        "interventions": int(meta["interventions"][online].sum()),
        "intervention_steps": int(meta["intervention_steps"][online].sum()),
        "discarded": int((meta["label"][online] == EpisodeLabel.DISCARD).sum()),
        "safety_steps": int(meta["safety_steps"][online].sum()),
    }


def count_sources(log: EpisodeLog | None, sources) -> int:
    """Episodes of `log` whose source is one of `sources`."""
    if log is None or log.num_episodes == 0:
        return 0
    return int(np.isin(log.episode_meta()["source"], [int(s) for s in sources]).sum())


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
    return [
        Transition(
            observation={k: episode[f"observation/{k}"][t] for k in keys},
            next_observation={k: episode[f"next_observation/{k}"][t] for k in keys},
            action=episode["action"][t],
            policy_action=episode["policy_action"][t],
            reward=float(episode["reward"][t]),
            terminated=bool(episode["terminated"][t]),
            truncated=bool(episode["truncated"][t]),
            intervention=bool(episode["intervention"][t]),
            step=int(episode["step"][t]),
            success=bool(episode["success"][t]),
            reward_source=RewardSource(int(episode["reward_source"][t])),
            grasp_penalty=float(episode["grasp_penalty"][t]),
            frame_age_s=float(episode["frame_age_s"][t]),
            safety=int(episode["safety"][t]),
        )
        for t in range(len(episode["reward"]))
    ]


# ---------------------------------------------------------------------------------------------- the run
class TrainingRun:
    """The run directory and everything recorded in it: lock, validation, the log writer, the learner
    and its replay routing, counters, resume, eval rounds, checkpoints, events and summary.json.

    `TrainingRun(cfg, rt)` takes the lock (a context manager; `close` releases it); `setup(space,
    action_dim)` validates and opens the directory once the observation spec is known."""

    def __init__(
        self,
        cfg: DictConfig,
        rt: RuntimeConfig,
        who: str = "train",
        log: Callable[[str], None] = log,
        extra_sinks: Iterable[Sink] = (),
    ) -> None:
        """`extra_sinks`: sinks beside the `logger` config's (a transport's, e.g. the ROS learner's events)."""
        self.cfg, self.rt, self.who, self.print = cfg, rt, who, log
        self.extra_sinks = list(extra_sinks)
        self.seed, self.steps = int(cfg.seed), int(cfg.steps)
        self.finetune = finetune_config(cfg, rt)  # init_from + finetune (runtime/finetune.py), before the run_dir
        self.update_after = self.finetune.update_after(rt.learning_starts)  # online rows before updates begin
        self.source_episodes: int | None = None  # keep_offline: the source log's episodes in the prior buffer
        self.run_dir = open_run_dir(cfg.run_dir)
        self._lock = RunLock(self.run_dir).__enter__()  # one owner of the run directory until close()
        try:
            remove_stale_temps(self.run_dir)
        except BaseException:
            self.close()
            raise
        self.rng = np.random.default_rng(self.seed)
        # RLIF (reward.source=interventions, robot_rl/envs/intervention_reward.py): every episode the learner gets is
        # relabelled; the run's online episodes before they are logged, demos as they enter the replay buffers
        self.rlif = check_reward_source(cfg, actor=False) == "interventions"
        self.learner: Learner | None = None
        self.writer: EpisodeLogWriter | None = None
        self.log: EpisodeLog | None = None
        self.sinks = Sinks()
        self.obs_keys: list[str] = []
        self.saved: dict = {}
        self.covered = 0
        self.wall_s = 0.0
        self.counts = {
            "env_steps": 0,
            "episodes": 0,
            "interventions": 0,
            "intervention_steps": 0,
            "discarded": 0,
            "demo_episodes": 0,
            "safety_steps": 0,
        }
        self.actors: dict[str, int] = {}  # online env steps committed per remote actor
        self.rejected: dict[str, int] = {}  # what a remote learner refused from the network, by kind
        self.robot_losses = 0  # episodes the robot went away in (this process's life; the log has no record)
        self.recent: deque[bool] = deque(maxlen=RECENT)
        self.last_update: dict[str, float] = {}
        self.t_sim = self.t_learn = 0.0
        self.evals: list[dict] = []
        self.rounds: dict[int, list[int]] = {}  # eval_step -> log indices of its eval episodes
        self.episode: list[Transition] = []  # the online episode in progress (embedded)
        self._takeover = -1  # step the current take-over began (-1: none)
        self.reset_s = 0.0  # the reset before the episode in progress
        self.start_wall = time.perf_counter()
        self.next_checkpoint = self.next_log = 0
        self._window = {"interventions": 0, "intervention_steps": 0, "episodes": 0, "safety_steps": 0}
        self._updates_window = (0, time.perf_counter())

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ set-up
    def setup(self, observation_space, action_dim: int, spec: dict | None = None) -> None:
        """Build the learner and validate everything the run directory holds before anything in it
        changes (checkpoint, log, demos); then open the log writer and write config.yaml (and spec.json)."""
        learner = make_learner(self.cfg, self.rt, observation_space, action_dim)
        checkpoint = self.run_dir / CHECKPOINT
        saved = learner.load(checkpoint, self.finetune.warm_start) if checkpoint.exists() else {}
        existing = EpisodeLog(self.run_dir / LOG) if (self.run_dir / LOG).exists() else None
        committed = existing.num_episodes if existing is not None else 0
        # episodes the checkpoint's learner has seen (a checkpoint from before log_episodes: all of them)
        self.covered = int(saved.get("log_episodes", committed)) if saved else 0
        if self.covered > committed:
            raise ValueError(
                f"{checkpoint} has seen {self.covered} episodes but {self.run_dir / LOG} holds "
                f"{committed}: the log was replaced or cut; restore it, or delete the checkpoint "
                "to retrain from the log"
            )
        if self.cfg.demos and count_sources(existing, PRIOR_SOURCES) == 0:
            open_demos(self.cfg.demos)
        self._start_finetune(learner, observation_space, action_dim, saved)
        self.writer = EpisodeLogWriter(
            self.run_dir / LOG, observation_space, action_dim, config=OmegaConf.to_container(self.cfg, resolve=True)
        )
        write_atomic(self.run_dir / CONFIG_FILE, OmegaConf.to_yaml(self.cfg, resolve=True))
        if spec is not None:
            write_atomic(self.run_dir / SPEC_FILE, json.dumps(spec))
        self.learner, self.saved = learner, saved
        self.obs_keys = list(observation_space.spaces)
        self.log = EpisodeLog(self.run_dir / LOG)
        self.wall_s = float(saved.get("wall_s", 0.0))
        self.actors = {str(k): int(v) for k, v in dict(saved.get("per_actor", {})).items()}
        self.counts.update(online_counts(self.log, self.covered))
        self.counts["demo_episodes"] = count_sources(self.log, PRIOR_SOURCES)
        self.sinks = make_sinks(
            self.cfg.get("logger"),
            self.run_dir,
            self.print,
            resume_step=online_counts(self.log)["env_steps"],
            who=self.who,
            config=OmegaConf.to_container(self.cfg, resolve=True),
        )
        self.sinks.sinks.extend(self.extra_sinks)

    def _start_finetune(self, learner: Learner, observation_space, action_dim: int, saved: dict) -> None:
        """init_from (runtime/finetune.py): check the source's spec, and while this run has no checkpoint of
        its own, warm-start the learner from the source's networks; keep_offline's prior buffer gets the
        source's data at every start (as far as its log reached at this run's first checkpoint)."""
        ft = self.finetune
        if ft.source is None or (saved and not ft.keeps_offline):
            return  # no fine-tuning, or a resume from this run's own checkpoint: init_from is not read
        source_log = check_spec(ft.source, observation_space, action_dim, str(self.cfg.task.name))
        if ft.warm_start and not saved:
            load_pretrained(learner, ft.source, ft.keep_optimizer)
        if ft.keeps_offline:
            self.source_episodes = int(saved.get(SOURCE_EPISODES, source_log.num_episodes))
            rows = learner.load_offline(source_log, upto=self.source_episodes)
            self.print(
                f"[{self.who}] keep_offline: {rows} transitions of {ft.source} ({self.source_episodes} episodes, "
                "eval excluded) in the offline buffer"
            )
        if ft.warm_start and not saved:
            self.print(f"[{self.who}] {ft.mode}: networks from {ft.source / 'checkpoint.pt'}")

    def close(self) -> None:
        """Flush the sinks and release the run directory."""
        self.sinks.close()
        self.sinks = Sinks()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def emit(self, event: RunEvent) -> None:
        self.sinks.emit(event)

    # ------------------------------------------------------------------ reading the log
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
        return {
            "episodes": len(episodes),
            "success_rate": float(np.mean(meta["success"][episodes])),
            "mean_return": float(np.mean(meta["episode_return"][episodes].astype(np.float64))),
            "mean_steps_to_success": float(np.mean(to_success)) if to_success else None,
            "env_steps": eval_step,
            "wall_s": round(end - first_online, 1),
        }

    # ------------------------------------------------------------------ the learner's side of a step / episode
    def step_done(self) -> None:
        """After each online env step (live or replayed): count it, then `utd` updates once learning started."""
        self.counts["env_steps"] += 1
        if len(self.learner.online) >= self.update_after:
            agent = self.learner.agent
            calls = agent.num_updates // agent.config.utd  # learner updates so far (a resume restores the count)
            self.last_update = self.learner.update(actor=calls >= self.finetune.critic_warmup)

    def act(self, observation: dict, action_space) -> np.ndarray:
        """The online action: uniform random for the first `runtime.random_steps` env steps, then the agent's."""
        if self.counts["env_steps"] < self.rt.random_steps:
            return self.rng.uniform(-1.0, 1.0, action_space.shape).astype(np.float32)
        return self.learner.agent.act(observation)

    def learn_from(self, transition: Transition, started: float) -> None:
        """A live online step taken since `started` (perf_counter): recorded, counted and learned from, its sim
        and learner time added to the progress line's split."""
        self.record(transition)
        t1 = time.perf_counter()
        self.step_done()
        self.t_sim += t1 - started
        self.t_learn += time.perf_counter() - t1

    def record(self, transition: Transition) -> None:
        """One live online step of the episode in progress: cut at the step budget, logged, reported."""
        if self.counts["env_steps"] + 1 >= self.steps:
            transition.truncated = transition.truncated or not transition.terminated  # the step budget
        self.writer.add(transition)
        self.episode.append(transition)
        self._step_events(transition, self.writer.num_episodes, self.counts["env_steps"] + 1)

    def _step_events(self, t: Transition, episode: int, env_step: int) -> None:
        self.emit(StepEvent(env_step, episode, t.step, t.reward, t.intervention, t.success))
        if t.intervention and self._takeover < 0:
            self._takeover = t.step
            self.emit(InterventionStart(env_step, episode, t.step))
        elif not t.intervention and self._takeover >= 0:
            self.emit(InterventionEnd(env_step, episode, t.step, t.step - self._takeover))
            self._takeover = -1
        if t.terminated or t.truncated:
            if self._takeover >= 0:
                self.emit(InterventionEnd(env_step, episode, t.step + 1, t.step + 1 - self._takeover))
            self._takeover = -1
            if t.label != EpisodeLabel.NONE:
                self.emit(LabelEvent(env_step, episode, t.label))

    def begin_episode(self, env) -> dict:
        """Reset `env` for the next online episode (from its own random stream); its first observation."""
        reseed(self.rng, self.seed, EpisodeSource.ONLINE, self.counts["episodes"])
        observation, reset_info = env.reset(seed=int(self.rng.integers(2**31)))
        self.episode, self._takeover = [], -1
        self.reset_s = float(ResetInfo.of(reset_info).reset_s)
        self.emit(ResetEvent(self.counts["env_steps"], self.writer.num_episodes, self.reset_s))
        return observation

    def cut_episode(self, reason: RobotUnavailable) -> bool:
        """The robot went away mid-episode (a lost link, an e-stop): the episode in progress ends at its last
        executed step, truncated, and is committed like any other. False when it had no step yet."""
        self.robot_losses += 1
        self.print(f"[{self.who}] robot unavailable at step {len(self.episode)} of the episode: {reason}")
        if not self.episode:
            return False
        self.episode[-1].truncated = True  # the writer buffers these same transitions
        return True

    def commit_online(self) -> None:
        """Commit the live online episode in progress (its steps are in the writer already)."""
        index = self.writer.num_episodes
        if self.rlif:  # the writer buffers these same transitions: the log holds the rewards the learner uses
            relabel_episode(self.episode)
        self.writer.end_episode(EpisodeSource.ONLINE, reset_s=self.reset_s)
        failpoint("commit:online")
        self.end_online_episode(self.episode)
        self._episode_event(index, EpisodeSource.ONLINE, self.episode)

    def end_online_episode(self, steps: list[Transition], count_steps: bool = False) -> None:
        """A committed online episode: counters, and its steps to the learner unless a person discarded it."""
        flags = np.array([t.intervention for t in steps])
        takeovers, intervention_steps = count_takeovers(flags), int(flags.sum())
        safety_steps = sum(1 for t in steps if t.safety)
        for totals in (self.counts, self._window):
            totals["interventions"] += takeovers
            totals["intervention_steps"] += intervention_steps
            totals["episodes"] += 1
            totals["safety_steps"] += safety_steps
        if count_steps:
            self.counts["env_steps"] += len(steps)
        if steps[-1].label == EpisodeLabel.DISCARD:
            self.counts["discarded"] += 1
        else:
            for step in self._learning(steps):
                self.learner.add(step)
        self.recent.append(any(t.success for t in steps))

    def _episode_event(self, index: int, source: EpisodeSource, steps: list[Transition], actor: str = "") -> None:
        flags = np.array([t.intervention for t in steps])
        self.emit(
            EpisodeEnd(
                self.counts["env_steps"],
                index,
                source,
                len(steps),
                float(sum(t.reward for t in steps)),
                any(t.success for t in steps),
                count_takeovers(flags),
                int(flags.sum()),
                steps[-1].label == EpisodeLabel.DISCARD,
                actor,
                sum(1 for t in steps if t.safety),
            )
        )

    def commit(self, steps: list[Transition], source: EpisodeSource, reset_s: float = 0.0, actor: str = "") -> bool:
        """Commit a whole episode received from an actor: log it, count it, route its steps to the replay
        buffers (its online steps are counted, their updates are the caller's). False if the log refused it."""
        index = self.writer.num_episodes
        if self.rlif and source == EpisodeSource.ONLINE:
            relabel_episode(steps)  # the log holds the rewards the learner uses
        try:
            for step in steps:
                self.writer.add(step)
        except EpisodeLogError:  # validated against the spec: should never happen, but never half-write
            self.writer.discard_episode()
            raise
        self.writer.end_episode(source, reset_s=reset_s)
        if source == EpisodeSource.EVAL:
            return True
        if source == EpisodeSource.ONLINE:
            self._takeover = -1
            for step in steps:
                self._step_events(step, index, self.counts["env_steps"] + step.step + 1)
            self.end_online_episode(steps, count_steps=True)
            if actor:
                self.actors[actor] = self.actors.get(actor, 0) + len(steps)
        else:
            self.counts["demo_episodes"] += 1
            if steps[-1].label != EpisodeLabel.DISCARD:
                for step in self._learning(steps):
                    self.learner.add(step, source)
        self._episode_event(index, source, steps, actor)
        return True

    def feed_logged(self, index: int) -> list[Transition]:
        """The Transitions of log episode `index`; a demo or intervention episode also goes to the prior
        buffer (an online one is the caller's: `end_online_episode`)."""
        meta = self.log.episode_meta()
        steps = logged_transitions(self.log.episode(index), self.obs_keys)
        steps[-1].label = EpisodeLabel(int(meta["label"][index]))
        source = EpisodeSource(int(meta["source"][index]))
        if source in PRIOR_SOURCES and steps[-1].label != EpisodeLabel.DISCARD:
            for step in self._learning(steps):
                self.learner.add(step, source)
        return steps

    def _learning(self, steps: list[Transition]) -> list[Transition]:
        """An episode's steps as the learner gets them: RLIF's relabelling (on copies) with
        reward.source=interventions, else as they are."""
        if not self.rlif:
            return steps
        return relabel_episode([copy.copy(t) for t in steps])

    # ------------------------------------------------------------------ resume
    def resume(self, check_actions: bool = True) -> int:
        """Bring the learner from the checkpoint to the last commit (see the module docstring): the
        episodes after the checkpoint go through the learner with the same calls as live (with
        `check_actions`, the embedded runner's: each `act` too, compared with the logged policy
        action). Returns the online steps replayed."""
        self.learner.load_log(self.log, upto=self.covered)
        meta = self.log.episode_meta()
        for i in np.flatnonzero(meta["source"][: self.covered] == EpisodeSource.ONLINE)[-RECENT:]:
            self.recent.append(bool(meta["success"][i]))
        replayed = steps = mismatches = 0
        for index in range(self.covered, self.log.num_episodes):
            source = EpisodeSource(int(meta["source"][index]))
            if source in PRIOR_SOURCES:
                self.feed_logged(index)
            elif source == EpisodeSource.ONLINE:
                episode = self.feed_logged(index)
                for step in episode:
                    if check_actions and self.counts["env_steps"] >= self.rt.random_steps:
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
            self.print(
                f"[{self.who}] resuming {self.run_dir}: {self.log.num_episodes} episodes in the log, "
                f"{self.counts['env_steps']} online steps; replayed {replayed} episodes ({steps} steps) after "
                f"the checkpoint, {self.learner.agent.num_updates} critic updates done{note}"
            )
        self._window = dict.fromkeys(self._window, 0)
        return steps

    # ------------------------------------------------------------------ demos
    def collect_demos(self, expert_env=None) -> None:
        """Copy `demos` (or record `num_demos` scripted demos in `expert_env`), counting those an
        interrupted run logged; the demo phase is over once the log holds an online episode."""
        if count_sources(self.log, [EpisodeSource.ONLINE]) or not self.finetune.records_demos:
            return  # the demo phase is over (or finetune=wsrl: no demos)
        have = count_sources(self.log, PRIOR_SOURCES)
        start = self.writer.num_episodes
        if self.cfg.demos:
            copy_demos(self.cfg.demos, self.writer, self.who, have=have, log=self.print)
        elif expert_env is not None and have < self.cfg.num_demos:
            from robot_rl.tasks import make_expert

            expert = make_expert(expert_env, noise=float(self.cfg.expert_noise), rng=self.rng)
            lengths = []
            for k in range(have, self.cfg.num_demos):
                for attempt in range(DEMO_ATTEMPTS):
                    reseed(self.rng, self.seed, EpisodeSource.DEMO, k, attempt)
                    result = run_episode(
                        expert_env, expert.act, int(self.rng.integers(2**31)), self.writer.num_episodes, self.writer.add
                    )
                    if result.success:
                        self.writer.end_episode(EpisodeSource.DEMO, reset_s=result.reset_s)
                        failpoint("commit:demo")
                        lengths.append(result.length)
                        break
                    self.writer.discard_episode()
                else:
                    raise RuntimeError(
                        f"the scripted expert failed {DEMO_ATTEMPTS} times in a row on demo {k}: check the task config"
                    )
            self.print(
                f"[{self.who}] recorded {len(lengths)} scripted demos (mean length {np.mean(lengths):.1f} steps)"
            )
        self.log.refresh()
        for index in range(start, self.log.num_episodes):
            self.feed_logged(index)
        self.counts["demo_episodes"] = count_sources(self.log, PRIOR_SOURCES)

    # ------------------------------------------------------------------ evaluation
    def eval_round(self, eval_env, eval_step: int) -> dict:
        """The eval round at `eval_step`: its missing episodes run in `eval_env` (each from its own seed)
        and logged, then its result, read from the log, appended to the history and emitted."""
        done = len(self.rounds.get(eval_step, []))
        for i in range(done, self.rt.eval_episodes):
            try:
                result = run_episode(
                    eval_env,
                    lambda obs: self.learner.agent.act(obs, deterministic=True),
                    stream_seed(self.seed, EpisodeSource.EVAL, eval_step, i),
                    self.writer.num_episodes,
                    self.writer.add,
                )
            except RobotUnavailable:  # the round's finished episodes stay; calling again completes it
                self.writer.discard_episode()
                self._read_rounds()
                raise
            self.writer.end_episode(EpisodeSource.EVAL, reset_s=result.reset_s, eval_step=eval_step)
            failpoint("commit:eval")
        self._read_rounds()
        result = self.eval_result(eval_step)
        self.evals = [e for e in self.evals if e["env_steps"] != eval_step] + [result]
        self.emit(
            EvalEvent(
                eval_step,
                result["success_rate"],
                result["mean_return"],
                result["episodes"],
                result["mean_steps_to_success"],
            )
        )
        return result

    def next_eval(self) -> int:
        last = self.evals[-1]["env_steps"] if self.evals else 0
        return (last // self.rt.eval_every + 1) * self.rt.eval_every

    def eval_due(self) -> bool:
        """After a commit: the run reached its next eval step or its budget."""
        env_steps = self.counts["env_steps"]
        return env_steps >= self.next_eval() or env_steps >= self.steps

    def pending_eval(self) -> bool:
        """At a (re)start: an eval round a kill interrupted, or one the last commit made due."""
        env_steps = self.counts["env_steps"]
        if env_steps in self.rounds:
            return len(self.rounds[env_steps]) < self.rt.eval_episodes  # a kill came mid-round
        if env_steps == 0:
            return self.finetune.warm_start  # a warm start's zero-shot success on the new task
        return env_steps >= self.next_eval() or env_steps >= self.steps

    def reached(self) -> bool:
        """The last eval reached `runtime.stop_at_success`."""
        return bool(
            self.rt.stop_at_success is not None
            and self.evals
            and self.evals[-1]["success_rate"] >= self.rt.stop_at_success
        )

    def out_of_wall_time(self) -> bool:
        over = self.rt.max_wall_s is not None and time.perf_counter() - self.start_wall >= self.rt.max_wall_s
        if over:
            self.print(
                f"[{self.who}] wall budget runtime.max_wall_s={self.rt.max_wall_s:.0f}s spent at step "
                f"{self.counts['env_steps']}"
            )
        return over

    # ------------------------------------------------------------------ cadence: clock, progress, checkpoints
    def start_clock(self) -> None:
        """Live work begins (after resume and demos): wall time continues from the checkpoint's."""
        self.start_wall = time.perf_counter() - self.wall_s
        self.next_checkpoint = self.counts["env_steps"] + self.rt.checkpoint_every
        self.next_log = (self.counts["env_steps"] // self.rt.log_every + 1) * self.rt.log_every
        self._updates_window = (self.learner.agent.num_updates, time.perf_counter())
        self._window = dict.fromkeys(self._window, 0)

    def maybe_report(self) -> None:
        """Close the update window every `runtime.log_every` env steps: a LearnerStats event."""
        env_steps = self.counts["env_steps"]
        if env_steps < self.next_log:
            return
        now = time.perf_counter()
        updates = self.learner.agent.num_updates
        ups = (updates - self._updates_window[0]) / max(now - self._updates_window[1], 1e-9)
        self._updates_window = (updates, now)
        busy = max(self.t_sim + self.t_learn, 1e-9)
        self.emit(
            LearnerStats(
                env_steps,
                self.steps,
                self.counts["episodes"],
                updates,
                ups,
                self.last_update.get("critic_loss", float("nan")),
                self.last_update.get("q", 0),
                self.last_update.get("temperature", 0),
                float(np.mean(self.recent)) if self.recent else float("nan"),
                len(self.recent),
                self._window["episodes"],
                self._window["interventions"],
                self._window["intervention_steps"],
                self.t_sim / busy,
                self.t_learn / busy,
                now - self.start_wall,
                self._window["safety_steps"],
            )
        )
        self.next_log = (env_steps // self.rt.log_every + 1) * self.rt.log_every
        self._window = dict.fromkeys(self._window, 0)

    def checkpoint_due(self) -> bool:
        return self.counts["env_steps"] >= self.next_checkpoint

    def save_checkpoint(self, extra: dict | None = None) -> None:
        """The learner and the run's counters, atomically; the next one `runtime.checkpoint_every` steps on."""
        self.wall_s = time.perf_counter() - self.start_wall
        self.learner.save(
            self.run_dir / CHECKPOINT,
            {
                "log_episodes": self.writer.num_episodes,
                "env_steps": self.counts["env_steps"],
                "wall_s": self.wall_s,
                "per_actor": dict(self.actors),
                **({SOURCE_EPISODES: self.source_episodes} if self.source_episodes is not None else {}),
                **(extra or {}),
            },
        )
        self.next_checkpoint = self.counts["env_steps"] + self.rt.checkpoint_every

    # ------------------------------------------------------------------ the result
    def summary(self, command: str = "train") -> dict:
        """summary.json (and learning_curve.png when there are evals), each written atomically: the same
        keys for the embedded runner and the ROS learner."""
        final = self.evals[-1] if self.evals else None
        busy = max(self.t_sim + self.t_learn, 1e-9)
        learner = self.learner
        summary = {
            "command": command,
            "run_dir": str(self.run_dir),
            "task": self.cfg.task.name,
            "seed": self.seed,
            "env_steps": self.counts["env_steps"],
            "episodes": self.counts["episodes"],
            "critic_updates": learner.agent.num_updates if learner else 0,
            "wall_s": round(self.wall_s, 1),
            "interventions": self.counts["interventions"],
            "intervention_steps": self.counts["intervention_steps"],
            "safety_steps": self.counts["safety_steps"],
            "discarded_episodes": self.counts["discarded"],
            "demo_episodes": self.counts["demo_episodes"],
            "replay": {"prior": len(learner.prior), "online": len(learner.online)} if learner else {},
            "final_eval": final,
            "success_rate": final["success_rate"] if final else None,
            "mean_return": final["mean_return"] if final else None,
            "evals": self.evals,
            "time_split": {
                "sim": round(self.t_sim / busy, 3),
                "learner": round(self.t_learn / busy, 3),
                "torch_threads": self.rt.torch_threads,
            },
            "actors": dict(self.actors),
            "rejected": dict(self.rejected),
            "robot_losses": self.robot_losses,
            "finetune": {
                **self.finetune.summary(),
                **({"source_episodes": self.source_episodes} if self.source_episodes is not None else {}),
            },
        }
        write_atomic(self.run_dir / SUMMARY, json.dumps(summary, indent=2))
        if self.evals:
            plot_learning_curve(
                self.evals, self.run_dir / "learning_curve.png", title=f"{self.cfg.task.name} seed {self.seed}"
            )
        return summary
