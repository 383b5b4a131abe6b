"""In-process MuJoCo robot: an arm chosen by name (robot_rl/robots/arms.py: "panda", a Panda-like 7-DoF
arm, or "so101", an SO-101-class 5-DoF arm) with end-effector delta control.

Control scheme (one `apply_action` = one control period of `control_dt`):
  1. the TCP position target moves by the commanded delta and is clipped to the workspace box; a
     commanded rotation (6-DoF tasks) turns the orientation target, which is clipped to
     `orientation_limits` around the home orientation (gripper pointing down);
  2. damped-least-squares differential IK (ArmKinematics, robot_rl/robots/kinematics.py: 6-D, position +
     the orientation target, nullspace pull to the home posture) turns it into a joint target;
  3. the joint position actuators (Panda: gravity compensated; SO-101: servos holding against gravity)
     track the joint target, linearly interpolated over `n_chunks` chunks, while `mujoco.mj_step` runs
     the physics substeps in C.
The SO-101 (5 joints) holds the gripper pointing down at its home yaw only: it takes no rotation
(`supports_rotation` False; a 6-DoF task is refused by RobotEnv with a one-line error).

Rendering is offscreen; MuJoCo picks its OpenGL backend when it is first imported, so this module
defaults `MUJOCO_GL` to `egl` (headless) before importing it. Import it before anything else imports
mujoco, or set `MUJOCO_GL` yourself.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402  (after MUJOCO_GL is set)
import numpy as np

from robot_rl.robots.arms import PANDA, TABLE_Z, ArmModel, get_arm
from robot_rl.robots.base import Robot, RobotState
from robot_rl.robots.kinematics import ArmKinematics, load_model, resolve_model_path, sim_dir

__all__ = [
    "ARM_JOINTS",
    "DEFAULT_WORKSPACE",
    "FINGER_JOINTS",
    "HOME_Q",
    "MAX_OPENING",
    "MODEL_FILE",
    "TABLE_Z",
    "MujocoRobot",
    "mat_to_rotvec",
    "resolve_model_path",
    "rotvec_to_mat",
    "sim_dir",
]

# The Panda's figures under their historical names (robot_rl/robots/arms.py holds every arm's).
MODEL_FILE = PANDA.mjcf
HOME_Q = np.array(PANDA.home_q)
ARM_JOINTS = PANDA.arm_joints
FINGER_JOINTS = PANDA.finger_joints
MAX_OPENING = PANDA.max_opening  # metres between the pads, fully open
DEFAULT_WORKSPACE = (np.array(PANDA.workspace[0]), np.array(PANDA.workspace[1]))


def rotvec_to_mat(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix (3x3) of a rotation vector (axis * angle, radians)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    quat, mat = np.empty(4), np.empty(9)
    mujoco.mju_axisAngle2Quat(quat, rotvec / angle, angle)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def mat_to_rotvec(mat: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, radians, angle <= pi) of a rotation matrix (3x3)."""
    quat, rotvec = np.empty(4), np.empty(3)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat, dtype=np.float64).reshape(9))
    mujoco.mju_quat2Vel(rotvec, quat, 1.0)
    return rotvec


class MujocoRobot(Robot):
    """Simulated arm + parallel gripper commanded in TCP position (and optionally rotation) deltas at
    `control_dt`. `model` names the arm (robot_rl/robots/arms.py: "panda" or "so101"); `arm` is its
    ArmModel and `kin` its ArmKinematics (which does the IK)."""

    def __init__(
        self,
        model: str = "panda",
        model_path: str | os.PathLike | None = None,
        control_dt: float = 0.1,
        workspace: tuple[np.ndarray, np.ndarray] | None = None,
        n_chunks: int = 5,
        reanchor_dist: float = 0.04,
        render_size: tuple[int, int] = (128, 128),
        render_samples: int = 0,
        orientation_limits: tuple[float, float, float] = (np.pi, np.pi, np.pi),
    ) -> None:
        """`model`: the arm's registry name; `model_path`: another MJCF file for it (default: the arm's
        scene in `sim_dir()`). `workspace`: TCP box (low[3], high[3]); default the arm's. `render_size`:
        default (height, width) of `render`. `render_samples`: multisample anti-aliasing samples for
        offscreen rendering (0 = off: 2.5x faster on a software renderer). `orientation_limits`:
        half-widths (rad) of the orientation target's box around home (a 6-DoF task sets its own)."""
        self.arm: ArmModel = get_arm(model)
        path = resolve_model_path(model_path, self.arm.mjcf)
        self.model = load_model(path)
        self.data = mujoco.MjData(self.model)
        self.kin = ArmKinematics(self.arm, model=self.model)  # IK works on its own MjData, never the live state

        m = self.model
        self.control_dt = float(control_dt)
        self.n_substeps = int(round(self.control_dt / m.opt.timestep))
        if self.n_substeps < 1 or abs(self.n_substeps * m.opt.timestep - self.control_dt) > 1e-9:
            raise ValueError(
                f"control_dt={control_dt} must be a positive multiple of the physics timestep {m.opt.timestep}"
            )
        self.n_chunks = max(1, min(int(n_chunks), self.n_substeps))
        if workspace is None:
            workspace = (np.array(self.arm.workspace[0]), np.array(self.arm.workspace[1]))
        lo, hi = workspace
        self.workspace = (np.asarray(lo, dtype=np.float64).copy(), np.asarray(hi, dtype=np.float64).copy())
        self.reanchor_dist = float(reanchor_dist)
        self.orientation_limits = np.asarray(orientation_limits, dtype=np.float64).copy()
        self.render_size = render_size
        self.model.vis.quality.offsamples = int(render_samples)  # read when a renderer is created
        self.gripper_max_opening = self.arm.max_opening
        self.supports_rotation = self.arm.supports_rotation

        kin = self.kin
        self._arm_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in kin.joint_names])
        self._arm_dof = np.array([m.jnt_dofadr[m.joint(j).id] for j in kin.joint_names])
        self._finger_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.arm.finger_joints])
        self._finger_dof = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.arm.finger_joints])
        self._arm_act = np.array([m.actuator(j).id for j in kin.joint_names])
        self._grip_act = m.actuator(self.arm.gripper_actuator).id
        self._tcp = m.site(self.arm.tcp_site).id
        self.joint_limits = kin.joint_limits
        self.home_q = kin.home_q
        # Target orientation: the TCP orientation at the home posture (z axis pointing down).
        self.home_tcp_pos = kin.home_tcp_pos
        self.home_tcp_rot = kin.home_tcp_rot
        self.tcp_rot_target = self.home_tcp_rot.copy()

        self._vel6 = np.zeros(6)
        self._renderers: dict[str, mujoco.Renderer] = {}
        self.tcp_target = self.home_tcp_pos.copy()
        self.q_target = self.home_q.copy()
        self.reset()

    # ------------------------------------------------------------------ kinematics
    def solve_ik(
        self,
        tcp_pos: np.ndarray,
        q_init: np.ndarray,
        iters: int = 2,
        damping: float = 0.05,
        null_gain: float = 0.2,
        tol: float = 1e-4,
    ) -> np.ndarray:
        """Joint positions putting the TCP at `tcp_pos` with the target orientation (`kin.solve_ik`,
        with the servo-loop defaults: a few iterations warm-started from the last target)."""
        return self.kin.solve_ik(
            tcp_pos, q_init, self.tcp_rot_target, iters=iters, damping=damping, tol=tol, null_gain=null_gain
        )

    def clip_to_workspace(self, pos: np.ndarray) -> np.ndarray:
        """`pos` clipped to the workspace box."""
        return np.clip(pos, self.workspace[0], self.workspace[1])

    def clip_orientation(self, rot: np.ndarray) -> np.ndarray:
        """Rotation `rot` (3x3) clipped to `orientation_limits`: its offset from the home orientation, as
        a base-frame rotation vector, is clipped per axis to +-limit."""
        offset = mat_to_rotvec(rot @ self.home_tcp_rot.T)
        if float(np.linalg.norm(offset)) < 1e-9:  # home up to rounding: exactly home
            return self.home_tcp_rot.copy()
        clipped = np.clip(offset, -self.orientation_limits, self.orientation_limits)
        if np.array_equal(clipped, offset):
            return rot
        return rotvec_to_mat(clipped) @ self.home_tcp_rot

    def rotation_to_home(self) -> np.ndarray | None:
        """Base-frame rotation vector from the orientation target to home; None when the target is home."""
        if np.array_equal(self.tcp_rot_target, self.home_tcp_rot):
            return None
        return mat_to_rotvec(self.home_tcp_rot @ self.tcp_rot_target.T)

    def orientation_offset(self) -> np.ndarray:
        """The TCP's orientation offset from home: a base-frame rotation vector (rad)."""
        return mat_to_rotvec(self.tcp_rotation() @ self.home_tcp_rot.T)

    # ------------------------------------------------------------------ Robot API
    def reset(self, tcp_pos: np.ndarray | None = None) -> RobotState:
        """Teleport the arm to an IK solution for `tcp_pos` (default: home), gripper open, at rest.
        A non-finite `tcp_pos` raises ValueError and changes nothing."""
        if tcp_pos is not None and not np.all(np.isfinite(np.asarray(tcp_pos, dtype=np.float64))):
            raise ValueError(f"reset tcp_pos {np.asarray(tcp_pos).tolist()} is not finite: nothing moved")
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self.tcp_rot_target = self.home_tcp_rot.copy()
        if tcp_pos is None:
            q = self.home_q.copy()
            target = self.home_tcp_pos.copy()
        else:
            target = self.clip_to_workspace(np.asarray(tcp_pos, dtype=np.float64))
            q = self.solve_ik(target, self.home_q, iters=100, damping=1e-3, tol=1e-6)
        d.qpos[self._arm_qpos] = q
        d.qpos[self._finger_qpos] = self.arm.max_opening / 2
        d.ctrl[self._arm_act] = q
        d.ctrl[self._grip_act] = self.arm.max_opening
        mujoco.mj_forward(m, d)
        self.q_target = q.copy()
        self.tcp_target = target.copy()
        return self.read_state()

    def apply_action(self, tcp_delta: np.ndarray, gripper: float, rot_delta: np.ndarray | None = None) -> RobotState:
        """Shift the TCP target by `tcp_delta` (m), turn the orientation target by `rot_delta` (a
        base-frame rotation vector, rad; clipped to `orientation_limits`), set the gripper (-1 open ..
        +1 closed), run one control period. A non-finite input raises ValueError before anything
        moves (clipping would not help: clip(NaN) is NaN)."""
        delta = np.asarray(tcp_delta, dtype=np.float64)
        rot = None if rot_delta is None else np.asarray(rot_delta, dtype=np.float64)
        if (
            not np.all(np.isfinite(delta))
            or not np.isfinite(float(gripper))
            or (rot is not None and (rot.shape != (3,) or not np.all(np.isfinite(rot))))
        ):
            raise ValueError(
                f"apply_action got tcp_delta {delta.tolist()}, gripper {float(gripper)} and rot_delta "
                f"{None if rot is None else rot.tolist()}: not finite (or not 3 values), nothing moved"
            )
        if rot is not None:
            self.tcp_rot_target = self.clip_orientation(rotvec_to_mat(rot) @ self.tcp_rot_target)
        m, d = self.model, self.data
        measured = d.site_xpos[self._tcp]
        target = self.tcp_target
        # If the arm could not follow (e.g. blocked by the table or the cube), pull the target
        # back to within `reanchor_dist` of the measured TCP so it does not wind up.
        offset = target - measured
        dist = float(np.linalg.norm(offset))
        if dist > self.reanchor_dist:
            target = measured + offset * (self.reanchor_dist / dist)
        target = self.clip_to_workspace(target + delta)
        self.tcp_target = target

        q_prev = self.q_target
        q_new = self.solve_ik(target, q_prev)
        self.q_target = q_new
        g = float(np.clip(gripper, -1.0, 1.0))
        d.ctrl[self._grip_act] = self.arm.max_opening * (1.0 - g) / 2.0

        steps = self.n_substeps // self.n_chunks
        for i in range(self.n_chunks):
            n = steps if i < self.n_chunks - 1 else self.n_substeps - steps * (self.n_chunks - 1)
            d.ctrl[self._arm_act] = q_prev + (q_new - q_prev) * ((i + 1) / self.n_chunks)
            mujoco.mj_step(m, d, n)
        mujoco.mj_forward(m, d)  # make positions/velocities/contacts consistent with qpos
        return self.read_state()

    def read_state(self) -> RobotState:
        """TCP pose/velocity (world frame), gripper opening and arm joints."""
        m, d = self.model, self.data
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_SITE, self._tcp, self._vel6, 0)
        return RobotState(
            tcp_pos=d.site_xpos[self._tcp].copy(),
            tcp_vel=self._vel6[3:].copy(),
            gripper_opening=float(d.qpos[self._finger_qpos].sum()),
            joint_pos=d.qpos[self._arm_qpos].copy(),
            joint_vel=d.qvel[self._arm_dof].copy(),
        )

    def stop(self) -> None:
        """Hold the current posture."""
        self.q_target = self.data.qpos[self._arm_qpos].copy()
        self.data.ctrl[self._arm_act] = self.q_target
        self.tcp_target = self.data.site_xpos[self._tcp].copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ------------------------------------------------------------------ sim-only extras
    def tcp_rotation(self) -> np.ndarray:
        """Current TCP rotation matrix (3x3, columns = site axes in the world frame)."""
        return self.data.site_xmat[self._tcp].reshape(3, 3).copy()

    def tcp_quat(self) -> np.ndarray:
        """TCP orientation (w, x, y, z), world frame."""
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self._tcp])
        return quat

    def wrench(self) -> np.ndarray:
        """Force (N) and torque about the TCP (N m) that contacts exert on the hand and fingers, world
        frame: float64[6] (what a wrist force-torque sensor reads, without gravity)."""
        m, d = self.model, self.data
        if not hasattr(self, "_hand_bodies"):
            hand = m.body(self.arm.hand_body).id
            self._hand_bodies = {b for b in range(m.nbody) if b == hand or self._has_ancestor(b, hand)}
        wrench = np.zeros(6)
        local = np.zeros(6)
        tcp = d.site_xpos[self._tcp]
        for i in range(d.ncon):
            contact = d.contact[i]
            on1 = int(m.geom_bodyid[contact.geom1]) in self._hand_bodies
            on2 = int(m.geom_bodyid[contact.geom2]) in self._hand_bodies
            if on1 == on2:  # not touching the hand, or the hand touching itself
                continue
            mujoco.mj_contactForce(m, d, i, local)
            force = contact.frame.reshape(3, 3).T @ local[:3]  # contact frame -> world; geom1 pushes geom2
            force = force if on2 else -force
            wrench[:3] += force
            wrench[3:] += np.cross(contact.pos - tcp, force)
        return wrench

    def _has_ancestor(self, body: int, ancestor: int) -> bool:
        while body > 0:
            body = int(self.model.body_parentid[body])
            if body == ancestor:
                return True
        return False

    def object_pos(self, name: str) -> np.ndarray:
        """World position of body `name` (privileged sim state)."""
        return self.data.body(name).xpos.copy()

    def object_quat(self, name: str) -> np.ndarray:
        """World orientation (w, x, y, z) of body `name`."""
        return self.data.body(name).xquat.copy()

    def set_object_pose(self, name: str, pos: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Teleport free body `name` to `pos` (and `quat`, w x y z), at rest; a mocap body (a fixture) moves
        there and stays."""
        m, d = self.model, self.data
        body = m.body(name)
        mocap = int(m.body_mocapid[body.id])
        if mocap >= 0:
            d.mocap_pos[mocap] = pos
            d.mocap_quat[mocap] = (1.0, 0.0, 0.0, 0.0) if quat is None else quat
            mujoco.mj_forward(m, d)
            return
        jnt = m.body_jntadr[body.id]
        if jnt < 0 or m.jnt_type[jnt] != mujoco.mjtJoint.mjJNT_FREE:
            raise ValueError(f"body '{name}' has no free joint; only free (or mocap) bodies can be moved")
        qa, va = m.jnt_qposadr[jnt], m.jnt_dofadr[jnt]
        d.qpos[qa : qa + 3] = pos
        d.qpos[qa + 3 : qa + 7] = (1.0, 0.0, 0.0, 0.0) if quat is None else quat
        d.qvel[va : va + 6] = 0.0
        mujoco.mj_forward(m, d)

    def set_gripper_opening(self, opening: float, command: float) -> None:
        """Teleport the fingers to `opening` (m between the pads; clipped to 0 .. the arm's maximum), at rest,
        and command the gripper to `command` (-1 open .. +1 closed): a state reset of a grasp."""
        m, d = self.model, self.data
        half = float(np.clip(opening, 0.0, self.arm.max_opening)) / 2.0
        d.qpos[self._finger_qpos] = half
        d.qvel[self._finger_dof] = 0.0
        g = float(np.clip(command, -1.0, 1.0))
        d.ctrl[self._grip_act] = self.arm.max_opening * (1.0 - g) / 2.0
        mujoco.mj_forward(m, d)

    @property
    def camera_names(self) -> tuple[str, ...]:
        """Names of the cameras in the model (what `render` accepts)."""
        return tuple(self.model.camera(i).name for i in range(self.model.ncam))

    def render(self, camera: str, height: int | None = None, width: int | None = None) -> np.ndarray:
        """RGB image uint8[H, W, 3] (a new array) from the named camera; one renderer per camera
        and size, created on first use and reused, shadows off."""
        h = height or self.render_size[0]
        w = width or self.render_size[1]
        key = f"{camera}:{h}x{w}"
        renderer = self._renderers.get(key)
        if renderer is None:
            if camera not in self.camera_names:
                raise ValueError(f"no camera {camera!r} in the MuJoCo model; choose from {self.camera_names}")
            renderer = mujoco.Renderer(self.model, height=h, width=w)
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self._renderers[key] = renderer
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()
