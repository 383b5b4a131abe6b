"""Human in the loop in sim: learning with and without the simulated operator, and with classifier
reward against ground-truth reward.

Usage:
  python bench/hil.py operator [--seeds 0 1 2] [--steps 20000] [key=value ...]
      trains each seed twice, without and with `teleop=sim_operator`, until an eval (no person: the
      policy alone) reaches 90% success; env steps count every online step, the operator's included.
  python bench/hil.py classifier --classifier <classifier.pt> [--seeds 0] [--steps 3500] [key=value ...]
      trains pick_cube_vision for a fixed budget with ground-truth reward and with the classifier's
      reward (`reward.classifier=...`); evals always score the task's true success.
  python bench/hil.py rlif [--seeds 0 1 2] [--steps 15000] [key=value ...]
      trains each seed for the whole budget with `teleop=sim_operator`, once on the task's reward and once
      with take-overs as the only reward (RLIF: `reward.source=interventions`); evals score the task's success.
Extra key=value arguments are config overrides for every run (e.g. task=pick_cube_vision). Prints a
table; the last line is one JSON object. Run directories go under --out. `--mode` runs one mode only:
two processes with `runtime.torch_threads=1` then run the two modes side by side on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import run_seeds  # noqa: E402

MODES = {
    "operator": {"without operator": [], "with operator": ["teleop=sim_operator"]},
    "classifier": {"ground-truth reward": [], "classifier reward": None},  # None: filled from --classifier
    "rlif": {
        "task reward": ["teleop=sim_operator"],
        "interventions only": ["teleop=sim_operator", "reward.source=interventions"],
    },
}


def spread(values: list) -> str:
    """'mean ± std (min-max)' of the non-None values, '-' if none; `n/N` when some are missing."""
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    text = f"{np.mean(got):.0f} ± {np.std(got):.0f} ({min(got):.0f}-{max(got):.0f})"
    return text if len(got) == len(values) else f"{text} [{len(got)}/{len(values)} reached]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(MODES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000, help="env step budget per run")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--mode", action="append", help="run only this mode (repeatable), e.g. 'with operator'")
    parser.add_argument("--classifier", help="classifier.pt for the classifier part")
    parser.add_argument("--out", default="bench/results/hil")
    args, overrides = parser.parse_known_args()
    modes = dict(MODES[args.part])
    full = args.part in ("classifier", "rlif")  # same budget for both rewards; compare where they end
    if full:
        if not args.classifier or not Path(args.classifier).is_file():
            parser.error("the classifier part needs --classifier <classifier.pt> (robot-rl train-classifier)")
        modes["classifier reward"] = [f"reward.classifier={Path(args.classifier).resolve()}"]
    if args.mode:
        unknown = set(args.mode) - set(modes)
        if unknown:
            parser.error(f"unknown mode {sorted(unknown)}: choose from {sorted(modes)}")
        modes = {m: extra for m, extra in modes.items() if m in args.mode}
    results = {}
    for mode, extra in modes.items():
        out = Path(args.out) / args.part / mode.replace(" ", "_")
        rows, _ = run_seeds(
            args.seeds,
            args.steps,
            out,
            [*overrides, *extra],
            full=full,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
        )
        results[mode] = rows

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nhil bench, {args.part}: seeds {args.seeds}, {' '.join(overrides) or 'default config'} ({machine})")
    print(
        f"{'':>22}{'steps to 90%':>34}{'wall s to 90%':>30}{'final success':>15}{'interventions':>15}{'int. steps':>12}"
    )
    for mode, rows in results.items():
        print(
            f"{mode:>22}{spread([r['steps_to_90'] for r in rows]):>34}"
            f"{spread([r['wall_s_to_90'] for r in rows]):>30}"
            f"{np.mean([r['final_success'] for r in rows]):>15.0%}"
            f"{np.mean([r['interventions'] for r in rows]):>15.0f}"
            f"{np.mean([r['intervention_steps'] for r in rows]):>12.0f}"
        )
    print(
        json.dumps(
            {"part": args.part, "seeds": args.seeds, "overrides": overrides, "machine": machine, "results": results}
        )
    )


if __name__ == "__main__":
    main()
