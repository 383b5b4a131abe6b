"""Build the env a config names: `task.name` = pick_cube, pick_cube_vision (on `robot.name` = mujoco,
the in-process sim, serial, our firmware's arm, or ros, a robot bridge over ROS 2), peg_insert, peg_insert_vision
(the in-process sim only) or gym (any gymnasium env).

A robot task's env is wrapped in the safety layer (robot_rl/envs/safety.py, the `safety` config group) when
it is enabled: by default (`safety.enabled: auto`) for the hardware robots (serial, ros) only, so that every
simulated run keeps its numbers. It is the innermost wrapper: a person's teleop actions pass through it too.

Domain randomisation (`task.randomize`) and a fixed perturbation (`task.perturb`, the named target sims
pick_cube_target and pick_cube_vision_target) wrap it (robot_rl/envs/randomize.py): in the in-process sim only
(robot=mujoco); asked of another robot they are a one-line error."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import UserError
from robot_rl.envs.intervention import InterventionWrapper
from robot_rl.envs.intervention_reward import InterventionReward, check_reward_source
from robot_rl.envs.safety import SafetyLimits, SafetyWrapper
from robot_rl.tasks import TASKS as TASK_REGISTRY
from robot_rl.tasks.randomization import Perturbation, Randomization
from robot_rl.teleop.device import TeleopDevice

# tasks for a Robot (robot_rl/tasks' registry): the in-process sim or a ROS bridge (the *_target ones: a fixed
# perturbation, sim only)
ROBOT_TASKS = tuple(TASK_REGISTRY)
TASKS = (*ROBOT_TASKS, "gym")


def make_env(cfg: DictConfig, seed: int | None = None) -> gym.Env:
    """The env for `cfg.task` on `cfg.robot`; raises ValueError with a one-line fix on bad config."""
    task = OmegaConf.to_container(cfg.task, resolve=True)
    name = task.pop("name", None)
    if name == "gym":
        from robot_rl.envs.gym_adapter import make_gym_env

        return make_gym_env(**task)
    if name in ROBOT_TASKS:
        from robot_rl.envs.robot_env import make_robot_env

        robot = OmegaConf.to_container(cfg.robot, resolve=True)
        robot_name = robot.pop("name", "mujoco")
        limits = SafetyLimits.from_config(cfg.get("safety"))  # a bad safety config fails before the robot starts
        randomize = (  # a bad randomize/perturb config fails here too
            Randomization.from_config(task.get("randomize")).enabled
            or not Perturbation.from_config(task.get("perturb")).is_identity
        )
        if randomize and robot_name != "mujoco":
            raise UserError(
                f"task.randomize / task.perturb ({name}) act on the in-process sim only, not robot={robot_name}: "
                "remove them (task.randomize=null task.perturb=null) or use robot=mujoco"
            )
        try:
            env = make_robot_env(name, robot_name, seed=seed, robot_cfg=robot, **task)
        except TypeError as err:
            raise ValueError(f"bad task/robot config for {name} ({err}); see configs/task/{name}.yaml") from None
        try:
            if limits.is_enabled(robot_name):
                env = SafetyWrapper(env, limits, robot_name)
            if randomize:  # around the safety layer: what it passes is what the arm executes
                from robot_rl.envs.randomize import DomainRandomization

                env = DomainRandomization(env, seed=seed)
        except BaseException:
            env.close()
            raise
        return env
    raise ValueError(f"unknown task '{name}': choose one of {', '.join(TASKS)}")


def make_actor_env(
    cfg: DictConfig,
    seed: int,
    rng: np.random.Generator,
    device_factory: Callable[[gym.Env], TeleopDevice] | None = None,
):
    """The env the actor trains in: the task env (in the safety layer when enabled), with the reward classifier
    (`reward.classifier`) and a teleop device (`teleop.device`) wrapped around it when configured. With a
    classifier a sim task runs with `reward=dense`, so that only the classifier (not the sim's ground truth)
    ends episodes. With `reward.source=interventions` (RLIF, robot_rl/envs/intervention_reward.py) InterventionReward
    wraps the device's wrapper: the task's reward is not the learner's, an episode's end is a truncation.
    `device_factory(env)` makes the teleop device instead (the console's page: `teleop=console`)."""
    rlif = check_reward_source(cfg, actor=True) == "interventions"
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
        try:
            if device_factory is not None:
                device = device_factory(env)
            elif name == "sim_operator":  # watches the sim it runs in
                from robot_rl.teleop.sim_operator import SimulatedOperator

                device = SimulatedOperator(env, rng=rng, **teleop)
            else:
                from robot_rl.teleop.devices import make_device

                device = make_device(name, **teleop)
        except BaseException:  # no device (unplugged, no terminal): let go of the robot before the error
            env.close()
            raise
        env = InterventionWrapper(env, device)
    if rlif:
        env = InterventionReward(env)
    return env


def without_teleop(env: gym.Env) -> gym.Env:
    """The env `make_actor_env` built, without its teleop device and RLIF's relabelling: the task env (with the
    classifier when configured), e.g. for the scripted demos, which the log keeps as the task scored them."""
    if isinstance(env, InterventionReward):
        env = env.env
    return env.env if isinstance(env, InterventionWrapper) else env
