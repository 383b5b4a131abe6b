"""Learner throughput on this machine: critic updates/s (state agent, batch 256, MLP [256, 256],
obs 10, action 4) and single-observation policy inference latency.

Prints a table; the last line is one JSON object with keys critic_updates_per_s_ens10 (ensemble 10,
subsample 2, UTD 8), critic_updates_per_s_ens2 (ensemble 2, UTD 2), inference_ms_median,
inference_ms_p99. Usage: python bench/learner_throughput.py [--seconds 20] [--threads 2] [--eager]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from robot_rl.agents.sac import SACAgent, SACConfig

OBS_DIM, ACTION_DIM, BATCH = 10, 4, 256


def synthetic_batch(rows: int, generator: torch.Generator) -> dict:
    return {
        "observation": {"state": torch.randn(rows, OBS_DIM, generator=generator)},
        "next_observation": {"state": torch.randn(rows, OBS_DIM, generator=generator)},
        "action": torch.rand(rows, ACTION_DIM, generator=generator) * 2 - 1,
        "reward": (torch.rand(rows, generator=generator) < 0.1).float(),
        "terminated": (torch.rand(rows, generator=generator) < 0.05).float(),
    }


def critic_updates_per_s(ensemble: int, utd: int, seconds: float, compile: bool) -> tuple[float, list[float]]:
    """Median over 1-second windows of critic updates/s, each `update` = utd critic + 1 actor update
    on a fresh batch (sampling a batch from replay is part of the learner's loop, so it is timed too)."""
    cfg = SACConfig(ensemble_size=ensemble, critic_subsample=2, utd=utd, batch_size=BATCH, compile=compile)
    agent = SACAgent({"state": OBS_DIM}, ACTION_DIM, cfg)
    g = torch.Generator().manual_seed(0)
    pool = synthetic_batch(100_000, g)  # stands in for a replay buffer: index-select rows each update

    def sample() -> dict:
        idx = torch.randint(0, 100_000, (utd * BATCH,), generator=g)
        return {k: ({kk: vv[idx] for kk, vv in v.items()} if isinstance(v, dict) else v[idx]) for k, v in pool.items()}

    for _ in range(5):  # warm-up (includes torch.compile)
        agent.update(sample())
    rates, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            agent.update(sample())
            n += 1
        rates.append(n * utd / (time.perf_counter() - start))
    return statistics.median(rates), rates


def inference_latency_ms(samples: int = 5000) -> tuple[float, float]:
    agent = SACAgent({"state": OBS_DIM}, ACTION_DIM, SACConfig(compile=False))
    obs = {"state": np.random.default_rng(0).standard_normal(OBS_DIM).astype(np.float32)}
    for _ in range(200):
        agent.act(obs)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        agent.act(obs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--eager", action="store_true", help="skip torch.compile (for comparison)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compile = not args.eager
    ens10, ens10_windows = critic_updates_per_s(10, 8, args.seconds, compile)
    ens2, ens2_windows = critic_updates_per_s(2, 2, args.seconds, compile)
    median_ms, p99_ms = inference_latency_ms()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    print(f"learner throughput ({machine}; {'eager' if args.eager else 'torch.compile'})")
    print(f"{'configuration':<42}{'median':>10}{'min':>10}{'max':>10}")
    print(f"{'critic updates/s, ensemble 10/sub 2, UTD 8':<42}{ens10:>10.1f}{min(ens10_windows):>10.1f}{max(ens10_windows):>10.1f}")
    print(f"{'critic updates/s, ensemble 2, UTD 2':<42}{ens2:>10.1f}{min(ens2_windows):>10.1f}{max(ens2_windows):>10.1f}")
    print(f"{'policy inference, ms (median / p99)':<42}{median_ms:>10.3f}{'':>10}{p99_ms:>10.3f}")
    print(json.dumps({"critic_updates_per_s_ens10": round(ens10, 1), "critic_updates_per_s_ens2": round(ens2, 1),
                      "inference_ms_median": round(median_ms, 4), "inference_ms_p99": round(p99_ms, 4),
                      "compiled": compile, "threads": args.threads, "machine": machine}))


if __name__ == "__main__":
    main()
