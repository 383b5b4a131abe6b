"""Sim-to-real transfer without hardware: pick_cube policies against the target sim (`task=pick_cube_target`).

Usage: python bench/sim2real.py [--seeds 0 1 2] [--pretrain-steps 10000] [--finetune-steps 8000]
                                [--source plain|randomized] [--out DIR] [key=value ...]
Per seed, in order:
  1. pretrain on pick_cube twice, 20 scripted demos each: without randomisation ("plain") and with
     `task.randomize` (RANDOMIZE below);
  2. zero-shot: each policy's success over 100 deterministic episodes on the target sim;
  3. fine-tune on the target, from the `--source` pretrained run: `finetune=wsrl` (warm-up rollouts of the
     pretrained policy, no offline data), `finetune=keep_offline` (the pretraining data kept, plus 20 demos on
     the target) and `finetune=reset` (a fresh start with 20 target demos); each stops at its first 50-episode
     eval (every 250 env steps) with >= 90% success. Env steps to 90% count every step on the target, WSRL's
     warm-up included.
Prints the table (mean and spread over seeds per cell); the last line is one JSON object. Extra key=value
arguments are config overrides for every run. Run it alone: it trains 5 runs per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robot_rl.config import compose  # noqa: E402
from robot_rl.envs.factory import make_env  # noqa: E402
from robot_rl.runtime.embedded import evaluate, train  # noqa: E402
from robot_rl.runtime.trained import load_trained, trained_run_config  # noqa: E402

TARGET = 0.9
TARGET_TASK = "pick_cube_target"
RANDOMIZE = "task.randomize={dynamics:1.0,latency:1.5}"  # covers the target: dynamics at its edges, latency 0..3
MODES = ("wsrl", "keep_offline", "reset")


def pretrain(run_dir: Path, seed: int, steps: int, overrides: list[str]) -> dict:
    """A fresh pick_cube run of `steps` env steps from 20 demos (kept when `run_dir` already holds one that
    finished them); its summary."""
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("env_steps", 0) >= steps:
        print(f"[sim2real] {run_dir}: pretrained already, kept", flush=True)
        return json.loads(summary.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = compose("train", [f"seed={seed}", f"steps={steps}", f"run_dir={run_dir}", "num_demos=20", *overrides])
    return train(cfg)


def zero_shot(run_dir: Path, episodes: int, seed: int) -> float:
    """Success rate of the run's latest checkpoint over `episodes` deterministic episodes on the target sim."""
    run_cfg = trained_run_config(run_dir)
    run_cfg.task = compose("train", [f"task={TARGET_TASK}"]).task
    torch.set_num_threads(int(run_cfg.runtime.torch_threads))
    env = make_env(run_cfg, seed=10_000 + seed)
    try:
        learner = load_trained(run_dir, env, "cpu", seed)
        result = evaluate(env, learner.agent, episodes, np.random.default_rng(seed), None)
    finally:
        env.close()
    return float(result["success_rate"])


def finetune(run_dir: Path, source: Path, mode: str, seed: int, steps: int, overrides: list[str]) -> dict:
    """Fine-tune `source` on the target sim with `finetune=<mode>` until the first eval >= 90%."""
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = compose(
        "train",
        [
            f"task={TARGET_TASK}",
            f"seed={seed}",
            f"steps={steps}",
            f"run_dir={run_dir}",
            "num_demos=20",
            f"init_from={source}",
            f"finetune={mode}",
            "runtime.eval_every=250",
            "runtime.eval_episodes=50",
            f"runtime.stop_at_success={TARGET}",
            *overrides,
        ],
    )
    summary = train(cfg)
    reached = next((e for e in summary["evals"] if e["success_rate"] >= TARGET), None)
    return {
        "steps_to_90": reached["env_steps"] if reached else None,
        "wall_s_to_90": reached["wall_s"] if reached else None,
        "first_eval": summary["evals"][0]["success_rate"] if summary["evals"] else None,
        "env_steps": summary["env_steps"],
    }


def spread(values: list) -> str:
    """`mean ± std (v1, v2, ...)` over the seeds; '-' for a seed that did not reach the target."""
    got = [v for v in values if v is not None]
    shown = ", ".join("-" if v is None else (f"{v:.0%}" if isinstance(v, float) else str(v)) for v in values)
    if not got:
        return f"- ({shown})"
    mean = statistics.fmean(got)
    std = statistics.pstdev(got) if len(got) > 1 else 0.0
    if all(isinstance(v, float) for v in got):
        return f"{mean:.0%} ± {std:.0%} ({shown})"
    return f"{mean:.0f} ± {std:.0f} ({shown})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-steps", type=int, default=10000)
    parser.add_argument("--finetune-steps", type=int, default=8000, help="env step budget of a fine-tune run")
    parser.add_argument("--zero-shot-episodes", type=int, default=100)
    parser.add_argument("--warm-steps", type=int, default=0, help="budget of wsrl/keep_offline (0: --finetune-steps)")
    parser.add_argument(
        "--source",
        choices=["plain", "randomized"],
        default="plain",
        help="the pretrained run the fine-tunes start from",
    )
    parser.add_argument("--out", default="bench/results/sim2real")
    args, overrides = parser.parse_known_args()
    out = Path(args.out)
    rows: dict[str, list] = {
        "plain": [],
        "randomized": [],
        **{m: [] for m in MODES},
        **{f"{m}_first": [] for m in MODES},
    }
    for seed in args.seeds:
        runs = {"plain": out / f"plain_seed{seed}", "randomized": out / f"randomized_seed{seed}"}
        pretrain(runs["plain"], seed, args.pretrain_steps, overrides)
        if args.source == "randomized":
            pretrain(runs["randomized"], seed, args.pretrain_steps, [RANDOMIZE, *overrides])
        for mode in MODES:  # the fine-tunes first: each prints its result as it ends
            budget = args.finetune_steps if mode == "reset" else (args.warm_steps or args.finetune_steps)
            result = finetune(out / f"{mode}_seed{seed}", runs[args.source], mode, seed, budget, overrides)
            rows[mode].append(result["steps_to_90"])
            rows[f"{mode}_first"].append(result["first_eval"])
            print(f"[sim2real] seed {seed} {mode}: " + json.dumps(result), flush=True)
        pretrain(runs["randomized"], seed, args.pretrain_steps, [RANDOMIZE, *overrides])
        for name, run_dir in runs.items():
            rows[name].append(zero_shot(run_dir, args.zero_shot_episodes, seed))
        print(f"[sim2real] seed {seed}: " + json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nsim-to-real on {TARGET_TASK} ({machine}), seeds {args.seeds}, fine-tunes from the {args.source} run")
    print(f"zero-shot success, plain policy ({args.zero_shot_episodes} episodes): {spread(rows['plain'])}")
    print(f"zero-shot success, randomised policy:                {spread(rows['randomized'])}")
    for mode in MODES:
        print(
            f"env steps to 90%, finetune={mode:<13} {spread(rows[mode])}  (first eval {spread(rows[f'{mode}_first'])})"
        )
    print(
        json.dumps(
            {
                **rows,
                "seeds": args.seeds,
                "source": args.source,
                "randomize": RANDOMIZE,
                "overrides": overrides,
                "machine": machine,
            }
        )
    )


if __name__ == "__main__":
    main()
