"""Test and bench helper: a `robot-rl` command with the web console, running as a child process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.cli_proc import RobotRlProcess

URL_LINE = r"\[console\] open (http://\S+)"


class ConsoleProcess(RobotRlProcess):
    """`robot-rl *args` in the background; `url` is the console URL it printed."""

    def __init__(self, args: list[str], env: dict | None = None) -> None:
        super().__init__(*args, env={"MUJOCO_GL": "egl", **(env or {})})

    @property
    def url(self) -> str:
        return self.wait_for(URL_LINE, 120).group(1)


@contextmanager
def console_process(*args: object, env: dict | None = None) -> Iterator[ConsoleProcess]:
    """`robot-rl *args console.port=0` running; stopped with Ctrl-C on exit."""
    child = ConsoleProcess([*map(str, args), "console.port=0"], env)
    try:
        yield child
    finally:
        child.stop()
