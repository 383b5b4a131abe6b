"""A batched pick_cube (state) simulator in JAX on MuJoCo MJX: the in-process sim's scene, controller and task
logic, vmapped over a batch of environments, each with its own Perturbation (robot_rl/tasks/randomization.py).

    from robot_rl.sim_batch import BatchPickCube
    sim = BatchPickCube(batch_size=256, arm="panda", device="cpu")
    obs = sim.reset(seeds=range(256))                 # float32[256, 10], as PickCubeTask.observe
    obs, reward, terminated, truncated, success = sim.step(actions)   # actions float32[256, 4]

Needs the `jax` extra (`pip install "robot_rl[jax]"`). This module sets XLA_FLAGS before jax is imported:
jax 0.10 on a CPU compiles MJX's kinematics into code 300x slower unless the CPU fusion emitters are off. It also
defaults jax's compilation cache directory (JAX_COMPILATION_CACHE_DIR) to ~/.cache/robot_rl/jax, so that a batch
size compiled once (a minute or two on a CPU) loads in seconds in later processes; set the variable to move it.
"""

from __future__ import annotations

import os

_FLAG = "--xla_cpu_use_fusion_emitters=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import jax  # noqa: E402  (after XLA_FLAGS is set)

if not jax.config.jax_compilation_cache_dir:  # JAX_COMPILATION_CACHE_DIR (or a config.update) wins
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.expanduser("~"), ".cache", "robot_rl", "jax"))

from robot_rl.sim_batch.pick_cube import BatchPickCube  # noqa: E402  (after XLA_FLAGS is set)

__all__ = ["BatchPickCube"]
