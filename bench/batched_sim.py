"""Batched MJX simulator throughput against the single C environment, and (with --policy-run) a trained policy's
success rate in both sims.

Throughput: control steps/s (10 Hz control periods, each 50 physics steps of 2 ms; physics steps/s = 50x) of
BatchPickCube (robot_rl/sim_batch/) at each batch size, random actions, against one RobotEnv(MujocoRobot,
PickCubeTask) on this machine (random actions, resets when an episode ends). Compile time per batch size is reported
separately (the first call; later processes load it from the JAX compilation cache).

Success-rate parity (--policy-run <run_dir>): the run's deterministic policy over --episodes episodes in the batched
sim (nominal, episode k from seed 12345 + k, as `robot-rl eval` seeds its env) against the C sim's
`robot-rl eval run_dir=<dir> episodes=N log=false` (reads <run_dir>/eval/summary.json afterwards).

Prints a table; the last line is one JSON object: throughput: c_env_steps_per_s, batch_<B>_steps_per_s,
batch_<B>_physics_steps_per_s, batch_<B>_compile_s, device, machine; parity: batched_success_rate,
c_success_rate, episodes, difference_points.
Usage: python bench/batched_sim.py [--batches 1 256 4096] [--steps 20] [--device cpu|cuda] [--c-seconds 10]
       python bench/batched_sim.py --policy-run runs/pick --episodes 500 [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robot_rl.sim_batch import BatchPickCube  # sets XLA_FLAGS before jax loads: import jax only after it

PHYSICS_PER_CONTROL = 50


def c_env_rate(seconds: float) -> float:
    """Control steps/s of one RobotEnv pick_cube with random actions (resets not counted in the time)."""
    from robot_rl.envs.robot_env import make_pick_cube_env

    env = make_pick_cube_env(seed=0)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, busy = 0, 0.0
    try:
        while busy < seconds:
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            busy += time.perf_counter() - t0
            steps += 1
            if terminated or truncated:
                env.reset()
    finally:
        env.close()
    return steps / busy


def batched_rate(batch: int, steps: int, device: str) -> tuple[float, float]:
    """(control steps/s over the batch, compile + first step seconds) of BatchPickCube with random actions."""
    sim = BatchPickCube(batch, device=device, max_steps=10**6)  # no truncation: every env steps throughout
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    sim.reset(seeds=range(batch))
    sim.step(rng.uniform(-1, 1, (batch, 4)).astype(np.float32))
    compile_s = time.perf_counter() - t0
    actions = [rng.uniform(-1, 1, (batch, 4)).astype(np.float32) for _ in range(steps)]
    t0 = time.perf_counter()
    for a in actions:
        sim.step(a)  # returns numpy: includes the transfer back, as a policy loop needs it
    return batch * steps / (time.perf_counter() - t0), compile_s


def throughput(args: argparse.Namespace, machine: str) -> None:
    c_rate = c_env_rate(args.c_seconds)
    print(f"{'sim':<22}{'batch':>7}{'control steps/s':>18}{'physics steps/s':>18}{'compile s':>11}")
    print(f"{'C (MujocoRobot)':<22}{1:>7}{c_rate:>18.1f}{c_rate * PHYSICS_PER_CONTROL:>18.0f}{'-':>11}")
    out: dict = {"c_env_steps_per_s": round(c_rate, 2)}
    for b in args.batches:
        steps = args.steps if b <= 256 else max(2, args.steps // 4)
        rate, compile_s = batched_rate(b, steps, args.device)
        print(f"{'MJX ' + args.device:<22}{b:>7}{rate:>18.1f}{rate * PHYSICS_PER_CONTROL:>18.0f}{compile_s:>11.1f}")
        out[f"batch_{b}_steps_per_s"] = round(rate, 2)
        out[f"batch_{b}_physics_steps_per_s"] = round(rate * PHYSICS_PER_CONTROL, 1)
        out[f"batch_{b}_compile_s"] = round(compile_s, 1)
        out[f"batch_{b}_timed_steps"] = steps
    print(json.dumps({**out, "device": args.device, "machine": machine}))


def parity(args: argparse.Namespace, machine: str) -> None:
    from robot_rl.deploy.eval_batch import checkpoint_policy, run_episodes, sim_kwargs
    from robot_rl.runtime.trained import trained_run_config
    from robot_rl.tasks.randomization import Perturbation

    run_dir = Path(args.policy_run)
    kwargs = sim_kwargs(trained_run_config(run_dir))
    policy = checkpoint_policy(run_dir)
    n = args.episodes
    sim = BatchPickCube(min(args.batch, n), device=args.device, **kwargs)
    t0 = time.perf_counter()
    out = run_episodes(sim, policy, [12345 + k for k in range(n)], [Perturbation()] * n)
    batched_s = time.perf_counter() - t0
    batched = float(out["success"].mean())
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "eval", f"run_dir={run_dir}", f"episodes={n}", "log=false"],
        check=True,
    )
    c_s = time.perf_counter() - t0
    c_rate = json.loads((run_dir / "eval" / "summary.json").read_text())["success_rate"]
    print(f"{'sim':<10}{'episodes':>10}{'success':>10}{'seconds':>10}")
    print(f"{'MJX':<10}{n:>10}{batched:>10.1%}{batched_s:>10.1f}")
    print(f"{'C':<10}{n:>10}{c_rate:>10.1%}{c_s:>10.1f}")
    print(
        json.dumps(
            {
                "batched_success_rate": batched,
                "c_success_rate": c_rate,
                "episodes": n,
                "difference_points": round(100 * (batched - c_rate), 2),
                "device": args.device,
                "machine": machine,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256, 4096], help="batch sizes to time")
    parser.add_argument("--steps", type=int, default=20, help="timed control steps per batch (a quarter above 256)")
    parser.add_argument("--c-seconds", type=float, default=10.0, help="timed seconds of the C env")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="the batched sim's jax device")
    parser.add_argument("--policy-run", help="a trained pick_cube run: compare its success rate in both sims")
    parser.add_argument("--episodes", type=int, default=500, help="episodes per sim with --policy-run")
    parser.add_argument("--batch", type=int, default=500, help="batch size with --policy-run")
    args = parser.parse_args()
    import jax

    device = jax.devices(args.device if args.device == "cpu" else "gpu")[0]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, {device}"
        f"{'' if args.device == 'cpu' else ' ' + str(getattr(device, 'device_kind', ''))}"
    )
    (parity if args.policy_run else throughput)(args, machine)


if __name__ == "__main__":
    main()
