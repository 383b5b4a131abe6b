"""Domain randomisation of the in-process MuJoCo sim: `DomainRandomization` applies one `Perturbation`
(robot_rl/tasks/randomization.py, which says what each value means) per episode to a RobotEnv on a MujocoRobot.

At reset it draws the episode's perturbation, `task.randomize` around `task.perturb` (the fixed difference of a
named target sim; the identity by default), from a generator of its own: seeded from the reset's seed (else the
env's seed) on a fixed stream, so the task's cube and start-pose sequence is the same with and without
randomisation. Then, before the task's reset runs:
  - `ModelPerturbation.apply` restores every model value it may touch to the nominal one and applies the draw:
    friction (cube and finger pads, sliding), cube mass and inertia (and the solver constants
    mj_setConst derives from them), cube size (its collision bounds too, and the
    task's resting height and half-size through `PickCubeTask.scale_object`), arm joint damping, arm servo kp and
    kv, the task cameras' pose and field of view, the lights' diffuse and specular, the cube's and table's colour.
Every step:
  - observation noise on "state" (`task.state_noise_std()` x obs_noise; images untouched);
  - action noise (std action_noise on every dim but the gripper), then the clip to [-1, 1];
  - latency: the action executed at step t is the (noisy) action sent at step t - latency; for t < latency the arm
    holds (zero motion) and the gripper keeps its last command.
The drawn values go into every step's StepInfo (`perturbation`, the flat `Perturbation.as_dict()`), from which the
episode log writes `meta/perturbation` (robot_rl/data/episode_log.py).

Where it sits (robot_rl/envs/factory.py): around the safety layer when there is one (the safety layer stays the
innermost wrapper, so every command the arm executes, late or noisy, passed its checks), inside the reward
classifier and the intervention wrapper (a person's actions are delayed and noised like the policy's). Noise and
latency are part of the simulated plant: the log's `action`/`policy_action` are what was sent, as on a real robot.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from robot_rl.config import UserError
from robot_rl.data.schema import StepInfo
from robot_rl.robots.mujoco import MujocoRobot
from robot_rl.tasks.dynamics import SceneDynamics
from robot_rl.tasks.randomization import Perturbation, Randomization

#: the randomisation generator's stream: its seed is [reset seed, RANDOMIZE_STREAM]
RANDOMIZE_STREAM = 0x52414E44
TABLE_BODY = "table"

#: the model fields of the looks (cameras, lights, colours); the dynamics' are SceneDynamics'
_FIELDS = (
    "geom_rgba",
    "geom_matid",
    "mat_rgba",
    "cam_pos",
    "cam_quat",
    "cam_fovy",
    "cam_mode",
    "light_diffuse",
    "light_specular",
)


def _rotvec_quat(rotvec: np.ndarray) -> np.ndarray:
    quat = np.array([1.0, 0.0, 0.0, 0.0])
    angle = float(np.linalg.norm(rotvec))
    if angle > 0:
        mujoco.mju_axisAngle2Quat(quat, np.asarray(rotvec, np.float64) / angle, angle)
    return quat


class ModelPerturbation:
    """Applies Perturbations to a MujocoRobot's model (and the task's cube size), restoring the nominal model
    first each time: `apply(Perturbation())` gives back the model as loaded, bit for bit."""

    def __init__(self, robot: MujocoRobot, task: Any) -> None:
        m = robot.model
        self.robot, self.task, self.model = robot, task, m
        self.dynamics = SceneDynamics(m, robot.kin.joint_names, task.cube_name)
        self.cube_geoms = self.dynamics.cube_geoms
        table = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, TABLE_BODY)
        self.table_geoms = np.flatnonzero(m.geom_bodyid == table) if table >= 0 else np.zeros(0, int)
        self.cameras = np.array([m.camera(c).id for c in getattr(task, "cameras", ())], dtype=int)
        self.nominal = {name: getattr(m, name).copy() for name in _FIELDS}
        # each task camera's nominal orientation in its body frame, also for a camera aimed by mode (targetbody):
        # a moved or turned camera is fixed to its body at the nominal orientation, then turned
        scratch = mujoco.MjData(m)
        mujoco.mj_forward(m, scratch)
        self.camera_quat = {}
        for cam in self.cameras:
            world, body = np.empty(4), np.empty(4)
            mujoco.mju_mat2Quat(world, scratch.cam_xmat[cam])
            mujoco.mju_negQuat(body, scratch.xquat[m.cam_bodyid[cam]])
            local = np.empty(4)
            mujoco.mju_mulQuat(local, body, world)
            self.camera_quat[int(cam)] = local

    def restore(self) -> None:
        """Every value `apply` may change back to the nominal model's."""
        for name, value in self.nominal.items():
            getattr(self.model, name)[:] = value
        self.dynamics.restore()
        self.task.scale_object(1.0)

    def apply(self, p: Perturbation) -> None:
        """The nominal model with `p` applied (see robot_rl/tasks/randomization.py for each value's meaning)."""
        self.restore()
        m, nom = self.model, self.nominal
        self.dynamics.apply(p)  # friction, cube mass and size, arm damping, servo gains (robot_rl/tasks/dynamics.py)
        self.task.scale_object(p.object_size)
        moved = any(p.camera_pos) or any(p.camera_rot)
        for cam in self.cameras:
            if moved:
                m.cam_mode[cam] = mujoco.mjtCamLight.mjCAMLIGHT_FIXED
                m.cam_pos[cam] = nom["cam_pos"][cam] + np.asarray(p.camera_pos)
                mujoco.mju_mulQuat(m.cam_quat[cam], self.camera_quat[int(cam)], _rotvec_quat(np.asarray(p.camera_rot)))
            m.cam_fovy[cam] = float(np.clip(nom["cam_fovy"][cam] + p.camera_fovy, 1.0, 179.0))
        m.light_diffuse[:] = nom["light_diffuse"] * p.light
        m.light_specular[:] = nom["light_specular"] * p.light
        self._colour(self.cube_geoms, p.cube_rgb)
        self._colour(self.table_geoms, p.table_rgb)

    def _colour(self, geoms: np.ndarray, offset: tuple[float, float, float]) -> None:
        """Add `offset` to the rgb of `geoms` (clipped to 0..1): through their material when only they use it
        (a shared material is detached: the geom gets its own rgba)."""
        if not any(offset):
            return
        m, nom = self.model, self.nominal
        off = np.asarray(offset, np.float32)
        for gid in geoms:
            mat = int(nom["geom_matid"][gid])
            if mat >= 0 and set(np.flatnonzero(nom["geom_matid"] == mat)) <= set(geoms.tolist()):
                m.mat_rgba[mat, :3] = np.clip(nom["mat_rgba"][mat, :3] + off, 0.0, 1.0)
            else:
                base = nom["mat_rgba"][mat] if mat >= 0 else nom["geom_rgba"][gid]
                m.geom_matid[gid] = -1
                m.geom_rgba[gid, :3] = np.clip(base[:3] + off, 0.0, 1.0)
                m.geom_rgba[gid, 3] = base[3]


class DomainRandomization(gym.Wrapper):
    """One Perturbation per episode on a RobotEnv with a MujocoRobot (see the module docstring):
    `randomization` drawn around `base` (default: the task's `randomization` and `perturbation`)."""

    def __init__(
        self,
        env: gym.Env,
        randomization: Randomization | None = None,
        base: Perturbation | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(env)
        inner = env.unwrapped
        robot, task = getattr(inner, "robot", None), getattr(inner, "task", None)
        if not isinstance(robot, MujocoRobot):
            raise UserError(
                f"task.randomize / task.perturb act on the in-process sim (robot=mujoco), not on "
                f"{type(robot).__name__}: remove them from the task config"
            )
        self.base_env, self.task = inner, task
        self.randomization = randomization if randomization is not None else task.randomization
        self.base = base if base is not None else task.perturbation
        self.model = ModelPerturbation(robot, task)
        self.noise_std = np.asarray(task.state_noise_std(), np.float32)
        self.rng = np.random.default_rng(None if seed is None else [int(seed), RANDOMIZE_STREAM])
        self.perturbation = self.base
        self.values: dict[str, float] = self.base.as_dict()
        self._queue: deque[np.ndarray] = deque()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.rng = np.random.default_rng([int(seed), RANDOMIZE_STREAM])
        p = self.randomization.sample(self.rng, base=self.base) if self.randomization.enabled else self.base
        self.perturbation, self.values = p, p.as_dict()
        self.model.apply(p)
        self.task.latency = p.latency  # the scripted expert plans over it
        self._queue.clear()
        obs, info = self.env.reset(seed=seed, options=options)
        return self._noisy(obs), info

    def step(self, action: np.ndarray):
        p = self.perturbation
        action = np.array(action, dtype=np.float32)
        if p.action_noise > 0:
            action[:-1] += self.rng.normal(0.0, p.action_noise, action.shape[0] - 1).astype(np.float32)
            action = np.clip(action, -1.0, 1.0)
        if p.latency > 0:
            self._queue.append(action)
            if len(self._queue) > p.latency:
                action = self._queue.popleft()
            else:  # nothing sent has arrived yet: hold still, the gripper keeping its command
                action = np.zeros_like(action)
                action[-1] = self.base_env.gripper
        obs, reward, terminated, truncated, info = self.env.step(action)
        StepInfo.of(info).perturbation = self.values
        return self._noisy(obs), reward, terminated, truncated, info

    def _noisy(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scale = self.perturbation.obs_noise
        if scale <= 0:
            return obs
        state = obs["state"]
        noise = self.rng.normal(0.0, 1.0, state.shape) * (self.noise_std * scale)
        return {**obs, "state": (state + noise).astype(state.dtype)}
