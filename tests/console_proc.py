"""Test and bench helper: a `robot-rl` command with the web console, running as a child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.cli_proc import REPO

URL_LINE = re.compile(r"\[console\] open (http://\S+)")


class ConsoleProcess:
    """The child, its output lines so far (read on a thread), and the console URL it printed."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "robot_rl.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "MUJOCO_GL": "egl", **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        """The first output line matching `pattern` (regex), waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = regex.search(line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} from robot-rl {' '.join(self.args)}:\n" + self.output)

    @property
    def url(self) -> str:
        return self.wait_for(URL_LINE.pattern).group(1)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

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


@contextmanager
def console_process(*args: object, env: dict | None = None) -> Iterator[ConsoleProcess]:
    """`robot-rl *args console.port=0` running; stopped with Ctrl-C on exit."""
    child = ConsoleProcess([*map(str, args), "console.port=0"], env)
    try:
        yield child
    finally:
        child.stop()
