"""BatchPickCube: pick_cube (state observations, 4-dim actions, sparse reward) for a batch of envs on MJX.

Per env it does what RobotEnv(MujocoRobot, PickCubeTask) does (robot_rl/envs/robot_env.py,
robot_rl/tasks/pick_cube.py):
  - reset (reset_mode=state): start TCP = start_tcp + U(+-start_noise) (clipped to the workspace), the arm
    teleported to its IK solution (100 iterations, damping 1e-3, from home), gripper open, at rest; the cube at
    rest at a uniform position in the cube area. The draws use `gym.utils.seeding.np_random(seed)` in the
    task's order, so an env reset with seed s starts where RobotEnv.reset(seed=s) does.
  - step: action noise (std `action_noise` on dx, dy, dz), the clip to [-1, 1], the latency queue (the
    executed action is the one from `latency` steps before; before that the arm holds and the gripper keeps
    its command), the sticky gripper command (Task.gripper_command), MujocoRobot.apply_action in JAX
    (robot_rl/sim_batch/control.py), the observation float32[10] (TCP position, TCP linear velocity, gripper
    opening, cube position) with Gaussian obs noise, reward 1 on success (the cube `lift_height` above its
    resting height, which follows object_size), termination on success, truncation at `max_steps`.
  - dynamics perturbations per env through per-env model fields (robot_rl/sim_batch/scene.py).

Done-masking, no auto-reset: once an env terminates or truncates it is frozen (its state stops changing; later
steps report reward 0 and terminated = truncated = success = False for it) until the next `reset`. `done`
says which envs have finished. The whole control step (50 physics steps) is one jit-compiled, vmapped call;
the first call of a batch size compiles it (tens of seconds on a CPU), later calls reuse it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from robot_rl.sim_batch.control import Controller
from robot_rl.sim_batch.scene import PERTURBED_FIELDS, Scene
from robot_rl.tasks.pick_cube import PickCubeTask
from robot_rl.tasks.randomization import OBS_NOISE_STD, Perturbation

with contextlib.redirect_stdout(io.StringIO()):
    from mujoco import mjx

OBS_DIM = 10
ACTION_DIM = 4
MAX_LATENCY = 10  # Perturbation.check's bound
DEVICES = ("cpu", "cuda")


class EnvState(NamedTuple):
    """One env's state (a batch of them: leading axis env)."""

    data: mjx.Data
    tcp_target: jax.Array  # [3]
    q_target: jax.Array  # [n_joints]
    gripper: jax.Array  # sticky gripper command, -1 open .. +1 closed
    t: jax.Array  # control steps since reset
    queue: jax.Array  # [MAX_LATENCY + 1, 4]: queue[k] = the (noisy, clipped) policy action of k steps ago
    done: jax.Array  # terminated or truncated
    key: jax.Array  # PRNG key for the noise
    rest_z: jax.Array  # the cube's resting height (follows object_size)
    latency: jax.Array  # int
    obs_noise: jax.Array
    action_noise: jax.Array


def resolve_device(device: str) -> jax.Device:
    """The jax device for "cpu" or "cuda"; a one-line ValueError when jax has no such device."""
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not one of {', '.join(DEVICES)}: pick one")
    try:
        return jax.devices(device)[0]
    except RuntimeError:
        raise ValueError(
            f"device={device} but jax sees no {device} device (backends: {jax.default_backend()}): install "
            "jax with CUDA support (pip install 'jax[cuda12]') or use device=cpu"
        ) from None


class BatchPickCube:
    """pick_cube on MJX for `batch_size` envs (`arm`: "panda"); numpy in and out. See the module docstring."""

    def __init__(
        self,
        batch_size: int,
        arm: str = "panda",
        device: str = "cpu",
        *,
        max_steps: int = 100,
        action_scale: float = 0.03,
        start_noise: float = 0.02,
        lift_height: float | None = None,
        gripper_threshold: float = 0.5,
        n_chunks: int = 5,
        reanchor_dist: float = 0.04,
        control_dt: float = 0.1,
    ) -> None:
        """Task keys as PickCubeTask's and robot keys as MujocoRobot's (their defaults); None takes the arm's."""
        if not (isinstance(batch_size, int | np.integer) and batch_size >= 1):
            raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
        if not (int(max_steps) >= 1 and action_scale > 0 and start_noise >= 0):
            raise ValueError(
                f"max_steps={max_steps}, action_scale={action_scale}, start_noise={start_noise}: need >= 1, > 0, >= 0"
            )
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.scene = scene = Scene(arm)
        a, m, ids = scene.arm, scene.model, scene.ids
        n_substeps = int(round(control_dt / m.opt.timestep))
        if n_substeps < 1 or abs(n_substeps * m.opt.timestep - control_dt) > 1e-9:
            raise ValueError(f"control_dt={control_dt} must be a positive multiple of the timestep {m.opt.timestep}")
        self.max_steps = int(max_steps)
        self.action_scale = float(action_scale)
        # the task's start draws and per-arm defaults: PickCubeTask's own
        self.task = PickCubeTask(start_noise=start_noise, lift_height=lift_height, gripper_threshold=gripper_threshold)
        self.task.use_arm(a)
        self.workspace = (np.array(a.workspace[0], dtype=np.float64), np.array(a.workspace[1], dtype=np.float64))
        kin = scene.kin
        self.ctl = Controller(
            arm_qpos=ids.arm_qpos,
            arm_dof=ids.arm_dof,
            arm_act=ids.arm_act,
            grip_act=ids.grip_act,
            tcp_site=ids.tcp_site,
            tcp_body=ids.tcp_body,
            home_q=kin.home_q.astype(np.float32),
            home_rot=kin.home_tcp_rot.astype(np.float32),
            q_lo=kin.joint_limits[0].astype(np.float32),
            q_hi=kin.joint_limits[1].astype(np.float32),
            ws_lo=self.workspace[0].astype(np.float32),
            ws_hi=self.workspace[1].astype(np.float32),
            max_opening=float(a.max_opening),
            reanchor_dist=float(reanchor_dist),
            n_substeps=n_substeps,
            n_chunks=max(1, min(int(n_chunks), n_substeps)),
        )
        self._ids = ids
        self._in_axes = jax.tree_util.tree_map(lambda _: None, scene.mjx_model).tree_replace(
            {name: 0 for name in PERTURBED_FIELDS}
        )
        self._base_data = jax.device_put(scene.mjx_data, self.device)
        self._step_fn = jax.jit(jax.vmap(self._step_one, in_axes=(self._in_axes, 0, 0)))
        self._reset_fn = jax.jit(jax.vmap(self._reset_one, in_axes=(self._in_axes, None, 0, 0, 0, 0, 0, 0, 0)))
        self._model: mjx.Model | None = None
        self._state: EnvState | None = None
        self.perturbations: list[Perturbation] = []

    # ------------------------------------------------------------------ per-env functions (vmapped, jit-compiled)
    def _observe(self, m: mjx.Model, d: mjx.Data, key: jax.Array, obs_noise: jax.Array) -> jax.Array:
        ctl, ids = self.ctl, self._ids
        obs = jnp.concatenate(
            [
                d.site_xpos[ctl.tcp_site],
                ctl.tcp_velocity(m, d),
                d.qpos[ids.finger_qpos].sum()[None],
                d.xpos[ids.cube_body],
            ]
        )
        p, v, g = OBS_NOISE_STD["position"], OBS_NOISE_STD["velocity"], OBS_NOISE_STD["gripper"]
        std = jnp.array([p, p, p, v, v, v, g, p, p, p]) * obs_noise
        return (obs + std * jax.random.normal(key, (OBS_DIM,))).astype(jnp.float32)

    def _reset_one(
        self,
        m: mjx.Model,
        base: mjx.Data,
        tcp: jax.Array,
        cube_pos: jax.Array,
        rest_z: jax.Array,
        latency: jax.Array,
        obs_noise: jax.Array,
        action_noise: jax.Array,
        key: jax.Array,
    ) -> tuple[EnvState, jax.Array]:
        ctl, ids = self.ctl, self._ids
        q = ctl.solve_ik(m, base, tcp, jnp.asarray(ctl.home_q), iters=100, damping=1e-3, tol=1e-6)
        qpos = base.qpos.at[ids.arm_qpos].set(q).at[ids.finger_qpos].set(ctl.max_opening / 2)
        qpos = qpos.at[ids.cube_qpos : ids.cube_qpos + 3].set(cube_pos)
        qpos = qpos.at[ids.cube_qpos + 3 : ids.cube_qpos + 7].set(jnp.array([1.0, 0.0, 0.0, 0.0]))
        ctrl = base.ctrl.at[ids.arm_act].set(q).at[ids.grip_act].set(ctl.max_opening)
        d = base.replace(qpos=qpos, qvel=jnp.zeros_like(base.qvel), ctrl=ctrl)
        d = ctl.settle_kinematics(m, d)
        key, sub = jax.random.split(key)
        state = EnvState(
            data=d,
            tcp_target=tcp,
            q_target=q,
            gripper=jnp.array(-1.0),
            t=jnp.array(0, dtype=jnp.int32),
            queue=jnp.zeros((MAX_LATENCY + 1, ACTION_DIM)),
            done=jnp.array(False),
            key=key,
            rest_z=rest_z,
            latency=latency,
            obs_noise=obs_noise,
            action_noise=action_noise,
        )
        return state, self._observe(m, d, sub, obs_noise)

    def _step_one(self, m: mjx.Model, s: EnvState, action: jax.Array) -> tuple[EnvState, tuple[jax.Array, ...]]:
        key, k_act, k_obs = jax.random.split(s.key, 3)
        noise = s.action_noise * jax.random.normal(k_act, (ACTION_DIM,)) * jnp.array([1.0, 1.0, 1.0, 0.0])
        a = jnp.clip(action + noise, -1.0, 1.0)
        queue = jnp.concatenate([a[None], s.queue[:-1]])
        executed = queue[s.latency]
        delta = executed[:3] * self.action_scale
        g = executed[3]
        thr = self.task.gripper_threshold
        gripper = jnp.where(g > thr, 1.0, jnp.where(g < -thr, -1.0, s.gripper))
        d, tcp_target, q_target = self.ctl.apply_action(m, s.data, s.tcp_target, s.q_target, delta, gripper)
        t = s.t + 1
        success = d.xpos[self._ids.cube_body, 2] - s.rest_z >= self.task.lift_height
        truncated = ~success & (t >= self.max_steps)
        new = EnvState(
            data=d,
            tcp_target=tcp_target,
            q_target=q_target,
            gripper=gripper,
            t=t,
            queue=queue,
            done=success | truncated,
            key=key,
            rest_z=s.rest_z,
            latency=s.latency,
            obs_noise=s.obs_noise,
            action_noise=s.action_noise,
        )
        obs_new = self._observe(m, d, k_obs, s.obs_noise)
        frozen = s.done
        out_state = jax.tree_util.tree_map(lambda old, upd: jnp.where(frozen, old, upd), s, new)
        obs_old = self._observe(m, s.data, k_obs, s.obs_noise)
        obs = jnp.where(frozen, obs_old, obs_new)
        live = ~frozen
        reward = jnp.where(live & success, 1.0, 0.0).astype(jnp.float32)
        return out_state, (obs, reward, live & success, live & truncated, live & success)

    # ------------------------------------------------------------------ numpy API
    def _sample_starts(self, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Start TCPs and cube xy per env, drawn as PickCubeTask.reset draws them from RobotEnv's generator."""
        tcps, cubes = [], []
        for seed in seeds:
            rng, _ = gym.utils.seeding.np_random(int(seed))
            tcp = self.task.start_tcp + rng.uniform(-self.task.start_noise, self.task.start_noise, size=3)
            cubes.append(self.task.sample_cube_pose(rng)[0][:2])
            tcps.append(np.clip(tcp, *self.workspace))
        return np.array(tcps), np.array(cubes)

    def reset(
        self,
        seeds: Sequence[int] | None = None,
        perturbations: Sequence[Perturbation] | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Reset every env: env i from `seeds[i]` (else a seed drawn from `rng`, else 0..B-1) with
        `perturbations[i]` (default none). Returns the observations float32[B, 10]."""
        b = self.batch_size
        if seeds is None:
            seeds = range(b) if rng is None else rng.integers(0, 2**31 - 1, size=b)
        seeds = [int(s) for s in seeds]
        if len(seeds) != b:
            raise ValueError(f"reset got {len(seeds)} seeds for a batch of {b}: give one per env")
        perts = list(perturbations) if perturbations is not None else [Perturbation()] * b
        if len(perts) != b or not all(isinstance(p, Perturbation) for p in perts):
            raise ValueError(f"reset needs {b} Perturbation objects (one per env), got {len(perts)} items")
        for p in perts:
            p.check("perturbation")
        tcps, cube_xy = self._sample_starts(seeds)
        rest_z = np.array([self.task.cube_half_size * p.object_size for p in perts])  # table top at z = 0
        cube_pos = np.column_stack([cube_xy, rest_z])
        fields = self.scene.model_fields(perts)
        model = self.scene.mjx_model.tree_replace({k: jnp.asarray(v) for k, v in fields.items()})
        self._model = jax.device_put(model, self.device)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(np.array(seeds, dtype=np.uint32)))
        args = [
            tcps,
            cube_pos,
            rest_z,
            np.array([p.latency for p in perts], dtype=np.int32),
            np.array([p.obs_noise for p in perts]),
            np.array([p.action_noise for p in perts]),
        ]
        args = [jnp.asarray(x, dtype=jnp.int32 if x.dtype == np.int32 else jnp.float32) for x in args]
        state, obs = self._reset_fn(self._model, self._base_data, *jax.device_put([*args, keys], self.device))
        self._state = state
        self.perturbations = perts
        return np.asarray(obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One control step of every env with `actions` float32[B, 4] in [-1, 1] (dx, dy, dz, gripper). Returns
        obs float32[B, 10], reward float32[B], terminated, truncated, success bool[B] (finished envs: frozen,
        reward 0, all False)."""
        if self._state is None:
            raise RuntimeError("BatchPickCube.step called before reset(): call reset() first")
        a = np.asarray(actions, dtype=np.float32)
        if a.shape != (self.batch_size, ACTION_DIM):
            raise ValueError(f"actions must have shape ({self.batch_size}, {ACTION_DIM}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf: nothing moved")
        self._state, out = self._step_fn(self._model, self._state, jax.device_put(jnp.asarray(a), self.device))
        obs, reward, terminated, truncated, success = (np.asarray(x) for x in out)
        return obs, reward, terminated, truncated, success

    @property
    def done(self) -> np.ndarray:
        """bool[B]: the envs that have terminated or truncated since the last reset."""
        if self._state is None:
            raise RuntimeError("BatchPickCube.done read before reset(): call reset() first")
        return np.asarray(self._state.done)

    def tcp_target(self) -> np.ndarray:
        """The controllers' TCP targets float64[B, 3]."""
        return np.asarray(self._state.tcp_target, dtype=np.float64)
