"""`robot-rl record-demos`: demonstrations into `<out>/episodes.zarr` (appends when it exists).

Two sources (`teleop=`):
  - none (the default): the task's scripted expert, in the simulator (robot=mujoco, or robot=serial on the
    simulated rig, robot.port=sim). `keep=success` keeps the episodes the task scores a success.
  - a person's device: keyboard, gamepad, spacemouse, ros (a teleop node) or console (the web page), on any
    robot the env factory makes (the simulator, robot=serial, robot=ros). Each episode starts from a reset
    (which waits for the console's e-stop / arm when the console runs). Every control step the device is read
    through an InterventionWrapper around a "policy" that holds the robot still (no motion, the gripper
    kept), so the robot moves only while the person drives; every step is logged (source DEMO, the
    intervention flag = the device was active). The episode ends when the person labels it on the device
    (success / failure / discard), asks for a reset, when the task succeeds on its own, at the task's time
    limit, or when the robot goes away (a lost link, a stale observation: it ends at its last step, as in
    `train`; a failed reset is tried again; more than MAX_LOSSES in a row end the recording).
    `keep=success` keeps the episodes labelled success (and, unlabelled, those the task scored a success);
    `keep=all` keeps every episode with its label (a discarded one stays in the store, marked, and is never
    trained on). A simulator keeps real time (one control step per control_dt) whenever a person drives it,
    with or without the console. teleop=ros waits for the teleop node before the first episode.

It stops after `episodes` kept episodes. Ctrl-C stops earlier: the kept episodes stay in the store, the one
in progress is dropped, summary.json is written and the exit status is 130.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import UserError, count_arg, log
from robot_rl.console.session import HUMAN_DEVICES, ConsoleSession, open_console
from robot_rl.data.episode_log import EpisodeLogWriter
from robot_rl.data.files import write_atomic
from robot_rl.data.schema import (
    EpisodeEnd,
    EpisodeLabel,
    EpisodeSource,
    LabelEvent,
    ResetInfo,
    Transition,
    count_takeovers,
)
from robot_rl.envs.factory import make_actor_env, make_env
from robot_rl.envs.realtime import RealTime
from robot_rl.robots import SIM_ROBOTS, is_simulated
from robot_rl.robots.base import RobotUnavailable
from robot_rl.runtime.rollout import EpisodeResult, env_step, run_episodes, summarize
from robot_rl.runtime.run import LOG
from robot_rl.runtime.run_dir import open_run_dir
from robot_rl.tasks import make_expert

CONFIG = "record_demos"
KEEP = ("success", "all")
MAX_LOSSES = 3  # the robot lost (mid-episode or at the reset) more often in a row ends the recording, one line
RETRY_S = 0.5  # the pause before the reset is tried again
INTERRUPTED = 130  # the exit status after Ctrl-C (the shell's, for SIGINT)
SCRIPTED_ERROR = "scripted demos need the simulator: pass teleop=<device> to record demos by hand"

#: how to drive and label on each device, printed once before the first episode
HINTS = {
    "keyboard": (
        "w/s a/d r/f move the gripper (hold; Shift: fine), c/o close/open, Space latches control; "
        "label: y success, n failure, Backspace discard"
    ),
    "gamepad": (
        "hold LB (L1) and move the sticks (right stick: up/down), RT closes, RB opens; "
        "label: Y success, A failure, X discard"
    ),
    "spacemouse": (
        "push the puck to move, left button closes, right button opens; it has no label buttons, so an "
        "episode ends at the task's success or its time limit"
    ),
    "ros": "drive and label on the teleop node's device (its keys or buttons)",
    "console": (
        "take control on the page, hold Space (or LB) to drive: W/S A/D R/F move, C/V close/open; "
        "label with its success / failure / discard buttons, reset ends the episode"
    ),
}


def record_demos(cfg: DictConfig) -> dict:
    """Demos into `<out>/episodes.zarr` (see the module docstring). Bad config fails with one line before
    anything in `out` changes; the store is validated (EpisodeLogWriter) before it is modified."""
    episodes, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "seed")
    keep = str(cfg.keep)
    if keep not in KEEP:
        raise UserError(f"keep={keep}: choose one of {', '.join(KEEP)} (success: the successful episodes only)")
    device = (cfg.get("teleop") or {}).get("device")
    if device is None:
        check_scripted(cfg)
        return record_scripted(cfg, episodes, seed, keep)
    if device not in HUMAN_DEVICES:
        what = "is a simulated person, for training runs" if device == "sim_operator" else "is no teleop device"
        raise UserError(
            f"teleop={device} {what}: record demos by hand with teleop={'|'.join(HUMAN_DEVICES)}, "
            "or with the scripted expert (teleop=none)"
        )
    return record_by_hand(cfg, episodes, seed, keep)


def check_scripted(cfg: DictConfig) -> None:
    """The scripted expert reads the cube's pose from a simulator: the in-process one or the serial rig's."""
    robot = cfg.get("robot") or {}
    if not is_simulated(robot):
        raise UserError(f"{SCRIPTED_ERROR} (robot={robot.get('name', 'mujoco')})")


def hold_still(env: gym.Env):
    """The "policy" while nobody drives: no motion and the gripper kept (0 keeps a sticky gripper; a
    continuous one is commanded where it is)."""
    base = env.unwrapped
    dim = int(env.action_space.shape[0])
    continuous = getattr(getattr(base, "task", None), "gripper_mode", "sticky") == "continuous"

    def act(observation) -> np.ndarray:
        action = np.zeros(dim, np.float32)
        if continuous:
            action[-1] = float(getattr(base, "gripper", -1.0))
        return action

    return act


def verdict(steps: list[Transition]) -> tuple[EpisodeLabel, bool, str]:
    """(the person's label, whether the episode counts as a success, how it ended in words)."""
    label = EpisodeLabel(next((int(t.label) for t in reversed(steps) if t.label), 0))
    success = any(t.success for t in steps)
    if label != EpisodeLabel.NONE:
        return label, label == EpisodeLabel.SUCCESS, f"labelled {label.name.lower()}"
    if success:
        return label, True, "success (the task's), unlabelled"
    return label, False, "unlabelled (time limit or reset)"


def _summary(out: Path, results: list[EpisodeResult], total: int, **extra) -> dict:
    summary = {
        "command": "record-demos",
        "store": str(out / LOG),
        "recorded": len(results),
        "episodes_in_store": total,
        **extra,
        **summarize(results),
        "mean_length": float(np.mean([r.length for r in results])) if results else None,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _writer(cfg: DictConfig, out: Path, env: gym.Env) -> EpisodeLogWriter:
    return EpisodeLogWriter(
        out / LOG, env.observation_space, env.action_space.shape[0], config=OmegaConf.to_container(cfg, resolve=True)
    )


def record_scripted(cfg: DictConfig, episodes: int, seed: int, keep: str) -> dict:
    """The scripted expert's demos (`keep=success`: the successful ones only)."""
    out = open_run_dir(cfg.out)
    with ExitStack() as stack:
        console = open_console(cfg)  # console=true: watch (and e-stop) the expert from the page
        if console is not None:
            stack.callback(console.close)
        env = make_env(cfg, seed=seed)
        stack.callback(env.close)
        rng = np.random.default_rng(seed)
        expert = make_expert(env, noise=float(cfg.expert_noise), rng=rng)
        if console is not None:
            env = console.gate(env, "demo", person=False)
        writer = stack.enter_context(_writer(cfg, out, env))
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        rule = (lambda r: r.success) if keep == "success" else None
        results = run_episodes(env, expert.act, episodes, rng, writer, EpisodeSource.DEMO, keep=rule)
        total = writer.num_episodes
    labels = dict.fromkeys(("success", "failure", "discard"), 0) | {"none": len(results)}
    summary = _summary(out, results, total, teleop="none", keep=keep, labels=labels)
    log(
        f"[record-demos] {len(results)} demos (success {summary['success_rate']:.0%}, mean length "
        f"{summary['mean_length']:.1f}) -> {out / LOG}"
    )
    return summary


def _open_env(cfg: DictConfig, seed: int, rng: np.random.Generator, stack: ExitStack):
    """(the env a person drives, outermost wrapper first; the console session or None)."""
    device = cfg.teleop.device
    console = open_console(cfg)  # teleop=console or console=true: prints the URL to open
    if console is not None:
        stack.callback(console.close)
    page = console.device_for if console is not None and device == "console" else None
    env = make_actor_env(cfg, seed, rng, device_factory=page)  # InterventionWrapper(task env, the device)
    stack.callback(env.close)  # restores the keyboard's terminal; a hardware robot disarms and lets go
    teleop = env.device
    if console is not None:  # e-stop, arm and hold from the page; real time in the simulator
        env = console.gate(env)
    elif (cfg.get("robot") or {}).get("name", "mujoco") in SIM_ROBOTS:
        env = RealTime(env)  # a person cannot drive a simulator that runs ahead of the clock
    return env, teleop, console


def await_remote_device(device, patience_s: float = 2.0, poll_s: float = 0.05) -> None:
    """A device that hears from another process (teleop=ros: the teleop node) is heard from before the first
    episode starts, so that a person never drives into a link that is not there yet; after `patience_s`
    the wait says what it waits for (Ctrl-C stops it)."""
    if not hasattr(device, "received"):
        return
    deadline = time.monotonic() + patience_s
    while not device.received and time.monotonic() < deadline:
        time.sleep(poll_s)
    if device.received:
        return
    log(
        f"[record-demos] waiting for the teleop node on {device.topic}: start it (ros_ws: robot_rl_ros teleop, "
        "robot_namespace = teleop.namespace) or pick another teleop="
    )
    while not device.received:
        time.sleep(poll_s)


def record_by_hand(cfg: DictConfig, episodes: int, seed: int, keep: str) -> dict:
    """A person's demos (see the module docstring)."""
    out = open_run_dir(cfg.out)
    device = cfg.teleop.device
    rng = np.random.default_rng(seed)
    results: list[EpisodeResult] = []
    labels: Counter[str] = Counter(dict.fromkeys(("success", "failure", "discard", "none"), 0))
    finished = env_steps = losses = 0
    interrupted = False
    with ExitStack() as stack:
        env, teleop, console = _open_env(cfg, seed, rng, stack)
        writer = stack.enter_context(_writer(cfg, out, env))
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        act = hold_still(env)
        log(
            f"[record-demos] {episodes} demos by hand with teleop={device} on robot={cfg.robot.name} -> "
            f"{out / LOG} (keep={keep}); {HINTS[device]}; Ctrl-C stops (kept episodes stay)"
        )
        try:
            await_remote_device(teleop)
            while len(results) < episodes:
                try:
                    observation, reset_info = env.reset(seed=int(rng.integers(2**31)))
                except RobotUnavailable as err:  # a hiccup (a stale observation) or a robot that stays away
                    losses += 1
                    log(f"[record-demos] the reset before episode {finished + 1} failed: {err}")
                    if losses > MAX_LOSSES:
                        raise
                    time.sleep(RETRY_S)
                    continue
                log(f"[record-demos] episode {finished + 1}: go ({len(results)}/{episodes} kept)")
                steps, lost = _drive(env, act, observation, writer)
                env_steps += len(steps)
                if lost is not None:
                    losses += 1
                    log(f"[record-demos] the robot went away at step {len(steps)} of episode {finished + 1}: {lost}")
                    if losses > MAX_LOSSES:
                        raise lost
                    if not steps:
                        continue
                else:
                    losses = 0
                with _held_interrupt():  # an episode is committed and reported whole
                    finished += 1
                    label, success, how = verdict(steps)
                    if lost is not None:
                        how += ", the robot went away"
                    labels[label.name.lower()] += 1
                    length, driven = len(steps), sum(t.intervention for t in steps)
                    if keep == "all" or success:
                        result = EpisodeResult(
                            length,
                            float(sum(t.reward for t in steps)),
                            any(t.success for t in steps),
                            next((t.step + 1 for t in steps if t.success), None),
                            float(ResetInfo.of(reset_info).reset_s),
                        )
                        index = writer.end_episode(EpisodeSource.DEMO, reset_s=result.reset_s)
                        results.append(result)
                        _report(console, env_steps, index, steps, result, label)
                        fate = f"kept as demo {len(results)}/{episodes}"
                    else:
                        writer.discard_episode()
                        fate = "dropped"
                    log(f"[record-demos] episode {finished}: {fate} ({how}, {length} steps, {driven} driven)")
        except KeyboardInterrupt:
            writer.discard_episode()  # the episode in progress; the committed ones stay
            interrupted = True
        total = writer.num_episodes
    summary = _summary(
        out,
        results,
        total,
        teleop=device,
        keep=keep,
        episodes_finished=finished,
        dropped=finished - len(results),
        labels=dict(labels),
        interrupted=interrupted,
    )
    counts = ", ".join(f"{k} {v}" for k, v in labels.items() if v)
    log(
        f"[record-demos] {'stopped (Ctrl-C): ' if interrupted else ''}{len(results)} demos kept of "
        f"{finished} episodes (labels: {counts or 'none yet'}) -> {out / LOG}"
    )
    return summary


@contextmanager
def _held_interrupt():
    """Ctrl-C during the block takes effect when it ends (in the main thread; elsewhere nothing changes)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    pressed: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def _drive(
    env: gym.Env, act, observation, writer: EpisodeLogWriter
) -> tuple[list[Transition], RobotUnavailable | None]:
    """One episode as the person drives it, every step buffered in `writer` (committed by the caller). A robot
    that goes away (a lost link, a stale observation, an e-stop) ends it at its last executed step, truncated
    (as `train` does), and is returned beside the steps."""
    steps: list[Transition] = []
    episode_id = writer.num_episodes
    while True:
        try:
            transition = env_step(env, observation, act(observation), episode_id, len(steps))
        except RobotUnavailable as err:
            if steps:
                steps[-1].truncated = True  # the writer buffers these same transitions
            return steps, err
        writer.add(transition)
        steps.append(transition)
        if transition.terminated or transition.truncated:
            return steps, None
        observation = transition.next_observation


def _report(
    console: ConsoleSession | None,
    env_steps: int,
    index: int,
    steps: list[Transition],
    result: EpisodeResult,
    label: EpisodeLabel,
) -> None:
    """A kept episode to the console's episode table."""
    if console is None:
        return
    intervention = np.array([t.intervention for t in steps], bool)
    console.sink.emit(
        EpisodeEnd(
            env_steps,
            index,
            EpisodeSource.DEMO,
            result.length,
            result.episode_return,
            result.success,
            count_takeovers(intervention),
            int(intervention.sum()),
            label == EpisodeLabel.DISCARD,
            safety_steps=sum(1 for t in steps if t.safety),
        )
    )
    if label != EpisodeLabel.NONE:
        console.sink.emit(LabelEvent(env_steps, index, label))


def run(cfg: DictConfig) -> int:
    """The CLI's entry: 130 after Ctrl-C (the kept demos are in the store), else 0."""
    summary = record_demos(cfg)
    return INTERRUPTED if summary.get("interrupted") else 0
