"""Arm kinematics from the arm's MJCF: forward kinematics, damped-least-squares IK, joint limits, the
gripper joint map. Kinematics only (`mj_kinematics` / `mj_jacSite` on a private `MjData`; no physics),
so the simulated robot (MujocoRobot) and a hardware robot turning TCP targets into servo targets share
one implementation:

    kin = ArmKinematics("so101")
    q = kin.solve_ik(target_pos, q_init=kin.home_q)          # gripper pointing down, home yaw
    pos, rot = kin.fk(q)

IK, 7-joint arms (Panda): each iteration solves `dq = J^T (J J^T + damping^2 I)^-1 e` for the 6-D error
e (position, and orientation as an axis-angle vector) and adds a pull towards `home_q` projected into
the Jacobian's nullspace. Arms with fewer than 6 joints (SO-101) cannot hold an arbitrary orientation:
their IK is position-first (the orientation step is projected into the position Jacobian's nullspace,
joints at a limit are locked), so the position is met to ~1e-6 m wherever the arm reaches and the
orientation as far as it can be. The SO-101's tool axis lies in the pan axis' vertical plane, so
"gripper pointing down at a yaw" (`yaw_rot`) is exactly reachable: the pitch joints hold it down, the
wrist roll sets the yaw; only high above the table (TCP z > ~0.1 m) does the wrist flex limit tilt
the gripper (< 30 deg over the default workspace). `ArmModel.supports_rotation` says whether other
orientations may be asked for.

MuJoCo picks its OpenGL backend on first import; like robot_rl.robots.mujoco this module defaults
`MUJOCO_GL` to `egl` before importing it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402  (after MUJOCO_GL is set)
import numpy as np

from robot_rl.robots.arms import ArmModel, get_arm
from robot_rl.robots.arms import gripper_joint_from_opening as _joint_from_opening
from robot_rl.robots.arms import gripper_opening_from_joint as _opening_from_joint

JOINT_MARGIN = 0.01  # rad: IK targets stay this far inside the hard joint limits
MAX_STEP = 0.2  # rad: largest joint change per iteration of the position-first IK


def sim_dir() -> Path:
    """The directory holding the MJCF files: `$ROBOT_RL_SIM_DIR`, else `<repo>/sim`."""
    env = os.environ.get("ROBOT_RL_SIM_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "sim"


def resolve_model_path(model_path: str | os.PathLike | None = None, default: str = "panda_pick_cube.xml") -> Path:
    """Find the MJCF file (`model_path`, else `default`); a relative name is looked up in `sim_dir()`."""
    path = Path(model_path) if model_path is not None else Path(default)
    if not path.is_absolute() and not path.exists():
        path = sim_dir() / path
    if not path.is_file():
        raise FileNotFoundError(
            f"MuJoCo model not found: {path} (set ROBOT_RL_SIM_DIR to the directory holding {path.name})"
        )
    return path


def load_model(path: Path) -> mujoco.MjModel:
    """Compile the MJCF at `path`; an XML error becomes a one-line ValueError naming the file."""
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as exc:  # MuJoCo reports XML errors as ValueError
        raise ValueError(f"cannot load MuJoCo model {path}: {exc}") from None


def _rot_error(rot: np.ndarray, rt: np.ndarray) -> np.ndarray:
    """Orientation error from `rot` to `rt` (axis * angle, world frame; exact for small rotations)."""
    return 0.5 * (np.cross(rot[:, 0], rt[:, 0]) + np.cross(rot[:, 1], rt[:, 1]) + np.cross(rot[:, 2], rt[:, 2]))


class ArmKinematics:
    """Kinematics of one arm (`arm`: an ArmModel or its registry name) from its MJCF scene.

    `model_path` overrides the arm's MJCF file; `model` reuses an already compiled MjModel of it (the
    simulated robot's). All positions are the TCP site's in the base (world) frame, metres; joint vectors
    are float64[n_joints] in `joint_names` order, radians.
    """

    def __init__(
        self,
        arm: ArmModel | str,
        model_path: str | os.PathLike | None = None,
        *,
        model: mujoco.MjModel | None = None,
    ) -> None:
        self.arm = get_arm(arm)
        self.model = model if model is not None else load_model(resolve_model_path(model_path, self.arm.mjcf))
        self._data = mujoco.MjData(self.model)  # never the simulation's state
        m = self.model
        missing = [j for j in self.arm.arm_joints if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) < 0]
        if missing or mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.arm.tcp_site) < 0:
            raise ValueError(
                f"MuJoCo model has no joints {missing} / site {self.arm.tcp_site!r} of arm {self.arm.name!r}: "
                "pass the arm's model (robot.model / robot.model_path)"
            )
        self.joint_names: tuple[str, ...] = self.arm.arm_joints
        self.n_joints = len(self.joint_names)
        self._qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.joint_names])
        self._dof = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.joint_names])
        self._tcp = m.site(self.arm.tcp_site).id
        ranges = np.array([m.jnt_range[m.joint(j).id] for j in self.joint_names])
        #: the MJCF's hard joint limits (low[n], high[n])
        self.joint_range = (ranges[:, 0].copy(), ranges[:, 1].copy())
        #: the limits IK solutions respect: `JOINT_MARGIN` inside the hard ones
        self.joint_limits = (ranges[:, 0] + JOINT_MARGIN, ranges[:, 1] - JOINT_MARGIN)
        self.home_q = np.array(self.arm.home_q, dtype=np.float64)
        if self.home_q.shape != (self.n_joints,):
            raise ValueError(f"arm {self.arm.name!r}: home_q has {self.home_q.size} values for {self.n_joints} joints")
        self._jacp = np.zeros((3, m.nv))
        self._jacr = np.zeros((3, m.nv))
        pos, rot = self.fk(self.home_q)
        #: TCP position and orientation (3x3, columns = TCP axes; z along the approach) at `home_q`
        self.home_tcp_pos = pos
        self.home_tcp_rot = rot

    # ------------------------------------------------------------------ forward kinematics
    def _set(self, q: np.ndarray) -> None:
        self._data.qpos[self._qpos] = q
        mujoco.mj_kinematics(self.model, self._data)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position float64[3] (m) and rotation float64[3, 3] for joint positions `q`."""
        self._set(np.asarray(q, dtype=np.float64))
        return self._data.site_xpos[self._tcp].copy(), self._data.site_xmat[self._tcp].reshape(3, 3).copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """TCP Jacobian float64[6, n_joints]: linear (m/rad) over angular (rad/rad) velocity, world frame."""
        self._set(np.asarray(q, dtype=np.float64))
        mujoco.mj_comPos(self.model, self._data)
        mujoco.mj_jacSite(self.model, self._data, self._jacp, self._jacr, self._tcp)
        return np.vstack((self._jacp[:, self._dof], self._jacr[:, self._dof]))

    def clip_joints(self, q: np.ndarray) -> np.ndarray:
        """`q` clipped to `joint_limits`."""
        return np.clip(np.asarray(q, dtype=np.float64), *self.joint_limits)

    # ------------------------------------------------------------------ inverse kinematics
    def solve_ik(
        self,
        target_pos: np.ndarray,
        q_init: np.ndarray,
        target_rot: np.ndarray | None = None,
        iters: int = 100,
        damping: float = 1e-3,
        tol: float = 1e-6,
        null_gain: float = 0.2,
    ) -> np.ndarray:
        """Joint positions (within `joint_limits`) putting the TCP at `target_pos` with orientation
        `target_rot` (3x3; default: `home_tcp_rot`, gripper pointing down), by damped least squares
        from `q_init`. Stops after `iters` iterations or when both the position error (m) and the
        orientation error (rad) are below `tol`. The defaults solve to ~1e-6; a servo loop tracking a
        moving target warm-starts from its last solution with a few iterations and more damping
        (MujocoRobot: iters=2, damping=0.05). An unreachable target gives the damped best effort."""
        m, d = self.model, self._data
        q = np.clip(np.asarray(q_init, dtype=np.float64), *self.joint_limits)
        target = np.asarray(target_pos, dtype=np.float64)
        rt = self.home_tcp_rot if target_rot is None else np.asarray(target_rot, dtype=np.float64)
        if self.n_joints < 6:
            return self._solve_position_first(target, q, rt, iters, damping, tol)
        eye6 = np.eye(6) * damping**2
        eye_n = np.eye(self.n_joints)
        tcp = self._tcp
        for _ in range(iters):
            d.qpos[self._qpos] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            pos = d.site_xpos[tcp]
            rot = d.site_xmat[tcp].reshape(3, 3)
            err = np.empty(6)
            err[:3] = target - pos
            err[3:] = _rot_error(rot, rt)
            if err[:3] @ err[:3] < tol * tol and err[3:] @ err[3:] < tol * tol:
                break
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, tcp)
            jac = np.vstack((self._jacp[:, self._dof], self._jacr[:, self._dof]))
            jjt = jac @ jac.T
            dq = jac.T @ np.linalg.solve(jjt + eye6, err)  # damped least squares step
            # posture pull projected into the (undamped) nullspace so it does not bias the task
            null = eye_n - np.linalg.pinv(jac, rcond=1e-4) @ jac
            dq += null @ (null_gain * (self.home_q - q))
            q = np.clip(q + dq, *self.joint_limits)
        return q

    def _solve_position_first(
        self, target: np.ndarray, q: np.ndarray, rt: np.ndarray, iters: int, damping: float, tol: float
    ) -> np.ndarray:
        """IK for arms with fewer than 6 joints: position first, orientation in what it leaves free.

        Each step is a damped position step plus an orientation step projected into the position
        Jacobian's nullspace, so the orientation never trades off position: where the orientation
        target is reachable (gripper down at a yaw, within the wrist's limits) both are met; where it
        is not (high above the table the wrist flex limit tilts the gripper) the position still is.
        Joints at a limit that the step pushes outwards are locked and the step recomputed."""
        m, d = self.model, self._data
        n, tcp = self.n_joints, self._tcp
        lo, hi = self.joint_limits
        lam2 = damping**2
        for _ in range(iters):
            d.qpos[self._qpos] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            e_pos = target - d.site_xpos[tcp]
            e_rot = _rot_error(d.site_xmat[tcp].reshape(3, 3), rt)
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, tcp)
            jp_full, jo_full = self._jacp[:, self._dof], self._jacr[:, self._dof]
            free = np.ones(n, dtype=bool)
            for _ in range(n):  # lock the joints the step would push through a limit
                jp, jo = jp_full * free, jo_full * free
                dq1 = jp.T @ np.linalg.solve(jp @ jp.T + lam2 * np.eye(3), e_pos)
                null = np.diag(free.astype(np.float64)) - np.linalg.pinv(jp, rcond=1e-6) @ jp
                jon = jo @ null
                dq2 = null @ (jon.T @ np.linalg.solve(jon @ jon.T + lam2 * np.eye(3), e_rot - jo @ dq1))
                dq = dq1 + dq2
                push = free & (((q <= lo) & (dq < 0)) | ((q >= hi) & (dq > 0)))
                if not push.any():
                    break
                free &= ~push
            big = float(np.max(np.abs(dq)))
            if big > MAX_STEP:  # a far or unreachable target: no wild jumps
                dq *= MAX_STEP / big
            q_new = np.clip(q + dq, lo, hi)
            if e_pos @ e_pos < tol * tol and np.max(np.abs(q_new - q)) < tol:
                break  # position met and the orientation as close as it gets
            q = q_new
        return q

    def yaw_rot(self, yaw: float) -> np.ndarray:
        """The home TCP orientation turned by `yaw` (rad) about the vertical: a target every arm reaches."""
        c, s = np.cos(yaw), np.sin(yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ self.home_tcp_rot

    # ------------------------------------------------------------------ gripper
    def gripper_opening_from_joint(self, q: float) -> float:
        """Opening between the pads (m) for the real gripper joint `q` (Panda: one finger's travel, m;
        SO-101: the moving jaw's angle, rad, 0 = closed), clipped to the joint's range."""
        return _opening_from_joint(self.arm, q)

    def gripper_joint_from_opening(self, opening: float) -> float:
        """The real gripper joint value giving `opening` (m) between the pads, clipped to its range."""
        return _joint_from_opening(self.arm, opening)
