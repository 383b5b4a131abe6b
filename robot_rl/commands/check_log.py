"""`robot-rl check-log <store>`: check an episode log, every chunk (exit 0 intact, 1 damaged, 2 not an
episode log or bad arguments). The checking itself is robot_rl/data/log_check.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from robot_rl.config import report_errors
from robot_rl.data.episode_log import EpisodeLogError
from robot_rl.data.log_check import check_log, ranges

CONFIG = None  # a positional store path, not a hydra config
USAGE = "robot-rl check-log <store>"


def store_args(command: str, args: list[str], options: set[str], usage: str) -> tuple[str, dict[str, str]] | None:
    """The one positional store path and the `key=value` options of a log command; None (after printing
    a one-line usage error) when they are not exactly one path, known options and every required one."""
    positional = [a for a in args if "=" not in a]
    given = dict(a.split("=", 1) for a in args if "=" in a)
    unknown = sorted(set(given) - options)
    if len(positional) != 1 or unknown or not all(given.get(o) for o in options):
        what = (
            f"unknown option '{unknown[0]}'"
            if unknown
            else "expected one store path" + "".join(f" and {o}=<new store>" for o in sorted(options))
        )
        print(f"robot-rl {command}: error: {what}: usage: {usage}", file=sys.stderr)
        return None
    return positional[0], given


def run_log_command(command: str, work: Callable[[], int], interrupted: str) -> int:
    """`work`'s exit status; a damaged or unreadable store is a one-line error (exit 2)."""
    return report_errors(f"robot-rl {command}:", work, (EpisodeLogError, OSError), interrupted)


def print_check(report: dict[str, Any]) -> None:
    """The problems, notes and verdict of a `check_log` report, one line each."""
    for p in report["problems"]:
        where = p["array"] if p["key"] is None else f"{p['array']} chunk {p['chunk']} ({p['key']})"
        rows = "" if p["rows"] is None else f" rows {p['rows'][0]}-{p['rows'][1] - 1}"
        print(f"{p['kind']}: {where}{rows}: {p['detail']} -> episodes {ranges(p['episodes'])}")
    for note in report["notes"]:
        print(f"note: {note}")
    e, t = report["committed_episodes"], report["committed_steps"]
    intact, damaged = report["intact_episodes"], report["damaged_episodes"]
    head = f"{report['path']}: format {report['format_version']}, {e} committed episodes ({t} steps)"
    if report["ok"]:
        print(f"{head}: intact")
    else:
        print(
            f"{head}: {len(intact)} intact, {len(damaged)} damaged ({ranges(damaged)}), "
            f"{len(report['problems'])} problem(s); salvage with `robot-rl salvage-log {report['path']} "
            f"out=<new store>`"
        )


def main(command: str, args: list[str]) -> int:
    """`robot-rl check-log <store>`: exit 0 intact, 1 damaged, 2 not an episode log or bad arguments."""
    parsed = store_args(command, args, set(), USAGE)
    if parsed is None:
        return 2

    def work() -> int:
        report = check_log(parsed[0])
        print_check(report)
        return 0 if report["ok"] else 1

    return run_log_command(command, work, "nothing was changed")
