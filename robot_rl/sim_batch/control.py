"""MujocoRobot's controller in JAX, for one env (the batched sim vmaps it): damped-least-squares IK as
ArmKinematics.solve_ik does it (7-joint arms), and `apply_action`: the TCP target moved by the delta (re-anchored
to within `reanchor_dist` of the measured TCP, clipped to the workspace), IK warm-started from the last joint
target, the joint targets interpolated over `n_chunks` chunks of the control period's physics steps, then the
kinematics and velocities the observation reads (MujocoRobot's closing mj_forward)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

with contextlib.redirect_stdout(io.StringIO()):
    from mujoco import mjx
    from mujoco.mjx._src import support


@dataclass(frozen=True)
class Controller:
    """The controller's constants (numpy; baked into the compiled step)."""

    arm_qpos: np.ndarray
    arm_dof: np.ndarray
    arm_act: np.ndarray
    grip_act: int
    tcp_site: int
    tcp_body: int
    home_q: np.ndarray
    home_rot: np.ndarray  # the TCP orientation target: home (gripper down)
    q_lo: np.ndarray
    q_hi: np.ndarray
    ws_lo: np.ndarray
    ws_hi: np.ndarray
    max_opening: float
    reanchor_dist: float
    n_substeps: int
    n_chunks: int

    # ------------------------------------------------------------------ kinematics
    def tcp_pose(self, m: mjx.Model, d: mjx.Data, q: jax.Array) -> tuple[jax.Array, jax.Array, mjx.Data]:
        """TCP position, rotation (3x3) and the kinematics data for arm joints `q` (a copy of `d`: the live
        state is not touched)."""
        d = d.replace(qpos=d.qpos.at[self.arm_qpos].set(q))
        d = mjx.kinematics(m, d)
        return d.site_xpos[self.tcp_site], d.site_xmat[self.tcp_site], d

    def solve_ik(
        self,
        m: mjx.Model,
        d: mjx.Data,
        target: jax.Array,
        q_init: jax.Array,
        iters: int,
        damping: float,
        tol: float,
        null_gain: float = 0.2,
    ) -> jax.Array:
        """ArmKinematics.solve_ik for a 7-joint arm with the home orientation target: up to `iters` damped
        least-squares steps from `q_init`, stopping once position and orientation errors are below `tol`."""
        rt = jnp.asarray(self.home_rot)
        eye6 = jnp.eye(6) * damping**2
        eye_n = jnp.eye(len(self.arm_qpos))
        lo, hi = jnp.asarray(self.q_lo), jnp.asarray(self.q_hi)
        home = jnp.asarray(self.home_q)

        def body(carry):
            i, q, done = carry
            pos, rot, dk = self.tcp_pose(m, d, q)
            e_pos = target - pos
            e_rot = 0.5 * (
                jnp.cross(rot[:, 0], rt[:, 0]) + jnp.cross(rot[:, 1], rt[:, 1]) + jnp.cross(rot[:, 2], rt[:, 2])
            )
            converged = (e_pos @ e_pos < tol * tol) & (e_rot @ e_rot < tol * tol)
            dk = mjx.com_pos(m, dk)
            jacp, jacr = support.jac(m, dk, pos, self.tcp_body)
            jac = jnp.concatenate([jacp[self.arm_dof].T, jacr[self.arm_dof].T])
            err = jnp.concatenate([e_pos, e_rot])
            dq = jac.T @ jnp.linalg.solve(jac @ jac.T + eye6, err)
            null = eye_n - jnp.linalg.pinv(jac, rtol=1e-4) @ jac
            dq = dq + null @ (null_gain * (home - q))
            q_next = jnp.clip(q + dq, lo, hi)
            return i + 1, jnp.where(converged, q, q_next), converged

        def cond(carry):
            i, _, done = carry
            return (i < iters) & ~done

        q0 = jnp.clip(q_init, lo, hi)
        _, q, _ = jax.lax.while_loop(cond, body, (0, q0, jnp.array(False)))
        return q

    # ------------------------------------------------------------------ observation support
    def settle_kinematics(self, m: mjx.Model, d: mjx.Data) -> mjx.Data:
        """Positions and velocities consistent with qpos/qvel (what MujocoRobot's mj_forward gives the reads)."""
        d = mjx.kinematics(m, d)
        d = mjx.com_pos(m, d)
        return mjx.com_vel(m, d)

    def tcp_velocity(self, m: mjx.Model, d: mjx.Data) -> jax.Array:
        """Linear velocity of the TCP site, world frame (mj_objectVelocity of the site, flg_local=0)."""
        cvel = d.cvel[self.tcp_body]
        root = m.body_rootid[self.tcp_body]
        offset = d.site_xpos[self.tcp_site] - d.subtree_com[root]
        return cvel[3:] - jnp.cross(offset, cvel[:3])

    # ------------------------------------------------------------------ one control period
    def apply_action(
        self,
        m: mjx.Model,
        d: mjx.Data,
        tcp_target: jax.Array,
        q_target: jax.Array,
        delta: jax.Array,
        gripper: jax.Array,
    ) -> tuple[mjx.Data, jax.Array, jax.Array]:
        """MujocoRobot.apply_action (no rotation): returns the new data (kinematics and velocities settled), TCP
        target and joint target."""
        measured = d.site_xpos[self.tcp_site]
        offset = tcp_target - measured
        dist = jnp.linalg.norm(offset)
        scale = jnp.where(dist > self.reanchor_dist, self.reanchor_dist / jnp.maximum(dist, 1e-12), 1.0)
        target = jnp.clip(measured + offset * scale + delta, self.ws_lo, self.ws_hi)
        q_new = self.solve_ik(m, d, target, q_target, iters=2, damping=0.05, tol=1e-4)
        g = jnp.clip(gripper, -1.0, 1.0)
        ctrl = d.ctrl.at[self.grip_act].set(self.max_opening * (1.0 - g) / 2.0)
        d = d.replace(ctrl=ctrl)
        steps = self.n_substeps // self.n_chunks

        def substep(d, k):
            chunk = jnp.minimum(k // steps, self.n_chunks - 1)
            q = q_target + (q_new - q_target) * ((chunk + 1) / self.n_chunks)
            d = d.replace(ctrl=d.ctrl.at[self.arm_act].set(q))
            return mjx.step(m, d), None

        d, _ = jax.lax.scan(substep, d, jnp.arange(self.n_substeps))
        return self.settle_kinematics(m, d), target, q_new
