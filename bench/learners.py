"""Issue 16's learner tables: env steps (and wall time) to a success target over seeds, with the spread.

Usage: python bench/learners.py TABLE [--seeds 0 1 2] [--rows SLUG ...] [--out DIR] [--throughput] [key=value ...]

TABLE is one of the names in TABLES below:
  peg_insert   peg_insert (state) from 20 demos: steps to 90% within 30k env steps; the vision variant with the
               CPU settings for at most 60 min of wall time (the curve to project from)
  rlif         pick_cube with the simulated operator: interventions as the only reward (RLIF) against the task's
               reward plus interventions, steps to 80% within 15k env steps
  hl_gauss     the HL-Gauss critic against MSE on pick_cube, pick_cube_vision (CPU settings) and peg_insert:
               steps to 90%; --throughput adds each critic's updates/s (bench/learner_throughput.py, in a
               subprocess, alone)
  vision       pick_cube_vision with the CPU settings: steps and wall time to 80% within 3.5k env steps
Each row trains one fresh `robot-rl train` run per seed (bench/learning_curve.py's run_seeds) under
OUT/TABLE/ROW/seed<N> and stops at the row's target. --rows picks rows by slug; extra key=value arguments are
config overrides added to every row. Prints a Markdown table (mean ± sd over the seeds that reached the target,
and how many did); the last line is one JSON object with every seed's figures. Wall times are the runs' own
(from the first online step, evals included); run a table alone on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import run_seeds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# pick_cube_vision's CPU settings (README): 64x64 images, a bfloat16 backbone in updates, the target encoder's
# features for the next action, batch 64, UTD 3; at UTD 2 as the HL-Gauss and peg_insert_vision rows were measured
VISION_IMAGES = [
    "task.image_size=[64,64]",
    "agent.batch_size=64",
    "agent.encoder.precision=bfloat16",
    "agent.encoder.next_features=target",
]
VISION_CPU = ["task=pick_cube_vision", *VISION_IMAGES, "agent.utd=3"]
VISION_CPU_UTD2 = ["task=pick_cube_vision", *VISION_IMAGES, "agent.utd=2"]
HL_GAUSS = ["agent.critic_loss=hl_gauss", "agent.value_range=[0,1]"]
# the simulated person steps in on every stall (no cap of 3 take-overs an episode): under RLIF a stall it let pass
# would cost nothing
OPERATOR = ["teleop=sim_operator", "teleop.max_per_episode=100"]


@dataclass(frozen=True)
class Row:
    """One configuration of a table: its overrides, env step budget, success target and eval schedule."""

    slug: str
    label: str
    overrides: list[str]
    steps: int
    target: float = 0.9
    eval_every: int = 1000
    eval_episodes: int = 50
    #: bench/learner_throughput.py flags giving this row's critic updates/s (hl_gauss --throughput)
    throughput: list[str] = field(default_factory=list)


TABLES: dict[str, list[Row]] = {
    "peg_insert": [
        Row("state", "peg_insert (state), 20 demos", ["task=peg_insert"], 30_000),
        Row(
            "vision",
            "peg_insert_vision (CPU settings, UTD 2), 20 demos, 60 min",
            ["task=peg_insert_vision", *VISION_IMAGES, "agent.utd=2", "runtime.max_wall_s=3600"],
            30_000,
            eval_episodes=20,
        ),
    ],
    "rlif": [
        Row(
            "interventions",
            "RLIF: interventions only (reward.source=interventions)",
            [*OPERATOR, "reward.source=interventions"],
            15_000,
            target=0.8,
        ),
        Row(
            "interventions_hl",
            "RLIF with the HL-Gauss critic over [-5, 0]",
            [*OPERATOR, "reward.source=interventions", "agent.critic_loss=hl_gauss", "agent.value_range=[-5,0]"],
            15_000,
            target=0.8,
        ),
        Row("task", "task reward + interventions", OPERATOR, 15_000, target=0.8),
    ],
    "hl_gauss": [
        Row("pick_mse", "pick_cube, MSE", [], 15_000, throughput=["--critic-loss", "mse"]),
        Row("pick_hl", "pick_cube, HL-Gauss", HL_GAUSS, 15_000, throughput=["--critic-loss", "hl_gauss"]),
        Row(
            "vision_mse",
            "pick_cube_vision (CPU, UTD 2), MSE",
            VISION_CPU_UTD2,
            6_000,
            eval_every=500,
            eval_episodes=20,
            throughput=["--image", "--batch", "64", "--critic-loss", "mse"],
        ),
        Row(
            "vision_hl",
            "pick_cube_vision (CPU, UTD 2), HL-Gauss",
            VISION_CPU_UTD2 + HL_GAUSS,
            6_000,
            eval_every=500,
            eval_episodes=20,
            throughput=["--image", "--batch", "64", "--critic-loss", "hl_gauss"],
        ),
        Row("peg_mse", "peg_insert, MSE", ["task=peg_insert"], 30_000),
        Row("peg_hl", "peg_insert, HL-Gauss", ["task=peg_insert", *HL_GAUSS], 30_000),
    ],
    "vision": [
        Row("cpu", "pick_cube_vision, CPU settings", VISION_CPU, 3_500, target=0.8, eval_every=500, eval_episodes=20)
    ],
}


def spread(values: list[float]) -> str:
    """'mean ± sd' of `values` ('-' for none, the value alone for one)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{statistics.mean(values):.0f} ± {statistics.stdev(values):.0f}"


def updates_per_s(flags: list[str], seconds: float) -> float | None:
    """Critic updates/s from bench/learner_throughput.py run with `flags` (its JSON line's first updates/s key)."""
    cmd = [sys.executable, str(REPO / "bench" / "learner_throughput.py"), "--seconds", str(seconds), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        print(f"learner_throughput {' '.join(flags)} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    key = next(k for k in ("image_critic_updates_per_s_after", "critic_updates_per_s_ens2") if k in result)
    return float(result[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", help="row slugs to run (default: all of the table's)")
    parser.add_argument("--out", default="bench/results/learners")
    parser.add_argument("--throughput", action="store_true", help="also time each row's critic updates/s")
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    args, overrides = parser.parse_known_args()
    rows = TABLES[args.table]
    if args.rows:
        unknown = sorted(set(args.rows) - {r.slug for r in rows})
        if unknown:
            parser.error(f"unknown rows {unknown} of table {args.table}: choose from {[r.slug for r in rows]}")
        rows = [r for r in rows if r.slug in args.rows]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    results = []
    for row in rows:
        seeds, _ = run_seeds(
            args.seeds,
            row.steps,
            Path(args.out) / args.table / row.slug,
            [*row.overrides, *overrides],
            eval_every=row.eval_every,
            eval_episodes=row.eval_episodes,
            target=row.target,
        )
        rate = updates_per_s(row.throughput, args.throughput_seconds) if args.throughput and row.throughput else None
        results.append({"row": row.slug, "label": row.label, "target": row.target, "budget": row.steps,
                        "seeds": seeds, "updates_per_s": rate})  # fmt: skip
    print(f"\n{args.table} ({machine}); extra overrides: {' '.join(overrides) or 'none'}")
    print("| configuration | env steps to target, per seed | mean ± sd (reached) | wall s to target | updates/s |")
    print("|---|---|---|---|---|")
    for r in results:
        steps = [s["steps_to_90"] for s in r["seeds"]]
        walls = [s["wall_s_to_90"] for s in r["seeds"] if s["wall_s_to_90"] is not None]
        reached = [s for s in steps if s is not None]
        per_seed = " / ".join("-" if s is None else str(s) for s in steps)
        rate = "-" if r["updates_per_s"] is None else f"{r['updates_per_s']:.1f}"
        print(
            f"| {r['label']} ({r['target']:.0%} within {r['budget']}) | {per_seed} | {spread(reached)} "
            f"({len(reached)}/{len(steps)}) | {spread(walls)} | {rate} |"
        )
    print(json.dumps({"table": args.table, "machine": machine, "overrides": overrides, "rows": results}))


if __name__ == "__main__":
    main()
