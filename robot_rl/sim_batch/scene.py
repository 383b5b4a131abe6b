"""The batched sim's scene: the arm's MJCF (loaded as MujocoRobot loads it), the ids the controller and the task
read, the MJX model, and per-env model fields for a batch of Perturbations (dynamics family).

What each dynamics value changes (the contract of robot_rl/tasks/randomization.py, the same fields the in-process
sim changes):
    friction       geom_friction[:, 0] of the cube and both finger pads
    object_mass    body_mass and body_inertia of the cube
    object_size    geom_size of the cube (all three half-sizes), with its bounding sphere and box (geom_rbound,
                   geom_aabb half-sizes) so collision culling sees the new size
    damping        dof_damping of the arm joints
    actuator_gain  the arm actuators' kp and kv: gainprm[0], biasprm[1], biasprm[2]
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from robot_rl.robots.arms import ArmModel, get_arm
from robot_rl.robots.kinematics import ArmKinematics, load_model, resolve_model_path
from robot_rl.tasks.randomization import Perturbation

with contextlib.redirect_stdout(io.StringIO()):  # mjx prints that the optional warp backend is missing
    from mujoco import mjx

#: the Model fields a Perturbation changes per env (vmapped with in_axes 0; every other field is shared)
PERTURBED_FIELDS = (
    "geom_friction",
    "body_mass",
    "body_inertia",
    "geom_size",
    "geom_rbound",
    "geom_aabb",
    "dof_damping",
    "actuator_gainprm",
    "actuator_biasprm",
)
ARMS = ("panda",)  # arms whose IK the batched controller implements (the SO-101's position-first IK is not)


@dataclass(frozen=True)
class SceneIds:
    """Indices into the model of what the controller and the task use."""

    arm_qpos: np.ndarray
    arm_dof: np.ndarray
    arm_act: np.ndarray
    finger_qpos: np.ndarray
    grip_act: int
    tcp_site: int
    tcp_body: int
    cube_body: int
    cube_geom: int
    cube_qpos: int
    cube_dof: int
    pad_geoms: np.ndarray


class Scene:
    """The arm's scene (`arm`: "panda") as a MuJoCo model, its MJX model and the arm's kinematic constants."""

    def __init__(self, arm: str = "panda", model_path: str | None = None) -> None:
        if arm not in ARMS:
            raise ValueError(f"the batched sim supports arm {', '.join(ARMS)}, not {arm!r}: use arm=panda")
        self.arm: ArmModel = get_arm(arm)
        self.model = load_model(resolve_model_path(model_path, self.arm.mjcf))
        self.kin = ArmKinematics(self.arm, model=self.model)
        m = self.model
        pads = [g for g in ("pad_left", "pad_right") if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, g) >= 0]
        cube_body = m.body("cube").id
        cube_jnt = m.body_jntadr[cube_body]
        self.ids = SceneIds(
            arm_qpos=np.array([m.jnt_qposadr[m.joint(j).id] for j in self.arm.arm_joints]),
            arm_dof=np.array([m.jnt_dofadr[m.joint(j).id] for j in self.arm.arm_joints]),
            arm_act=np.array([m.actuator(j).id for j in self.arm.arm_joints]),
            finger_qpos=np.array([m.jnt_qposadr[m.joint(j).id] for j in self.arm.finger_joints]),
            grip_act=m.actuator(self.arm.gripper_actuator).id,
            tcp_site=m.site(self.arm.tcp_site).id,
            tcp_body=int(m.site_bodyid[m.site(self.arm.tcp_site).id]),
            cube_body=cube_body,
            cube_geom=m.geom("cube").id,
            cube_qpos=int(m.jnt_qposadr[cube_jnt]),
            cube_dof=int(m.jnt_dofadr[cube_jnt]),
            pad_geoms=np.array([m.geom(g).id for g in pads]),
        )
        self.control_dt = 0.1
        with contextlib.redirect_stdout(io.StringIO()):
            self.mjx_model = mjx.put_model(m)
        data = mujoco.MjData(m)
        mujoco.mj_resetData(m, data)
        mujoco.mj_forward(m, data)
        self.mjx_data = mjx.put_data(m, data)  # the reset state every env starts from (MujocoRobot.reset)

    def model_fields(self, perturbations: Sequence[Perturbation]) -> dict[str, np.ndarray]:
        """Per-env values (leading axis: env) of PERTURBED_FIELDS for `perturbations`, float32."""
        m, ids = self.model, self.ids
        n = len(perturbations)

        def tile(x: np.ndarray) -> np.ndarray:
            return np.repeat(np.asarray(x, dtype=np.float64)[None], n, axis=0)

        out = {name: tile(getattr(m, name)) for name in PERTURBED_FIELDS}
        for i, p in enumerate(perturbations):
            fric_geoms = np.concatenate([[ids.cube_geom], ids.pad_geoms])
            out["geom_friction"][i, fric_geoms, 0] *= p.friction
            out["body_mass"][i, ids.cube_body] *= p.object_mass
            out["body_inertia"][i, ids.cube_body] *= p.object_mass
            out["geom_size"][i, ids.cube_geom] *= p.object_size
            out["geom_rbound"][i, ids.cube_geom] *= p.object_size
            out["geom_aabb"][i, ids.cube_geom, 3:] *= p.object_size
            out["dof_damping"][i, ids.arm_dof] *= p.damping
            out["actuator_gainprm"][i, ids.arm_act, 0] *= p.actuator_gain
            out["actuator_biasprm"][i, ids.arm_act, 1:3] *= p.actuator_gain
        return {k: v.astype(np.float32) for k, v in out.items()}


def perturb_mujoco_model(model: mujoco.MjModel, p: Perturbation, arm: str = "panda") -> None:
    """Apply the dynamics values of `p` to a MuJoCo model in place, exactly as the batched sim does (for
    comparing the two sims on the same perturbation)."""
    arm_model = get_arm(arm)
    m = model
    cube_body, cube_geom = m.body("cube").id, m.geom("cube").id
    pads = [m.geom(g).id for g in ("pad_left", "pad_right")]
    m.geom_friction[[cube_geom, *pads], 0] *= p.friction
    m.body_mass[cube_body] *= p.object_mass
    m.body_inertia[cube_body] *= p.object_mass
    m.geom_size[cube_geom] *= p.object_size
    m.geom_rbound[cube_geom] *= p.object_size
    m.geom_aabb[cube_geom, 3:] *= p.object_size
    for j in arm_model.arm_joints:
        m.dof_damping[m.jnt_dofadr[m.joint(j).id]] *= p.damping
        a = m.actuator(j).id
        m.actuator_gainprm[a, 0] *= p.actuator_gain
        m.actuator_biasprm[a, 1:3] *= p.actuator_gain
