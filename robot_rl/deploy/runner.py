"""`robot-rl deploy`: an exported policy drives a robot through the safety layer; every step is logged.

The order makes bad input harmless (the robot never moves on it):
  1. the policy file is read and checked (corrupt, truncated, not a policy) before any robot opens;
  2. the robot config is checked against the policy's metadata: the arm model and the control period;
  3. the env opens the robot (a connection, no motion); its observation and action spaces and the safety
     limits in force are checked against the metadata (limits wider than the policy allows are refused);
  4. a person confirms (`activate`): only then the first reset, the first motion.
Each episode's steps go to `<out>/episodes.zarr` (source deploy). A safety fault (a non-finite action from
the policy) ends its episode and deactivates: the person confirms again, or, with nobody to ask, the run
stops. Needs numpy and onnxruntime, not torch (the `deploy` extra).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import UserError, count_arg, log
from robot_rl.data.episode_log import EpisodeLogWriter
from robot_rl.data.files import write_atomic
from robot_rl.data.schema import EpisodeSource, Transition, safety_names
from robot_rl.deploy.policy import ExportedPolicy, load_policy
from robot_rl.envs.factory import make_env
from robot_rl.envs.safety import SafetyLimits, SafetyWrapper
from robot_rl.robots import SIM_ROBOTS, is_simulated
from robot_rl.robots.arms import get_arm
from robot_rl.runtime.rollout import EpisodeResult, run_episode, summarize

LOG = "episodes.zarr"
ACTIVATIONS = ("auto", "prompt", "console", "service", "now")


class Deactivated(Exception):
    """The person declined to activate (or nobody can be asked after a fault): the run stops."""


# ---------------------------------------------------------------------------------------- activation
class Activation:
    """Whether the policy may drive the robot. `wait()` blocks until a person confirms; False: declined."""

    def __init__(self) -> None:
        self.active = False

    def wait(self) -> bool:
        raise NotImplementedError

    def deactivate(self, reason: str) -> None:
        if self.active:
            log(f"[deploy] inactive: {reason}")
        self.active = False

    def close(self) -> None:
        pass


class Immediate(Activation):
    """A simulated robot: active at once; after a fault there is nobody to confirm, so the run stops."""

    def __init__(self) -> None:
        super().__init__()
        self._used = False

    def wait(self) -> bool:
        if self._used:
            return False
        self._used = self.active = True
        return True


class Prompt(Activation):
    """The person types `yes` in this terminal (anything else stops the run)."""

    def __init__(self, question: str) -> None:
        super().__init__()
        if not sys.stdin or not sys.stdin.isatty():
            raise UserError(
                "activate=prompt needs a terminal to ask in (stdin is not one): run robot-rl deploy in a terminal, "
                "or use activate=console or activate=service"
            )
        self.question = question

    def wait(self) -> bool:
        print(f"{self.question} Type yes to activate, anything else to stop: ", end="", flush=True)
        answer = sys.stdin.readline()
        self.active = answer.strip().lower() == "yes"
        return self.active


class Service(Activation):
    """ROS 2: `<robot namespace>/deploy/activate` (std_srvs/SetBool): true activates, false deactivates."""

    def __init__(self, robot: Any) -> None:
        super().__init__()
        from robot_rl.ros.activation import ActivationService

        self._event = threading.Event()
        self.service = ActivationService(robot.node, f"{robot.namespace.rstrip('/')}/deploy/activate", self._set)
        log(
            f"[deploy] inactive: ros2 service call {self.service.name} std_srvs/srv/SetBool '{{data: true}}' "
            "to activate"
        )

    def _set(self, active: bool) -> str:
        self.active = active
        (self._event.set if active else self._event.clear)()
        return "active" if active else "inactive: the robot holds"

    def deactivate(self, reason: str) -> None:
        super().deactivate(reason)
        self._event.clear()

    def wait(self) -> bool:
        while not self._event.wait(0.1):  # short waits: Ctrl-C stays responsive
            pass
        return True


class ConsoleArm(Activation):
    """The console's page: arming it is the confirmation (its gate holds the loop while disarmed); a fault
    disarms, and the person arms again from the page."""

    def __init__(self, hub: Any) -> None:
        super().__init__()
        self.hub = hub
        self.active = True  # the console's gate does the waiting

    def wait(self) -> bool:
        self.active = True
        return True

    def deactivate(self, reason: str) -> None:
        self.hub.set_flags(armed=False, estopped=self.hub.estopped)
        self.hub.notice("error", f"deploy: {reason}; arm to go on")
        log(f"[deploy] disarmed: {reason}; arm from the console to go on")


class ActivationGate(gym.Wrapper):
    """Nothing moves while inactive: `reset` waits for the person's confirmation; a step taken after a
    deactivation does not command the robot (it holds) and ends the episode."""

    def __init__(self, env: gym.Env, activation: Activation) -> None:
        super().__init__(env)
        self.activation = activation
        self._observation = None

    def reset(self, **kwargs: Any):
        if not self.activation.active and not self.activation.wait():
            raise Deactivated("not (re)activated: the robot holds and the run stops here")
        self._observation, info = self.env.reset(**kwargs)
        return self._observation, info

    def step(self, action: np.ndarray):
        if not self.activation.active:
            self.env.unwrapped.robot.stop()
            return self._observation, 0.0, False, True, {}
        self._observation, reward, terminated, truncated, info = self.env.step(action)
        return self._observation, reward, terminated, truncated, info


# ---------------------------------------------------------------------------------------- checks
def check_robot_config(policy: ExportedPolicy, robot_cfg: DictConfig) -> None:
    """The configured robot against the policy's metadata, before the robot opens: its arm model (a
    policy's actions and observations are in its arm's frame and scale) and its control period."""
    meta, name = policy.metadata, policy.where
    want = meta.robot.get("model")
    model = robot_cfg.get("model")
    if want and model and get_arm(str(model)).name != get_arm(str(want)).name:
        raise UserError(f"policy {name} was trained on the {want} arm, robot.model={model}: pass robot.model={want}")
    dt = robot_cfg.get("control_dt")
    if dt is not None and abs(float(dt) - meta.control_dt) > 1e-9:
        raise UserError(
            f"policy {name} acts every {meta.control_dt} s, robot.control_dt={dt}: "
            f"pass robot.control_dt={meta.control_dt}"
        )


def check_env(policy: ExportedPolicy, env: gym.Env, safety: SafetyWrapper) -> None:
    """The opened robot's env against the metadata: spaces, control period and safety limits."""
    meta = policy.metadata
    policy.check_env(env.observation_space, env.action_space, meta.task_name, meta.task.get("config"))
    dt = float(env.unwrapped.robot.control_dt)
    if abs(dt - meta.control_dt) > 1e-6:
        raise UserError(f"policy {policy.where} acts every {meta.control_dt} s, the robot's control period is {dt} s")
    safety.limits.check_within(SafetyLimits.from_dict(meta.safety), f"policy {policy.where}")


def resolve_activation(cfg: DictConfig) -> str:
    mode = str(cfg.activate)
    if mode not in ACTIVATIONS:
        raise UserError(f"activate={mode}: choose one of {', '.join(ACTIVATIONS)}")
    if mode == "auto":
        return "now" if cfg.robot.name in SIM_ROBOTS else "prompt"
    if mode == "now" and not is_simulated(cfg.robot):
        raise UserError(
            f"activate=now on robot={cfg.robot.name} would move a real arm unconfirmed: use activate=prompt, "
            "console or service"
        )
    if mode == "service" and cfg.robot.name != "ros":
        raise UserError("activate=service is the ROS activate service: use it with robot=ros, or activate=prompt")
    return mode


def env_config(policy: ExportedPolicy, cfg: DictConfig) -> DictConfig:
    """The config the env is built from: the policy's task, the chosen robot, the safety layer on."""
    meta = policy.metadata
    if meta.robot.get("name") is None:
        raise UserError(f"policy {policy.where} is for {meta.task_label}, not a robot task: deploy runs robot tasks")
    task = {"name": meta.task_name, **(meta.task.get("config") or {})}
    env_cfg = OmegaConf.create({"task": task, "robot": OmegaConf.to_container(cfg.robot, resolve=True)})
    env_cfg.safety = OmegaConf.to_container(cfg.safety, resolve=True)
    env_cfg.safety.enabled = True  # deploy always runs through the safety layer
    if cfg.activate == "console" or cfg.console.enabled:
        env_cfg.console = OmegaConf.to_container(cfg.console, resolve=True)
    return env_cfg


# ---------------------------------------------------------------------------------------- the run
def safety_counts(steps: list[Transition]) -> Counter:
    """How often each safety action acted in `steps` (by name)."""
    return Counter(name for step in steps for name in safety_names(step.safety))


def deploy(cfg: DictConfig) -> dict:
    episodes, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "seed")
    video = count_arg(cfg, "video")
    activation_mode = resolve_activation(cfg)
    policy = load_policy(str(cfg.policy))
    check_robot_config(policy, cfg.robot)
    out = Path(cfg.out) if cfg.out else Path(cfg.policy).resolve().parent / "deploy"
    env_cfg = env_config(policy, cfg)
    with ExitStack() as stack:
        env = make_env(env_cfg, seed=seed)
        closing = stack.enter_context(_Closing(env))  # closes the outermost wrapper (and so the robot) once
        safety = find_wrapper(env, SafetyWrapper)
        check_env(policy, env, safety)
        out.mkdir(parents=True, exist_ok=True)
        writer = EpisodeLogWriter(
            out / LOG,
            env.observation_space,
            env.action_space,
            config={
                "deploy": OmegaConf.to_container(cfg, resolve=True),
                "policy": json.loads(policy.metadata.to_json()),
            },
        )
        stack.callback(writer.close)
        recorder = None
        if video:
            from robot_rl.envs.video import RecordVideo

            env = closing.env = recorder = RecordVideo(env, out / "videos", episodes=video)
        if activation_mode == "console":
            from robot_rl.console.session import open_console

            env_cfg.console.enabled, env_cfg.console.armed = True, "false"  # arming on the page confirms
            console = open_console(env_cfg)
            stack.callback(console.close)
            env, activation = console.gate(env, "deploy", person=False), ConsoleArm(console.hub)
        elif activation_mode == "service":
            activation = Service(env.unwrapped.robot)
        elif activation_mode == "prompt":
            activation = Prompt(f"[deploy] {policy.where} on robot={cfg.robot.name}:")
        else:
            activation = Immediate()
        stack.callback(activation.close)
        env = closing.env = ActivationGate(env, activation)
        return run_deployment(env, policy, activation, writer, episodes, seed, out, recorder)


class _Closing:
    """Closes `env` (reassigned as wrappers are added) once, on leaving."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.env.close()


def run_deployment(
    env: gym.Env,
    policy: ExportedPolicy,
    activation: Activation,
    writer: EpisodeLogWriter,
    episodes: int,
    seed: int,
    out: Path,
    recorder: Any = None,
) -> dict:
    """Roll out up to `episodes` episodes; writes `<out>/summary.json` and returns it."""
    rng = np.random.default_rng(seed)
    inference_s: list[float] = []

    def act(observation) -> np.ndarray:
        t0 = time.perf_counter()
        action = policy.act(observation)
        inference_s.append(time.perf_counter() - t0)
        return action

    results: list[EpisodeResult] = []
    totals: Counter = Counter()
    faults, safety_steps, stopped = 0, 0, None
    t0 = time.monotonic()
    while len(results) < episodes:
        steps: list[Transition] = []
        try:
            result = run_episode(env, act, int(rng.integers(2**31)), writer.num_episodes, steps.append)
        except Deactivated as err:
            stopped = str(err)
            break
        for step in steps:
            writer.add(step)
        writer.end_episode(EpisodeSource.DEPLOY, reset_s=result.reset_s)
        results.append(result)
        counts = safety_counts(steps)
        totals.update(counts)
        safety_steps += sum(1 for step in steps if step.safety)
        if counts.get("fault_nonfinite"):
            faults += 1
            activation.deactivate("safety fault: the policy's action was not finite (NaN or inf)")
        log(
            f"[deploy] episode {len(results)}/{episodes}: {'success' if result.success else 'failure'} in "
            f"{result.length} steps, return {result.episode_return:.2f}"
            + (f", safety {dict(counts)}" if counts else "")
        )
    summary = {
        "command": "deploy",
        "policy": str(policy.where),
        "source": policy.metadata.source,
        **summarize(results),
        "safety_steps": safety_steps,
        "safety": dict(sorted(totals.items())),
        "faults": faults,
        "inference_ms": _percentiles(inference_s),
        "wall_s": round(time.monotonic() - t0, 1),
        "stopped": stopped,
        "log": str(out / LOG),
    }
    if recorder is not None:  # each file is finished when its episode ends
        summary["videos"] = [str(p) for p in recorder.paths]
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    log(
        f"[deploy] {policy.where}: success {summary['success_rate']:.0%} over {summary['episodes']} episodes, "
        f"{safety_steps} steps changed by the safety layer, {faults} faults"
        + (f"; stopped: {stopped}" if stopped else "")
        + f" -> {out / 'summary.json'}"
    )
    return summary


def _percentiles(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    ms = np.asarray(seconds) * 1e3
    return {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def find_wrapper(env: gym.Env, kind: type) -> Any:
    """The wrapper of type `kind` in `env`'s chain; a one-line error when there is none."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, kind):
            return env
        env = env.env
    raise UserError(f"the env has no {kind.__name__}: deploy needs the safety layer (safety.enabled)")
