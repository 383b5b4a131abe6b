"""The batched sim's scene: the arm's MJCF (loaded as MujocoRobot loads it), the ids the controller and the task
read, the MJX model, and per-env model fields for a batch of Perturbations (dynamics family).

What each dynamics value changes: robot_rl/tasks/dynamics.py (the in-process sim applies the same `SceneDynamics`).
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
from robot_rl.tasks.dynamics import FIELDS as DYNAMICS_FIELDS
from robot_rl.tasks.dynamics import SceneDynamics
from robot_rl.tasks.randomization import Perturbation

with contextlib.redirect_stdout(io.StringIO()):  # mjx prints that the optional warp backend is missing
    from mujoco import mjx

#: the Model fields a Perturbation changes per env (vmapped with in_axes 0; every other field is shared)
PERTURBED_FIELDS = DYNAMICS_FIELDS
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
        self.dynamics = SceneDynamics(self.model, self.arm.arm_joints)
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
        n = len(perturbations)
        out = {name: np.empty((n, *getattr(self.model, name).shape), np.float32) for name in PERTURBED_FIELDS}
        for i, p in enumerate(perturbations):
            self.dynamics.apply(p)
            for name in PERTURBED_FIELDS:
                out[name][i] = getattr(self.model, name)
        self.dynamics.restore()
        return out
