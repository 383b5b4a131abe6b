"""Test helper: `robot-rl` run as a child process, as a person runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a short `robot-rl train` that exercises the learner without training it to convergence
FAST_TRAIN = [
    "agent.compile=false",
    "agent.batch_size=32",
    "agent.utd=1",
    "runtime.learning_starts=50",
    "runtime.eval_every=100000",
    "runtime.eval_episodes=1",
    "runtime.log_every=100000",
    "logger.tensorboard=false",
    "runtime.torch_threads=1",  # 2 threads on a busy 2-core machine spin: 10x slower single-observation act()
]


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
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})},
        cwd=REPO,
    )


class RobotRlProcess:
    """`robot-rl *args` running in the background (`start_robot_rl`), its output lines collected as they come."""

    def __init__(self, *args: object, stdin=subprocess.DEVNULL, env: dict | None = None) -> None:
        self.args = [str(a) for a in args]
        self.proc = start_robot_rl(*self.args, stdin=stdin, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first output line matching `pattern`; fails when the command exits or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(
                    f"robot-rl {self.args[0]} exited ({self.proc.returncode}) before {pattern!r}:\n{self.output}"
                )
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} within {timeout:.0f} s:\n{self.output}")

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for it to end by itself; its exit status. A command still running after `timeout` fails the test
        with its output and every thread's stack (SIGABRT: faulthandler dumps them)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            raise AssertionError(
                f"robot-rl {self.args[0]} still ran {timeout:.0f} s later; its output and threads:\n{self.output}"
            ) from None
        self._reader.join(5)
        return rc

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, as a person stops it; killed if it does not end within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode
