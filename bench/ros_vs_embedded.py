"""Training over ROS 2 against the in-process runner: same task, seed and env-step budget.

Usage: python bench/ros_vs_embedded.py [--steps 6000] [--seeds 0] [--episodes 100] [--out DIR] [key=value ...]

Embedded: `robot-rl train` (actor and learner in one process). ROS: a lock-stepped sim robot_bridge,
an actor (scripted demos first, then the learner's newest weights; `max_steps_ahead=0`: each episode
waits until the learner has trained on every earlier step, as the embedded runner interleaves) and a
learner, three processes over DDS, stopping at the same online env-step budget. Both final policies
are scored the same way: `robot-rl eval` on the in-process sim (deterministic, `--episodes` episodes).
Extra key=value overrides go to both (e.g. runtime.torch_threads=1). Prints a table; the last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("MUJOCO_GL", "egl")
from ros_processes import ros_session  # noqa: E402

from robot_rl.commands.evaluate import evaluate_run  # noqa: E402
from robot_rl.config import compose  # noqa: E402
from robot_rl.runtime.embedded import train  # noqa: E402

DOMAIN = 77


def embedded(run_dir: Path, seed: int, steps: int, overrides: list[str]) -> float:
    start = time.perf_counter()
    train(
        compose(
            "train",
            [
                f"run_dir={run_dir}",
                f"seed={seed}",
                f"steps={steps}",
                "runtime.eval_every=1000000",
                "runtime.eval_episodes=1",
                *overrides,
            ],
        )
    )
    return time.perf_counter() - start


def over_ros(run_dir: Path, seed: int, steps: int, overrides: list[str], logs: Path) -> float:
    joined = ", ".join(overrides)
    extra = f", {joined}" if joined else ""
    start = time.perf_counter()
    with ros_session(DOMAIN, logs) as (nodes, _):
        nodes.start("bridge", "bridge", "mode:=lockstep", "start_armed:=true", f"seed:={seed}", namespace="/robot")
        learner = nodes.start(
            "learner", "learner", f"overrides:=[run_dir={run_dir}, seed={seed}, steps={steps}{extra}]"
        )
        nodes.start(
            "actor",
            "actor",
            f"overrides:=[robot=ros, seed={seed}{extra}]",
            "num_demos:=20",
            "max_steps_ahead:=0",
            "start_active:=true",
            namespace="/robot",
        )
        while learner.poll() is None:  # it exits once it has trained on `steps` online env steps
            time.sleep(1.0)
            if time.perf_counter() - start > 3 * 3600:
                raise TimeoutError("the ROS run took over 3 h")
        if learner.returncode != 0:
            raise RuntimeError(f"learner exited with {learner.returncode}: see {logs / 'learner.log'}")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=int, default=100, help="eval episodes per final policy")
    parser.add_argument("--out", default="bench/results/ros_vs_embedded")
    parser.add_argument("--only", choices=["embedded", "ros"], help="run one arm (two processes side by side)")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        row = {"seed": seed, "steps": args.steps}
        for arm in ("embedded", "ros"):
            if args.only and arm != args.only:
                continue
            run_dir = out / f"{arm}_seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            if arm == "embedded":
                wall = embedded(run_dir, seed, args.steps, overrides)
            else:
                wall = over_ros(run_dir, seed, args.steps, overrides, run_dir)
            result = evaluate_run(compose("eval", [f"run_dir={run_dir}", f"episodes={args.episodes}", "seed=12345"]))
            env_steps = json.loads((run_dir / "summary.json").read_text())["env_steps"]
            row[arm] = {"success": result["success_rate"], "env_steps": env_steps, "wall_s": round(wall, 1)}
        rows.append(row)
    print(f"{'seed':<6}{'arm':<10}{'env steps':>10}{'eval success':>14}{'wall s':>9}")
    for row in rows:
        for arm in ("embedded", "ros"):
            if arm in row:
                r = row[arm]
                print(f"{row['seed']:<6}{arm:<10}{r['env_steps']:>10}{r['success']:>14.0%}{r['wall_s']:>9.0f}")
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "eval_episodes": args.episodes,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
