"""Domain randomisation and fixed perturbations of a simulated task: what varies, how much, and the values drawn.

`Randomization` holds one strength per family (0 = off, 1 = the default range below, 2 = twice as wide);
`sample(rng)` draws one episode's `Perturbation`. A `Perturbation` is also given whole, as a named target sim's
fixed difference from training (configs/task/pick_cube_target.yaml). The in-process sim
(robot_rl/envs/randomize.py) and the batched JAX sim (robot_rl/sim_batch/) apply the same values.

Families and their range at strength s (U = uniform; scales are clipped to >= 0.05):
    dynamics      friction        cube and finger-pad sliding friction x U(1 - 0.4 s, 1 + 0.4 s)
                  object_mass     cube mass x U(1 - 0.5 s, 1 + 0.5 s)
                  object_size     cube size x U(1 - 0.15 s, 1 + 0.15 s)
                  damping         arm joint damping x U(1 - 0.5 s, 1 + 0.5 s)
                  actuator_gain   arm position-servo stiffness kp (and its damping kv) x U(1 - 0.4 s, 1 + 0.4 s)
    obs_noise     obs_noise       Gaussian noise per step on the state: std obs_noise x (5 mm on positions,
                                  0.02 m/s on velocities, 1 mm on the gripper opening); obs_noise = s
    action_noise  action_noise    Gaussian noise per step on the action (before the clip to [-1, 1]):
                                  std 0.1 s; gripper dim excluded
    latency       latency         control steps between the policy's action and its execution: an integer
                                  drawn from 0 .. round(2 s) (s = 1: 0-2 steps); the first steps hold
    camera        camera_pos      each camera's position + U(-0.02 s, 0.02 s) m per axis
                  camera_rot      each camera's orientation turned by a rotation vector U(-0.05 s, 0.05 s) rad per axis
                  camera_fovy     each camera's vertical field of view + U(-5 s, 5 s) degrees
    lighting      light           every light's diffuse and specular x U(1 - 0.4 s, 1 + 0.4 s)
    colors        cube_rgb        the cube's colour + U(-0.25 s, 0.25 s) per channel (clipped to 0..1)
                  table_rgb       the table's colour + U(-0.25 s, 0.25 s) per channel

Camera values are one draw shared by every camera (the rig moved), so a perturbation stays a flat record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

from robot_rl.config import UserError

FAMILIES = ("dynamics", "obs_noise", "action_noise", "latency", "camera", "lighting", "colors")
MIN_SCALE = 0.05
OBS_NOISE_STD = {"position": 0.005, "velocity": 0.02, "gripper": 0.001}  # at obs_noise = 1
ACTION_NOISE_STD = 0.1  # at action_noise = 1 (strength s gives std 0.1 s)


@dataclass(frozen=True)
class Perturbation:
    """One episode's difference from the nominal sim (the identity by default). Scales multiply the model's
    value, offsets add to it."""

    friction: float = 1.0
    object_mass: float = 1.0
    object_size: float = 1.0
    damping: float = 1.0
    actuator_gain: float = 1.0
    obs_noise: float = 0.0
    action_noise: float = 0.0
    latency: int = 0
    camera_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    camera_rot: tuple[float, float, float] = (0.0, 0.0, 0.0)
    camera_fovy: float = 0.0
    light: float = 1.0
    cube_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    table_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def from_config(cls, cfg: Mapping | None, where: str = "task.perturb") -> Perturbation:
        """A perturbation from a config mapping (keys as the fields); a one-line UserError for an unknown key
        or a bad value."""
        if not cfg:
            return cls()
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in dict(cfg).items():
            if key not in known:
                raise UserError(f"{where}.{key} is not a perturbation: use one of {', '.join(known)}")
            default = getattr(cls(), key)
            try:
                if isinstance(default, tuple):
                    value = tuple(float(v) for v in value)
                    if len(value) != 3:
                        raise ValueError
                elif key == "latency":  # the one integer
                    if float(value) != int(value):
                        raise ValueError
                    value = int(value)
                else:
                    value = float(value)
            except (TypeError, ValueError):
                raise UserError(
                    f"{where}.{key}={value!r} is not {'3 numbers' if isinstance(default, tuple) else 'a number'}: "
                    "fix it in the task config"
                ) from None
            flat = value if isinstance(value, tuple) else (value,)
            if not all(math.isfinite(v) for v in flat):
                raise UserError(f"{where}.{key}={value!r} is not finite: fix it in the task config")
            values[key] = value
        out = cls(**values)
        out.check(where)
        return out

    def check(self, where: str = "task.perturb") -> None:
        """A one-line UserError when a value is out of its domain."""
        for key in ("friction", "object_mass", "object_size", "damping", "actuator_gain", "light"):
            if not getattr(self, key) > 0:
                raise UserError(f"{where}.{key}={getattr(self, key)} must be a scale > 0: fix it in the task config")
        for key in ("obs_noise", "action_noise"):
            if getattr(self, key) < 0:
                raise UserError(f"{where}.{key}={getattr(self, key)} must be >= 0: fix it in the task config")
        if not 0 <= self.latency <= 10:
            raise UserError(f"{where}.latency={self.latency} must be 0..10 control steps: fix it in the task config")

    @property
    def is_identity(self) -> bool:
        return self == Perturbation()

    def as_dict(self) -> dict[str, float]:
        """Flat name -> float (tuples as name_0, name_1, name_2): what the episode log records."""
        out: dict[str, float] = {}
        for key, value in asdict(self).items():
            if isinstance(value, tuple):
                out.update({f"{key}_{i}": float(v) for i, v in enumerate(value)})
            else:
                out[key] = float(value)
        return out


PERTURBATION_KEYS = tuple(Perturbation().as_dict())


@dataclass(frozen=True)
class Randomization:
    """Strength per family (0 = off); `sample(rng)` draws a Perturbation."""

    dynamics: float = 0.0
    obs_noise: float = 0.0
    action_noise: float = 0.0
    latency: float = 0.0
    camera: float = 0.0
    lighting: float = 0.0
    colors: float = 0.0

    @classmethod
    def from_config(cls, cfg: Mapping | float | None, where: str = "task.randomize") -> Randomization:
        """From `{family: strength}`; a bare number sets every family; null/false/0 is off. A one-line UserError
        names an unknown family or a bad strength."""
        if cfg is None or cfg is False:
            return cls()
        if cfg is True:
            cfg = 1.0
        if isinstance(cfg, int | float):
            cfg = {family: float(cfg) for family in FAMILIES}
        values = {}
        for family, strength in dict(cfg).items():
            if family not in FAMILIES:
                raise UserError(f"{where}.{family} is not a randomisation family: use {', '.join(FAMILIES)}")
            try:
                strength = float(strength if strength is not None else 0.0)
            except (TypeError, ValueError):
                raise UserError(f"{where}.{family}={strength!r} is not a number: give a strength >= 0") from None
            if not (math.isfinite(strength) and 0 <= strength <= 5):
                raise UserError(f"{where}.{family}={strength} must be a strength in 0..5 (1 = the default range)")
            values[family] = strength
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, family) > 0 for family in FAMILIES)

    def sample(self, rng: np.random.Generator, base: Perturbation | None = None) -> Perturbation:
        """One episode's perturbation: `base` (default the identity) with each enabled family redrawn around it
        (scales multiply, offsets add). Families at 0 draw nothing, so enabling one leaves the others' draws
        unchanged only for the families before it: use a generator of its own."""
        base = base or Perturbation()
        values = asdict(base)

        def scale(key: str, width: float) -> None:
            values[key] = max(MIN_SCALE, values[key] * float(rng.uniform(1 - width, 1 + width)))

        def offset(key: str, width: float, lo: float = -math.inf, hi: float = math.inf) -> None:
            drawn = rng.uniform(-width, width, 3)
            values[key] = tuple(float(np.clip(v + d, lo, hi)) for v, d in zip(values[key], drawn, strict=True))

        s = self.dynamics
        if s > 0:
            scale("friction", 0.4 * s)
            scale("object_mass", 0.5 * s)
            scale("object_size", 0.15 * s)
            scale("damping", 0.5 * s)
            scale("actuator_gain", 0.4 * s)
        if self.obs_noise > 0:
            values["obs_noise"] = values["obs_noise"] + self.obs_noise
        if self.action_noise > 0:
            values["action_noise"] = values["action_noise"] + ACTION_NOISE_STD * self.action_noise
        if self.latency > 0:
            values["latency"] = values["latency"] + int(rng.integers(0, round(2 * self.latency) + 1))
        s = self.camera
        if s > 0:
            offset("camera_pos", 0.02 * s)
            offset("camera_rot", 0.05 * s)
            values["camera_fovy"] = values["camera_fovy"] + float(rng.uniform(-5 * s, 5 * s))
        if self.lighting > 0:
            scale("light", 0.4 * self.lighting)
        s = self.colors
        if s > 0:
            offset("cube_rgb", 0.25 * s, -1.0, 1.0)
            offset("table_rgb", 0.25 * s, -1.0, 1.0)
        return Perturbation(**values)
