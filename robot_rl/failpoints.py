"""Failpoints: named places where a test or bench/faults.py can have the process kill itself (SIGKILL),
to prove that a crash at exactly that point loses nothing (as databases test crash recovery).

`ROBOT_RL_FAILPOINT=<name>[:<n>]` kills the process the n-th time (default 1st) it reaches
`failpoint(<name>)`. Unset, a failpoint costs one dict lookup. Names in use:
  commit:demo, commit:online, commit:eval  right after an episode of that source is committed to the log
  write:<file name>                        half-way through writing a file (write_atomic), e.g.
                                           write:checkpoint.pt, write:summary.json
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Kill this process here if `ROBOT_RL_FAILPOINT` names this point and its count is reached."""
    armed = os.environ.get("ROBOT_RL_FAILPOINT")
    if not armed:
        return
    target, _, count = armed.rpartition(":")
    if not count.isdigit():
        target, count = armed, "1"
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count):
        os.kill(os.getpid(), signal.SIGKILL)
