"""Reset-free practice vs a person's reset every episode on the relocate pair (`robot-rl train-reset-free`).

Usage: python bench/reset_free.py [--seeds 0 1 2] [--steps 20000] [--out DIR] [key=value ...]
Each seed trains both modes (resets=free and resets=every_episode) into `out/<mode>_seed<N>`; extra key=value
arguments are config overrides for both (e.g. robot.model=so101 agent.utd=8). A run directory that already
holds a run resumes. Prints a table: person resets (and per 100 episodes), episodes, the final eval per
direction and the env steps (both directions together) at the first eval where both directions reach 90%; the
last line is one JSON object with the rows.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
from robot_rl.config import compose  # noqa: E402
from robot_rl.runtime.reset_free import MODES, train_reset_free  # noqa: E402

TARGET = 0.9


def steps_to_target(summary: dict) -> int | None:
    """Env steps (both directions) of the first eval where both directions reach TARGET, else None."""
    forward, backward = summary["evals"]["forward"], summary["evals"]["backward"]
    for f, b in zip(forward, backward):
        if f["success_rate"] >= TARGET and b["success_rate"] >= TARGET:
            return int(f["env_steps"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_reset_free"))
    args, overrides = parser.parse_known_args()
    rows = []
    for seed in args.seeds:
        for mode in MODES:
            run_dir = args.out / f"{mode}_seed{seed}"
            cfg = compose(
                "train_reset_free",
                [f"run_dir={run_dir}", f"resets={mode}", f"seed={seed}", f"steps={args.steps}", *overrides],
            )
            s = train_reset_free(cfg)
            rows.append(
                {
                    "mode": mode,
                    "seed": seed,
                    "env_steps": s["env_steps"],
                    "episodes": s["episodes"],
                    "person_resets": s["person_resets"],
                    "resets_per_100_episodes": s["resets_per_100_episodes"],
                    "final_forward": s["final_eval"]["forward"]["success_rate"],
                    "final_backward": s["final_eval"]["backward"]["success_rate"],
                    "steps_to_90": steps_to_target(s),
                    "wall_s": s["wall_s"],
                }
            )
    print(f"{'mode':>14}{'seed':>5}{'episodes':>9}{'resets':>8}{'per 100':>8}{'fwd':>6}{'bwd':>6}{'steps to 90%':>14}")
    for r in rows:
        print(
            f"{r['mode']:>14}{r['seed']:>5}{r['episodes']:>9}{r['person_resets']:>8}{r['resets_per_100_episodes']:>8.1f}"
            f"{r['final_forward']:>6.0%}{r['final_backward']:>6.0%}{str(r['steps_to_90']):>14}"
        )
    print(json.dumps({"rows": rows, "steps": args.steps, "overrides": overrides}))


if __name__ == "__main__":
    main()
