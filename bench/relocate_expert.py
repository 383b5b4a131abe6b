"""The relocate expert's success rate: 100 seeded episodes per arm, direction and action noise.

Usage: python bench/relocate_expert.py [--episodes 100] [--arms panda so101] [--noise 0 0.1]
Each episode starts from the task's standard reset (the cube at random in the start region) and runs the scripted
expert (robot_rl/tasks/relocate_expert.py). Prints a table; the last line is one JSON object with the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")
import numpy as np  # noqa: E402

from robot_rl.envs.robot_env import make_robot_env  # noqa: E402
from robot_rl.runtime.rollout import run_episode  # noqa: E402
from robot_rl.tasks import make_expert  # noqa: E402


def measure(arm: str, direction: str, noise: float, episodes: int) -> dict:
    """Success rate and mean length of `episodes` expert episodes (seeds 0..episodes-1)."""
    env = make_robot_env("relocate", "mujoco", seed=0, robot_cfg={"model": arm}, direction=direction)
    expert = make_expert(env, noise=noise, rng=np.random.default_rng(1))
    t0 = time.perf_counter()
    results = [run_episode(env, expert.act, seed) for seed in range(episodes)]
    env.close()
    return {
        "arm": arm,
        "direction": direction,
        "noise": noise,
        "episodes": episodes,
        "success_rate": float(np.mean([r.success for r in results])),
        "mean_length": float(np.mean([r.length for r in results])),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--arms", nargs="+", default=["panda", "so101"])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.1])
    args = parser.parse_args()
    rows = [
        measure(arm, direction, noise, args.episodes)
        for arm in args.arms
        for direction in ("forward", "backward")
        for noise in args.noise
    ]
    print(f"{'arm':>6}{'direction':>10}{'noise':>7}{'success':>9}{'mean length':>13}")
    for r in rows:
        print(f"{r['arm']:>6}{r['direction']:>10}{r['noise']:>7.2f}{r['success_rate']:>9.0%}{r['mean_length']:>13.1f}")
    print(json.dumps({"rows": rows, "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
