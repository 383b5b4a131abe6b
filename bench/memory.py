"""Resident memory of a long `robot-rl train` run: does it plateau?

Usage: python bench/memory.py [--steps 30000] [--out bench/results/memory] [key=value ...]
Runs `robot-rl train` (pick_cube, state, default agent unless overridden) as a child process, samples its
VmRSS every second and reads the env step from its progress lines (`runtime.log_every=1000`). Prints
RSS at each 1000 steps and the growth over the second half of the run (the plateau: what remains is the
replay buffer filling, about 150 bytes per state transition); the last line is one JSON object. The
learner node's memory under a network flood is measured by bench/faults.py (part hostile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "memory"))
    args, overrides = parser.parse_known_args()
    run = Path(args.out) / "run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    command = [
        sys.executable,
        "-m",
        "robot_rl.cli",
        "train",
        f"run_dir={run}",
        f"steps={args.steps}",
        "runtime.log_every=1000",
        *overrides,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    step = 0
    samples: list[tuple[float, int, float]] = []  # (seconds, env step, RSS MB)
    start = time.monotonic()

    def sample() -> None:
        while proc.poll() is None:
            value = rss_mb(proc.pid)
            if value is not None:
                samples.append((time.monotonic() - start, step, value))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:
        found = re.match(r"\[train\] step (\d+)/", line)
        if found:
            step = int(found.group(1))
    proc.wait()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode})")
    by_step: dict[int, float] = {}
    for _, at, value in samples:
        by_step[at] = max(by_step.get(at, 0.0), value)
    print(f"{'env step':>9}{'RSS MB (max)':>14}")
    for at in sorted(by_step):
        print(f"{at:>9}{by_step[at]:>14.0f}")
    half = [v for _, at, v in samples if at >= args.steps // 2]
    mid = [v for _, at, v in samples if args.steps // 2 - 1000 <= at < args.steps // 2]
    peak = max(v for *_, v in samples)
    growth = (max(half) - max(mid)) if half and mid else None
    print(
        f"peak {peak:.0f} MB; growth over the second half (steps {args.steps // 2}-{args.steps}): {growth:.0f} MB"
        if growth is not None
        else f"peak {peak:.0f} MB"
    )
    print(
        json.dumps(
            {
                "bench": "memory",
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "steps": args.steps,
                "peak_rss_mb": round(peak),
                "second_half_growth_mb": None if growth is None else round(growth, 1),
                "rss_by_step_mb": {str(k): round(v) for k, v in sorted(by_step.items())},
                "wall_s": round(samples[-1][0]) if samples else None,
            }
        )
    )


if __name__ == "__main__":
    main()
