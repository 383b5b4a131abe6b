"""Reset-free practice (`robot-rl train-reset-free`): a forward and a backward relocate agent undo each other's work.

FastRLAP's and RoboFuME's idea on the relocate pair (robot_rl/tasks/relocate.py): the forward agent carries the
cube from region A to region B, the backward agent from B to A, and a person resets the scene only when it
fails. Two RLPD learners (the `agent` config, each built as `robot-rl train` builds its one) train together in
one sim, each with its own `TrainingRun` in `<run_dir>/forward` and `<run_dir>/backward`: its own replay
(online + its `num_demos` scripted demos), episode log (episodes.zarr, every step), eval rounds, checkpoint,
resume and summary.json (robot_rl/runtime/run.py).

Episodes alternate forward, backward, ... and each starts where the last ended: the arm alone goes back to its
start TCP (the task's physical reset; no person needed), the cube stays. The next direction is the other one,
unless the cube already lies in that one's goal region (the last episode failed and left it at its start):
then the same direction again, so that no episode starts solved. After the arm's reset the task checks for a
failure (cube off the table, out of reach, stuck in the gripper; `RelocateTask.failure`); then the sim's
stand-in for a person teleports the cube into the next episode's start region, counted as a person's reset.
`resets=every_episode` is the baseline: the person resets the scene before every episode (count = episodes).
The first episode a process runs (a new run, or a resumed one: the scene was lost) starts from a person's
reset as well.

Evals: every `runtime.eval_every` env steps (both directions together) each agent runs `runtime.eval_episodes`
episodes from its direction's standard start (the task's success, deterministic policy), logged in its own
store; the rounds are keyed by the total env steps. `<run_dir>/reset_free.json` holds the person resets
(updated after every episode); `<run_dir>/summary.json` the result: evals per direction, episodes per
direction, person resets and resets per 100 episodes.

Resume: each direction resumes as `robot-rl train` does (checkpoint + log replay); the scene restarts from a
person's reset. A kill between an episode's commit and the update of reset_free.json loses at most that
episode's reset count.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from robot_rl.config import RuntimeConfig, UserError, check_device, log
from robot_rl.data.files import write_atomic
from robot_rl.envs.factory import make_env
from robot_rl.runtime.rollout import env_step
from robot_rl.runtime.run import CONFIG_FILE, SUMMARY, TrainingRun, check_train_config
from robot_rl.runtime.run_dir import open_run_dir
from robot_rl.tasks.relocate import DIRECTIONS, RelocateTask

MODES = ("free", "every_episode")
POLICIES = ("agent", "expert")
STATE_FILE = "reset_free.json"
START = "start of the run"  # the reason of the reset before a process's first episode
EVERY = "every episode"  # the baseline's reason


def other(direction: str) -> str:
    """The opposite direction."""
    return DIRECTIONS[1 - DIRECTIONS.index(direction)]


def check_reset_free_config(cfg: DictConfig) -> tuple[RuntimeConfig, str]:
    """The typed runtime group and the reset mode; one-line errors for a config this trainer cannot run."""
    task = str(cfg.task.name)
    if task != "relocate":
        raise UserError(
            f"train-reset-free trains the relocate pair, not task={task}: set task=relocate "
            "(robot-rl train trains every other task)"
        )
    if str(cfg.task.get("direction", "forward")) not in DIRECTIONS:  # each agent's direction is set per run
        raise UserError(
            f"task.direction={cfg.task.direction!r} is not a direction (forward | backward); train-reset-free "
            "trains both: drop task.direction"
        )
    resets = str(cfg.resets)
    if resets not in MODES:
        raise UserError(f"resets={resets!r} is not a reset mode: choose resets=free or resets=every_episode")
    if str(cfg.policy) not in POLICIES:
        raise UserError(f"policy={cfg.policy!r} is not a policy: choose policy=agent or policy=expert")
    if cfg.robot.name != "mujoco":
        raise UserError(
            f"train-reset-free's person is a scripted reset in the in-process sim, not robot={cfg.robot.name}: "
            "use robot=mujoco"
        )
    return check_train_config(cfg), resets


def direction_config(cfg: DictConfig, direction: str) -> DictConfig:
    """One direction's `robot-rl train`-style config: its own run_dir under the run's, the task posed in that
    direction, scripted demos only."""
    sub = cfg.copy()
    with open_dict(sub):
        sub.run_dir = str(Path(str(cfg.run_dir)) / direction)
        sub.task.direction = direction
        sub.demos = None
    return sub


class ResetFreeRun:
    """The two directions' runs, the shared training env and the person-reset bookkeeping (module docstring)."""

    def __init__(self, cfg: DictConfig, rt: RuntimeConfig, mode: str, stack: ExitStack) -> None:
        self.cfg, self.rt, self.mode = cfg, rt, mode
        self.steps, self.seed = int(cfg.steps), int(cfg.seed)
        cfgs = {d: direction_config(cfg, d) for d in DIRECTIONS}
        self.env = make_env(cfgs["forward"], seed=self.seed)  # a bad task config fails before the run_dir changes
        stack.callback(self.env.close)
        self.task: RelocateTask = self.env.unwrapped.task
        self.robot = self.env.unwrapped.robot
        # standard starts per direction: the evals (the truth) and the scripted demos
        self.eval_envs = {}
        for d in DIRECTIONS:
            self.eval_envs[d] = make_env(cfgs[d], seed=self.seed + 10_000)
            stack.callback(self.eval_envs[d].close)
        self.runs = {d: stack.enter_context(TrainingRun(cfgs[d], rt, who=d)) for d in DIRECTIONS}
        self.root = open_run_dir(cfg.run_dir)
        self.experts = {}
        if str(cfg.policy) == "expert":  # the loop's check: the scripted expert acts, the agents learn from it
            from robot_rl.tasks import make_expert

            self.experts = {
                d: make_expert(self.env, noise=float(cfg.expert_noise), rng=np.random.default_rng([self.seed, k]))
                for k, d in enumerate(DIRECTIONS)
            }
        self.state = {"resets": mode, "next": "forward", "log": []}  # log: one entry per person reset

    # ------------------------------------------------------------------ set-up and bookkeeping
    def setup(self) -> None:
        """Validate and open both directions' run directories, resume them, record their demos."""
        for run in self.runs.values():
            run.setup(self.env.observation_space, int(self.env.action_space.shape[0]))
        path = self.root / STATE_FILE
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("resets") != self.mode:
                raise UserError(
                    f"{self.cfg.run_dir} holds a resets={saved.get('resets')} run, not resets={self.mode}: "
                    "pass a new run_dir"
                )
            self.state.update(saved)
        write_atomic(self.root / CONFIG_FILE, OmegaConf.to_yaml(self.cfg, resolve=True))
        for d, run in self.runs.items():
            run.resume()
            run.collect_demos(self.eval_envs[d])
            run.start_clock()

    @property
    def person_resets(self) -> int:
        """Resets a person (in sim, the scripted teleport) has done so far."""
        return len(self.state["log"])

    @property
    def total_steps(self) -> int:
        return sum(run.counts["env_steps"] for run in self.runs.values())

    @property
    def total_episodes(self) -> int:
        return sum(run.counts["episodes"] for run in self.runs.values())

    def save_state(self) -> None:
        write_atomic(self.root / STATE_FILE, json.dumps(self.state, indent=1))

    # ------------------------------------------------------------------ evals
    def eval_keys(self) -> list[int]:
        """The eval rounds either direction has logged (total env steps), in order."""
        return sorted({k for run in self.runs.values() for k in run.rounds})

    def eval_both(self, key: int) -> None:
        """Both directions' eval round at total env step `key` (completing one a kill interrupted)."""
        line = []
        for d, run in self.runs.items():
            result = run.eval_round(self.eval_envs[d], key)
            line.append(f"{d} {result['success_rate']:.0%}")
        log(f"[reset-free] eval at step {key}: success " + ", ".join(line))

    def next_eval(self) -> int:
        keys = self.eval_keys()
        return ((keys[-1] if keys else 0) // self.rt.eval_every + 1) * self.rt.eval_every

    def reached(self) -> bool:
        return all(run.reached() for run in self.runs.values())

    # ------------------------------------------------------------------ episodes
    def begin(self, direction: str, first: bool) -> dict:
        """Reset for the next episode in `direction`: the arm alone (reset-free) or a person's reset (the
        baseline, the first episode, a detected failure, counted). Returns the first observation."""
        run = self.runs[direction]
        self.task.direction = direction
        self.task.keep_scene = self.mode == "free" and not first
        observation = run.begin_episode(self.env)
        reason = EVERY if self.mode == "every_episode" else (START if first else self.task.person_reset)
        if reason is not None:
            self.state["log"].append({"episode": self.total_episodes, "direction": direction, "reason": reason})
        return observation

    def episode(self, direction: str, observation: dict) -> None:
        """One online episode of `direction`'s agent, logged and learned from as `robot-rl train` does; cut at
        the run's step budget (both directions together)."""
        run = self.runs[direction]
        while True:
            t0 = time.perf_counter()
            if self.experts:
                action = self.experts[direction].act(observation)
            else:
                action = run.act(observation, self.env.action_space)
            transition = env_step(self.env, observation, action, run.writer.num_episodes, len(run.episode))
            if self.total_steps + 1 >= self.steps:
                transition.truncated = transition.truncated or not transition.terminated
            run.learn_from(transition, t0)
            if transition.terminated or transition.truncated:
                break
            observation = transition.next_observation
        run.commit_online()

    def next_direction(self, direction: str) -> str:
        """The other direction, unless the cube already lies in its goal region (then `direction` again); the
        baseline alternates strictly (its person resets the scene anyway)."""
        if self.mode == "every_episode":
            return other(direction)
        following = other(direction)
        goal = self.task.region_b if following == "forward" else self.task.region_a
        return direction if self.task.in_region(self.robot, goal) else following

    def train(self) -> None:
        """Episodes until `steps` env steps (both directions), evals, checkpoints, progress lines."""
        keys = self.eval_keys()
        for key in keys:  # a round a kill interrupted
            if any(len(run.rounds.get(key, [])) < self.rt.eval_episodes for run in self.runs.values()):
                self.eval_both(key)
        total = self.total_steps
        if total > 0 and (total >= self.next_eval() or total >= self.steps) and total not in self.eval_keys():
            self.eval_both(total)
        next_log = (total // self.rt.log_every + 1) * self.rt.log_every
        direction, first = self.state["next"], True
        while self.total_steps < self.steps and not self.reached():
            observation = self.begin(direction, first)
            first = False
            self.episode(direction, observation)
            direction = self.next_direction(direction)
            self.state["next"] = direction
            self.save_state()
            total = self.total_steps
            if total >= self.next_eval() or total >= self.steps:
                self.eval_both(total)
            for run in self.runs.values():
                run.maybe_report()
                if run.checkpoint_due():
                    run.save_checkpoint()
            if total >= next_log:
                self.report()
                next_log = (total // self.rt.log_every + 1) * self.rt.log_every
            if self.runs["forward"].out_of_wall_time():
                break
        total = self.total_steps
        if not self.eval_keys() or self.eval_keys()[-1] != total:
            self.eval_both(total)
        for run in self.runs.values():
            run.save_checkpoint()

    def report(self) -> None:
        """The pair's progress line."""
        recent = {d: (f"{np.mean(run.recent):.0%}" if run.recent else "-") for d, run in self.runs.items()}
        log(
            f"[reset-free] step {self.total_steps}/{self.steps} | episodes "
            + ", ".join(f"{d} {run.counts['episodes']}" for d, run in self.runs.items())
            + f" | person resets {self.person_resets} ({self.per_100():.0f} per 100 episodes) | "
            + f"success(recent) forward {recent['forward']} backward {recent['backward']}"
        )

    def per_100(self) -> float:
        episodes = self.total_episodes
        return 100.0 * self.person_resets / episodes if episodes else 0.0

    # ------------------------------------------------------------------ the result
    def summary(self) -> dict:
        """summary.json of the pair (and each direction's own summary.json in its run_dir)."""
        sub = {d: run.summary("train-reset-free") for d, run in self.runs.items()}
        reasons: dict[str, int] = {}
        for entry in self.state["log"]:
            kind = entry["reason"].split(":")[0]  # "<kind>: <details>" (RelocateTask.failure)
            reasons[kind] = reasons.get(kind, 0) + 1
        finals = [sub[d]["success_rate"] for d in DIRECTIONS if sub[d]["success_rate"] is not None]
        summary = {
            "command": "train-reset-free",
            "run_dir": str(self.root),
            "task": "relocate",
            "robot": str(self.cfg.robot.get("model", "panda")),
            "seed": self.seed,
            "resets": self.mode,
            "policy": str(self.cfg.policy),
            "env_steps": self.total_steps,
            "episodes": self.total_episodes,
            "env_steps_per_direction": {d: sub[d]["env_steps"] for d in DIRECTIONS},
            "episodes_per_direction": {d: sub[d]["episodes"] for d in DIRECTIONS},
            "person_resets": self.person_resets,
            "resets_per_100_episodes": round(self.per_100(), 2),
            "person_reset_reasons": reasons,
            "online_success_rate": {
                d: float(np.mean(self.runs[d].log.episode_meta()["success"][self._online(d)]))
                if sub[d]["episodes"]
                else None
                for d in DIRECTIONS
            },
            "success_rate": float(np.mean(finals)) if finals else None,
            "final_eval": {d: sub[d]["final_eval"] for d in DIRECTIONS},
            "evals": {d: sub[d]["evals"] for d in DIRECTIONS},
            "critic_updates": {d: sub[d]["critic_updates"] for d in DIRECTIONS},
            "wall_s": round(max(sub[d]["wall_s"] for d in DIRECTIONS), 1),
        }
        write_atomic(self.root / SUMMARY, json.dumps(summary, indent=2))
        return summary

    def _online(self, direction: str) -> np.ndarray:
        from robot_rl.data.schema import EpisodeSource

        log_ = self.runs[direction].log
        log_.refresh()
        return log_.episode_meta()["source"] == EpisodeSource.ONLINE


def train_reset_free(cfg: DictConfig) -> dict:
    """`robot-rl train-reset-free` (configs/train_reset_free.yaml): the relocate pair, reset-free or with a
    person's reset every episode; resumes a run_dir. Returns the summary."""
    rt, mode = check_reset_free_config(cfg)
    check_device(cfg.device)
    with ExitStack() as stack:
        torch.set_num_threads(rt.torch_threads)
        pair = ResetFreeRun(cfg, rt, mode, stack)
        pair.setup()
        pair.train()
        for run in pair.runs.values():
            run.writer.close()
        summary = pair.summary()
        final = summary["final_eval"]
        log(
            f"[reset-free] done: {summary['env_steps']} env steps, {summary['episodes']} episodes, "
            f"{summary['person_resets']} person resets ({summary['resets_per_100_episodes']:.0f} per 100 episodes); "
            f"final eval success forward {final['forward']['success_rate']:.0%}, backward "
            f"{final['backward']['success_rate']:.0%} -> {pair.root / SUMMARY}"
        )
        return summary
