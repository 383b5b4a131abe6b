"""Learner throughput on this machine: critic updates/s (state agent, batch 256, MLP [256, 256],
obs 10, action 4) and single-observation policy inference latency; with --image, the image agent
(two 128x128 cameras + state 7, action 4, batch 256, default conv encoder and augmentation).

Prints a table; the last line is one JSON object. Without --image its keys are
critic_updates_per_s_ens10 (ensemble 10, subsample 2, UTD 8), critic_updates_per_s_ens2 (ensemble 2,
UTD 2), inference_ms_median, inference_ms_p99; with --image: image_critic_updates_per_s (ensemble 2,
UTD 2), image_inference_ms_median, image_inference_ms_p99, device.
Usage: python bench/learner_throughput.py [--seconds 20] [--threads 2] [--eager] [--image] [--device cuda]
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
IMAGE_SHAPES = {"image/front": (128, 128, 3), "image/wrist": (128, 128, 3)}
IMAGE_STATE_DIM, IMAGE_POOL = 7, 2048  # rows of synthetic images to sample from


def synthetic_batch(rows: int, generator: torch.Generator) -> dict:
    return {
        "observation": {"state": torch.randn(rows, OBS_DIM, generator=generator)},
        "next_observation": {"state": torch.randn(rows, OBS_DIM, generator=generator)},
        "action": torch.rand(rows, ACTION_DIM, generator=generator) * 2 - 1,
        "reward": (torch.rand(rows, generator=generator) < 0.1).float(),
        "terminated": (torch.rand(rows, generator=generator) < 0.05).float(),
    }


def critic_updates_per_s(ensemble: int, utd: int, seconds: float, compile: bool,
                         device: torch.device = torch.device("cpu")) -> tuple[float, list[float]]:
    """Median over 1-second windows of critic updates/s, each `update` = utd critic + 1 actor update
    on a fresh batch (sampling a batch from replay is part of the learner's loop, so it is timed too)."""
    cfg = SACConfig(ensemble_size=ensemble, critic_subsample=2, utd=utd, batch_size=BATCH, compile=compile)
    agent = SACAgent({"state": OBS_DIM}, ACTION_DIM, cfg, device)
    g = torch.Generator().manual_seed(0)
    pool = synthetic_batch(100_000, g)  # stands in for a replay buffer: index-select rows each update
    if device.type != "cpu":
        pool = {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
                for k, v in pool.items()}

    def sample() -> dict:
        idx = torch.randint(0, 100_000, (utd * BATCH,), generator=g).to(device)
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


def inference_latency_ms(samples: int = 5000, device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    agent = SACAgent({"state": OBS_DIM}, ACTION_DIM, SACConfig(compile=False), device)
    obs = {"state": np.random.default_rng(0).standard_normal(OBS_DIM).astype(np.float32)}
    for _ in range(200):
        agent.act(obs)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        agent.act(obs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def synthetic_image_batch(rows: int, generator: torch.Generator, device: torch.device) -> dict:
    def obs() -> dict:
        images = {k: torch.randint(0, 256, (rows, *shape), dtype=torch.uint8, generator=generator)
                  for k, shape in IMAGE_SHAPES.items()}
        return {**images, "state": torch.randn(rows, IMAGE_STATE_DIM, generator=generator)}
    batch = {"observation": obs(), "next_observation": obs(),
             "action": torch.rand(rows, ACTION_DIM, generator=generator) * 2 - 1,
             "reward": (torch.rand(rows, generator=generator) < 0.1).float(),
             "terminated": (torch.rand(rows, generator=generator) < 0.05).float()}
    return {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
            for k, v in batch.items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def image_critic_updates_per_s(seconds: float, compile: bool, device: torch.device) -> tuple[float, list[float]]:
    """Critic updates/s of the image agent (ensemble 2, UTD 2): rate over windows of >= 1 s and >= 1
    update each (an update can take longer than a second on a CPU); replay sampling on `device` timed."""
    utd = 2
    cfg = SACConfig(ensemble_size=2, critic_subsample=2, utd=utd, batch_size=BATCH, compile=compile)
    agent = SACAgent({**IMAGE_SHAPES, "state": IMAGE_STATE_DIM}, ACTION_DIM, cfg, device)
    g = torch.Generator().manual_seed(0)
    pool = synthetic_image_batch(IMAGE_POOL, g, device)

    def sample() -> dict:
        idx = torch.randint(0, IMAGE_POOL, (utd * BATCH,), generator=g).to(device)
        return {k: ({kk: vv[idx] for kk, vv in v.items()} if isinstance(v, dict) else v[idx]) for k, v in pool.items()}

    for _ in range(3):  # warm-up (includes torch.compile of the critic/actor losses)
        agent.update(sample())
    synchronize(device)
    rates, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - start < 1.0:
            agent.update(sample())
            synchronize(device)
            n += 1
        rates.append(n * utd / (time.perf_counter() - start))
    return statistics.median(rates), rates


def image_inference_latency_ms(device: torch.device, samples: int = 500) -> tuple[float, float]:
    """`act()` for one observation with two 128x128 uint8 cameras + state 7 (numpy in, numpy out)."""
    agent = SACAgent({**IMAGE_SHAPES, "state": IMAGE_STATE_DIM}, ACTION_DIM, SACConfig(compile=False), device)
    rng = np.random.default_rng(0)
    obs = {k: rng.integers(0, 256, shape, dtype=np.uint8) for k, shape in IMAGE_SHAPES.items()}
    obs["state"] = rng.standard_normal(IMAGE_STATE_DIM).astype(np.float32)
    for _ in range(50):
        agent.act(obs)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        agent.act(obs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def image_main(args: argparse.Namespace, machine: str) -> None:
    device = torch.device(args.device)
    compile = not args.eager
    rate, windows = image_critic_updates_per_s(args.seconds, compile, device)
    median_ms, p99_ms = image_inference_latency_ms(device)
    print(f"image learner throughput ({machine}; device {device}; {'eager' if args.eager else 'torch.compile'} losses; "
          "2 cameras 128x128 + state 7, conv encoder, batch 256)")
    print(f"{'configuration':<42}{'median':>10}{'min':>10}{'max':>10}")
    print(f"{'critic updates/s, ensemble 2, UTD 2':<42}{rate:>10.2f}{min(windows):>10.2f}{max(windows):>10.2f}")
    print(f"{'policy inference, ms (median / p99)':<42}{median_ms:>10.3f}{'':>10}{p99_ms:>10.3f}")
    print(json.dumps({"image_critic_updates_per_s": round(rate, 2), "image_inference_ms_median": round(median_ms, 3),
                      "image_inference_ms_p99": round(p99_ms, 3), "device": str(device), "compiled": compile,
                      "threads": args.threads, "machine": machine}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--eager", action="store_true", help="skip torch.compile (for comparison)")
    parser.add_argument("--image", action="store_true", help="measure the image agent instead of the state agent")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    if args.image:
        image_main(args, machine)
        return
    compile = not args.eager
    ens10, ens10_windows = critic_updates_per_s(10, 8, args.seconds, compile, device)
    ens2, ens2_windows = critic_updates_per_s(2, 2, args.seconds, compile, device)
    median_ms, p99_ms = inference_latency_ms(device=device)
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
