"""The dynamics values of a Perturbation (robot_rl/tasks/randomization.py) applied to a pick scene's MuJoCo model:
one implementation for the in-process sim (robot_rl/envs/randomize.py) and the batched sim's per-env model fields
(robot_rl/sim_batch/scene.py), so that both sims perturb the same fields the same way.

    friction       sliding friction (geom_friction[:, 0]) of the cube's geoms and the finger pads
    object_mass    the cube body's mass and inertia, then the constants mj_setConst derives from the masses
                   (the constraint solver's invweight0, ...: without them a heavy cube can go unstable)
    object_size    the cube's geom sizes with their collision bounds (geom_rbound, geom_aabb half-sizes)
    damping        the arm joints' dof_damping
    actuator_gain  the arm servos' kp and kv together (gainprm[0]; biasprm[1] = -kp, biasprm[2] = -kv)
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from robot_rl.tasks.randomization import Perturbation

#: the finger-pad geoms whose friction `friction` scales with the cube's (both pick_cube scenes name them so)
PAD_GEOMS = ("pad_left", "pad_right")
#: what mj_setConst derives from the masses
MASS_CONSTANTS = (
    "body_invweight0",
    "dof_invweight0",
    "tendon_invweight0",
    "body_subtreemass",
    "dof_M0",
    "light_poscom0",
    "actuator_acc0",
)
#: every model field `SceneDynamics.apply` may change
FIELDS = (
    "geom_friction",
    "body_mass",
    "body_inertia",
    "geom_size",
    "geom_rbound",
    "geom_aabb",
    "dof_damping",
    "actuator_gainprm",
    "actuator_biasprm",
    *MASS_CONSTANTS,
)


class SceneDynamics:
    """Applies a Perturbation's dynamics to `model` (in place), from the nominal values it had when this was made:
    `apply(Perturbation())` gives the model back bit for bit."""

    def __init__(self, model: mujoco.MjModel, arm_joints: Sequence[str], cube: str = "cube") -> None:
        m = self.model = model
        pads = []
        for name in PAD_GEOMS:
            gid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)
            if gid < 0:
                raise ValueError(f"the sim model has no geom {name!r} to perturb: name the finger pads {PAD_GEOMS}")
            pads.append(gid)
        self.cube_body = m.body(cube).id
        self.cube_geoms = np.flatnonzero(m.geom_bodyid == self.cube_body)
        self.friction_geoms = np.concatenate([self.cube_geoms, pads])
        self.arm_dofs = np.array([m.jnt_dofadr[m.joint(j).id] for j in arm_joints])
        self.arm_actuators = np.array([m.actuator(j).id for j in arm_joints])
        self.nominal = {name: getattr(m, name).copy() for name in FIELDS}
        self._scratch = mujoco.MjData(m)

    def restore(self) -> None:
        """Every field `apply` may change back to its nominal value."""
        for name, value in self.nominal.items():
            getattr(self.model, name)[:] = value

    def apply(self, p: Perturbation) -> None:
        """The nominal model with `p`'s dynamics values applied (its other values are not dynamics)."""
        self.restore()
        m, nom = self.model, self.nominal
        f, c, g = self.friction_geoms, self.cube_body, self.cube_geoms
        m.geom_friction[f, 0] = nom["geom_friction"][f, 0] * p.friction
        m.body_mass[c] = nom["body_mass"][c] * p.object_mass
        m.body_inertia[c] = nom["body_inertia"][c] * p.object_mass
        if p.object_mass != 1.0:
            mujoco.mj_setConst(m, self._scratch)
        m.geom_size[g] = nom["geom_size"][g] * p.object_size
        m.geom_rbound[g] = nom["geom_rbound"][g] * p.object_size
        m.geom_aabb[g, 3:] = nom["geom_aabb"][g, 3:] * p.object_size
        m.dof_damping[self.arm_dofs] = nom["dof_damping"][self.arm_dofs] * p.damping
        a = self.arm_actuators
        m.actuator_gainprm[a, 0] = nom["actuator_gainprm"][a, 0] * p.actuator_gain
        m.actuator_biasprm[a, 1:3] = nom["actuator_biasprm"][a, 1:3] * p.actuator_gain
