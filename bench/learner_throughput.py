"""Learner throughput on this machine: critic updates/s (state agent, batch 256, MLP [256, 256],
obs 10, action 4) and single-observation policy inference latency; with --image, the image agent
(two cameras + state 7, action 4, ensemble 2, UTD 2, default conv encoder and augmentation) BEFORE and AFTER
the CPU settings, side by side in one run: before = 128x128 float32 (the default encoder), after = the
pick_cube_vision CPU settings (64x64, `agent.encoder.precision=bfloat16`, `agent.encoder.next_features=target`);
their 1-s windows alternate, so a machine that slows down slows both.

Prints a table; the last line is one JSON object. Without --image its keys are
critic_updates_per_s_ens10 (ensemble 10, subsample 2, UTD 8), critic_updates_per_s_ens2 (ensemble 2,
UTD 2), inference_ms_median, inference_ms_p99; with --image: image_critic_updates_per_s_before,
image_critic_updates_per_s_after, image_speedup, image_inference_ms_median, image_inference_ms_p99 (128x128,
float32), device.
--critic-loss hl_gauss times the HL-Gauss critic (51 bins over [0, 1]) instead of the MSE one (state or image).
Usage: python bench/learner_throughput.py [--seconds 20] [--threads 2] [--eager] [--image] [--batch 64]
       [--device cuda] [--critic-loss mse|hl_gauss]
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

from robot_rl.agents.encoders import EncoderConfig
from robot_rl.agents.sac import SACAgent, SACConfig

OBS_DIM, ACTION_DIM, BATCH = 10, 4, 256
CAMERAS = ("image/front", "image/wrist")
IMAGE_SHAPES = {k: (128, 128, 3) for k in CAMERAS}
# image agent: (label, image size, encoder settings) before and after the CPU settings
IMAGE_SETTINGS = (
    ("before: 128x128, float32", 128, EncoderConfig()),
    ("after: 64x64, bfloat16, next=target", 64, EncoderConfig(precision="bfloat16", next_features="target")),
)
IMAGE_STATE_DIM = 7
STATE_POOL, IMAGE_POOL = 100_000, 2048  # rows of synthetic data the timed updates sample from


def synthetic_pool(obs_dims: dict, rows: int, generator: torch.Generator, device: torch.device) -> dict:
    """Random transitions standing in for a replay buffer (images uint8, vectors float32)."""

    def obs() -> dict:
        return {
            k: torch.randint(0, 256, (rows, *d), dtype=torch.uint8, generator=generator)
            if isinstance(d, tuple)
            else torch.randn(rows, d, generator=generator)
            for k, d in obs_dims.items()
        }

    pool = {
        "observation": obs(),
        "next_observation": obs(),
        "action": torch.rand(rows, ACTION_DIM, generator=generator) * 2 - 1,
        "reward": (torch.rand(rows, generator=generator) < 0.1).float(),
        "terminated": (torch.rand(rows, generator=generator) < 0.05).float(),
    }
    return {
        k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
        for k, v in pool.items()
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def critic_updates_per_s(
    obs_dims: dict, cfg: SACConfig, seconds: float, device: torch.device, pool_rows: int, warmup: int = 5
) -> tuple[float, list[float]]:
    """Median over windows of >= 1 s (and >= 1 update) of critic updates/s; each `update` is utd critic
    updates + 1 actor update on a freshly gathered batch (replay sampling is part of the learner's
    loop, so it is timed too)."""
    rates = interleaved_updates_per_s([(obs_dims, cfg)], seconds, device, pool_rows, warmup)[0]
    return statistics.median(rates), rates


def interleaved_updates_per_s(
    setups: list[tuple[dict, SACConfig]], seconds: float, device: torch.device, pool_rows: int, warmup: int = 5
) -> list[list[float]]:
    """Critic updates/s windows (>= 1 s and >= 1 update each) of every (obs_dims, config) in `setups`, the
    windows taken in turn (A, B, A, B, ...) for `seconds` each: per setup, its list of window rates."""
    runs = []
    for obs_dims, cfg in setups:
        agent = SACAgent(obs_dims, ACTION_DIM, cfg, device)
        g = torch.Generator().manual_seed(0)
        pool = synthetic_pool(obs_dims, pool_rows, g, device)

        def sample(cfg=cfg, pool=pool, g=g) -> dict:
            idx = torch.randint(0, pool_rows, (cfg.utd * cfg.batch_size,), generator=g).to(device)
            return {
                k: ({kk: vv[idx] for kk, vv in v.items()} if isinstance(v, dict) else v[idx]) for k, v in pool.items()
            }

        for _ in range(warmup):  # includes torch.compile
            agent.update(sample())
        synchronize(device)
        runs.append((agent, sample, cfg.utd, []))
    spent = 0.0
    while spent < seconds * len(runs):
        for agent, sample, utd, rates in runs:
            start, n = time.perf_counter(), 0
            while n == 0 or time.perf_counter() - start < 1.0:
                agent.update(sample())
                synchronize(device)
                n += 1
            elapsed = time.perf_counter() - start
            rates.append(n * utd / elapsed)
            spent += elapsed
    return [rates for *_, rates in runs]


def inference_latency_ms(obs_dims: dict, device: torch.device, samples: int) -> tuple[float, float]:
    """`act()` for one observation (numpy in, numpy out): median and p99 in ms."""
    agent = SACAgent(obs_dims, ACTION_DIM, SACConfig(compile=False), device)
    rng = np.random.default_rng(0)
    obs = {
        k: rng.integers(0, 256, d, dtype=np.uint8)
        if isinstance(d, tuple)
        else rng.standard_normal(d).astype(np.float32)
        for k, d in obs_dims.items()
    }
    for _ in range(max(samples // 20, 10)):
        agent.act(obs)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        agent.act(obs)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def row(label: str, median: float, windows: list[float], digits: int, width: int = 42) -> str:
    return f"{label:<{width}}{median:>10.{digits}f}{min(windows):>10.{digits}f}{max(windows):>10.{digits}f}"


def image_main(args: argparse.Namespace, machine: str, device: torch.device) -> None:
    setups = []
    for _, size, encoder in IMAGE_SETTINGS:
        obs_dims = {**{k: (size, size, 3) for k in CAMERAS}, "state": IMAGE_STATE_DIM}
        cfg = SACConfig(
            ensemble_size=2,
            critic_subsample=2,
            utd=2,
            batch_size=args.batch,
            compile=not args.eager,
            encoder=encoder,
            critic_loss=args.critic_loss,
            value_range=[0.0, 1.0],
        )
        setups.append((obs_dims, cfg))
    before, after = interleaved_updates_per_s(setups, args.seconds, device, IMAGE_POOL, warmup=3)
    median_ms, p99_ms = inference_latency_ms({**IMAGE_SHAPES, "state": IMAGE_STATE_DIM}, device, samples=500)
    print(
        f"image learner throughput ({machine}; device {device}; {'eager' if args.eager else 'torch.compile'} losses; "
        f"2 cameras + state 7, conv encoder, batch {args.batch}, ensemble 2, UTD 2, {args.critic_loss} critic; "
        "windows alternate)"
    )
    print(f"{'configuration':<56}{'median':>10}{'min':>10}{'max':>10}")
    for (label, *_), windows in zip(IMAGE_SETTINGS, (before, after)):
        print(row(f"critic updates/s, {label}", statistics.median(windows), windows, 2, 56))
    speedup = statistics.median(after) / statistics.median(before)
    print(f"{'after / before':<56}{speedup:>10.2f}")
    print(f"{'policy inference 128x128, ms (median / p99)':<56}{median_ms:>10.3f}{'':>10}{p99_ms:>10.3f}")
    print(
        json.dumps(
            {
                "image_critic_updates_per_s_before": round(statistics.median(before), 2),
                "image_critic_updates_per_s_after": round(statistics.median(after), 2),
                "image_speedup": round(speedup, 2),
                "image_inference_ms_median": round(median_ms, 3),
                "image_inference_ms_p99": round(p99_ms, 3),
                "batch_size": args.batch,
                "critic_loss": args.critic_loss,
                "device": str(device),
                "compiled": not args.eager,
                "threads": args.threads,
                "machine": machine,
            }
        )
    )


def state_main(args: argparse.Namespace, machine: str, device: torch.device) -> None:
    obs_dims = {"state": OBS_DIM}
    compile = not args.eager
    loss = {"critic_loss": args.critic_loss, "value_range": [0.0, 1.0]}
    ens10, ens10_windows = critic_updates_per_s(
        obs_dims,
        SACConfig(ensemble_size=10, critic_subsample=2, utd=8, batch_size=BATCH, compile=compile, **loss),
        args.seconds,
        device,
        STATE_POOL,
    )
    ens2, ens2_windows = critic_updates_per_s(
        obs_dims,
        SACConfig(ensemble_size=2, critic_subsample=2, utd=2, batch_size=BATCH, compile=compile, **loss),
        args.seconds,
        device,
        STATE_POOL,
    )
    median_ms, p99_ms = inference_latency_ms(obs_dims, device, samples=5000)
    print(f"learner throughput ({machine}; {'eager' if args.eager else 'torch.compile'}; {args.critic_loss} critic)")
    print(f"{'configuration':<42}{'median':>10}{'min':>10}{'max':>10}")
    print(row("critic updates/s, ensemble 10/sub 2, UTD 8", ens10, ens10_windows, 1))
    print(row("critic updates/s, ensemble 2, UTD 2", ens2, ens2_windows, 1))
    print(f"{'policy inference, ms (median / p99)':<42}{median_ms:>10.3f}{'':>10}{p99_ms:>10.3f}")
    print(
        json.dumps(
            {
                "critic_updates_per_s_ens10": round(ens10, 1),
                "critic_updates_per_s_ens2": round(ens2, 1),
                "inference_ms_median": round(median_ms, 4),
                "inference_ms_p99": round(p99_ms, 4),
                "compiled": compile,
                "critic_loss": args.critic_loss,
                "threads": args.threads,
                "machine": machine,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--eager", action="store_true", help="skip torch.compile (for comparison)")
    parser.add_argument("--image", action="store_true", help="measure the image agent instead of the state agent")
    parser.add_argument("--batch", type=int, default=64, help="image agent: batch size (the CPU settings' 64)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--critic-loss", choices=["mse", "hl_gauss"], default="mse", help="the state critic's loss")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads"
    )
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    (image_main if args.image else state_main)(args, machine, device)


if __name__ == "__main__":
    main()
