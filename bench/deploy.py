"""Deployment: an exported policy, run by `robot-rl deploy` through the safety layer, against the training
policy run by `robot-rl eval`, on the same starts.

Usage: python bench/deploy.py [--run RUN_DIR] [--episodes 100] [--robots mujoco,serial]

1. Copies RUN_DIR (a `robot-rl train` run; default: a pick_cube run on the so101 sim) to a temporary
   directory and exports its policy (`robot-rl export`, ONNX).
2. `robot-rl eval` (PyTorch, the training policy, no safety layer in the sim) on the run's own robot: N episodes.
3. `robot-rl deploy` (onnxruntime, the safety layer on) on each robot of --robots: mujoco (the in-process
   sim) and serial (the real firmware behind a pseudo-terminal, on a MuJoCo plant; real time), N episodes
   each, from the deploy-only virtual environment (.venv-deploy: no torch) when it exists.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY_VENV = REPO / ".venv-deploy" / "bin" / "python"


def robot_rl(python: Path | str, *args: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([str(python), "-m", "robot_rl.cli", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"robot-rl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="/work/runs/so101_inproc", help="a robot-rl train run directory")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--robots", default="mujoco,serial")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    deploy_python = DEPLOY_VENV if DEPLOY_VENV.exists() else Path(sys.executable)
    result: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "episodes": args.episodes}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("eval", "deploy*", "*.onnx", "*.pt2", "tb"))
        robot_cfg = yaml.safe_load((run / "config.yaml").read_text())["robot"]
        model = robot_cfg.get("model", "panda")
        policy = run / "policy.onnx"
        robot_rl(sys.executable, "export", f"run_dir={run}", f"out={policy}")
        wall = robot_rl(
            sys.executable, "eval", f"run_dir={run}", f"episodes={args.episodes}", f"seed={args.seed}", "log=false"
        )
        summary = json.loads((run / "eval" / "summary.json").read_text())
        result["eval"] = {"robot": robot_cfg["name"], "success_rate": summary["success_rate"], "wall_s": round(wall, 1)}
        for robot in args.robots.split(","):
            out = Path(tmp) / f"deploy_{robot}"
            wall = robot_rl(
                deploy_python,
                "deploy",
                f"policy={policy}",
                f"robot={robot}",
                f"robot.model={model}",
                f"episodes={args.episodes}",
                f"seed={args.seed}",
                f"out={out}",
                "activate=now",
            )
            summary = json.loads((out / "summary.json").read_text())
            result[f"deploy_{robot}"] = {
                "success_rate": summary["success_rate"],
                "safety_steps": summary["safety_steps"],
                "safety": summary["safety"],
                "faults": summary["faults"],
                "inference_ms": summary["inference_ms"],
                "wall_s": round(wall, 1),
            }
    result["deploy_python"] = str(deploy_python)
    print(f"machine: {result['machine']}; {args.episodes} episodes each, seed {args.seed}, policy from {args.run}")
    print(f"{'run':18s} {'success':>8s} {'safety steps':>13s}  safety actions")
    print(f"{'eval ' + result['eval']['robot']:18s} {result['eval']['success_rate']:8.0%}")
    for robot in args.robots.split(","):
        r = result[f"deploy_{robot}"]
        print(f"{'deploy ' + robot:18s} {r['success_rate']:8.0%} {r['safety_steps']:13d}  {r['safety']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
