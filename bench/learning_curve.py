"""Learning curves of `robot-rl train` over seeds: env steps and wall time to 90% eval success.

Usage: python bench/learning_curve.py [--seeds 0 1 2] [--steps 20000] [--full] [--out DIR] [--eval-every 1000]
       [--eval-episodes 50] [key=value ...]
Extra key=value arguments are config overrides (e.g. task=pick_cube agent=rlpd_ens10). Each seed trains
from 20 scripted demos with a 50-episode eval every 1000 env steps (--eval-episodes, --eval-every); without
--full a seed stops at its first eval with >= 90% success. Prints a table; the last line is one JSON object with keys
steps_to_90 and wall_s_to_90 (lists per seed, null where not reached), and steps_to_80 and wall_s_to_80
(the first eval >= 80%: pick_cube_vision's CPU figure). Wall time is an eval's
`wall_s`: from the first online step to the end of that eval (compile and evals included; the demo
recording before it, about 5 s for 20 demos, not), read from the log's timestamps, so a resumed run
counts the time it was down. Writes learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering for vision tasks, before mujoco loads
from robot_rl.config import compose  # noqa: E402
from robot_rl.runtime.embedded import train  # noqa: E402
from robot_rl.runtime.plots import plot_learning_curve  # noqa: E402

TARGET = 0.9
LOWER = 0.8  # also reported: the first eval at >= 80%


def run_seeds(
    seeds: list[int],
    steps: int,
    out: Path,
    overrides: list[str],
    full: bool = False,
    eval_every: int = 1000,
    eval_episodes: int = 50,
    target: float = TARGET,
) -> tuple[list[dict], dict[str, list[dict]]]:
    """Train one fresh run per seed under `out/seed<N>`; returns a row per seed (steps and wall time to
    `target` success (keys steps_to_90, wall_s_to_90), final success, interventions, ...) and each seed's
    eval curve."""
    rows, curves = [], {}
    for seed in seeds:
        run_dir = out / f"seed{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resume
        cfg = compose(
            "train",
            [
                f"seed={seed}",
                f"steps={steps}",
                f"run_dir={run_dir}",
                "num_demos=20",
                f"runtime.eval_every={eval_every}",
                f"runtime.eval_episodes={eval_episodes}",
                *([] if full else [f"runtime.stop_at_success={target}"]),
                *overrides,
            ],
        )
        summary = train(cfg)
        reached = next((e for e in summary["evals"] if e["success_rate"] >= target), None)
        lower = next((e for e in summary["evals"] if e["success_rate"] >= LOWER), None)
        rows.append(
            {
                "seed": seed,
                "steps_to_90": reached["env_steps"] if reached else None,
                "wall_s_to_90": reached["wall_s"] if reached else None,
                "steps_to_80": lower["env_steps"] if lower else None,
                "wall_s_to_80": lower["wall_s"] if lower else None,
                "final_success": summary["success_rate"],
                "env_steps": summary["env_steps"],
                "wall_s": summary["wall_s"],
                "interventions": summary["interventions"],
                "intervention_steps": summary["intervention_steps"],
            }
        )
        curves[f"seed {seed}"] = summary["evals"]
    return rows, curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="env step budget per seed")
    parser.add_argument("--full", action="store_true", help="train the whole budget instead of stopping at 90%%")
    parser.add_argument("--out", default="bench/results/learning_curve", help="run directories and the PNG")
    parser.add_argument("--eval-every", type=int, default=1000, help="env steps between evals")
    parser.add_argument("--eval-episodes", type=int, default=50, help="episodes per eval")
    args, overrides = parser.parse_known_args()
    if args.eval_every < 1 or args.eval_episodes < 1:
        parser.error("--eval-every and --eval-episodes must be positive")
    out = Path(args.out)
    rows, curves = run_seeds(args.seeds, args.steps, out, overrides, args.full, args.eval_every, args.eval_episodes)
    task = compose("train", overrides).task.name
    title = f"{task}: eval success ({args.eval_episodes} episodes)"
    plot_learning_curve([], out / "learning_curve.png", title=title, curves=curves)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nlearning curve: {task}, {' '.join(overrides) or 'default config'} ({machine})")
    print(
        f"{'seed':>5}{'steps to 80%':>15}{'wall s to 80%':>15}{'steps to 90%':>15}{'wall s to 90%':>15}"
        f"{'final success':>15}{'env steps':>11}{'wall s':>9}"
    )
    for r in rows:
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(
            f"{r['seed']:>5}{fmt(r['steps_to_80'], 'd'):>15}{fmt(r['wall_s_to_80'], '.0f'):>15}"
            f"{fmt(r['steps_to_90'], 'd'):>15}{fmt(r['wall_s_to_90'], '.0f'):>15}"
            f"{r['final_success']:>15.0%}{r['env_steps']:>11d}{r['wall_s']:>9.0f}"
        )
    print(f"plot: {out / 'learning_curve.png'}")
    print(
        json.dumps(
            {
                "steps_to_90": [r["steps_to_90"] for r in rows],
                "wall_s_to_90": [r["wall_s_to_90"] for r in rows],
                "steps_to_80": [r["steps_to_80"] for r in rows],
                "wall_s_to_80": [r["wall_s_to_80"] for r in rows],
                "final_success": [r["final_success"] for r in rows],
                "task": task,
                "overrides": overrides,
                "machine": machine,
            }
        )
    )


if __name__ == "__main__":
    main()
