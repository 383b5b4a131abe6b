"""Test helper: `robot-rl` run as a child process, as a person runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def robot_rl(
    *args: object, check: bool = False, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m robot_rl.cli *args` from the repository root (`env` added to this process's); with `check`
    a non-zero exit fails the test with the command's output."""
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"robot-rl {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def start_robot_rl(*args: object, stdin=subprocess.DEVNULL, env: dict | None = None) -> subprocess.Popen:
    """`python -m robot_rl.cli *args` started in the background, as `robot_rl` runs it: stdout and stderr
    merged into one text pipe (line-buffered), `stdin` as given (e.g. a pseudo-terminal for the keyboard)."""
    return subprocess.Popen(
        [sys.executable, "-m", "robot_rl.cli", *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=REPO,
    )
