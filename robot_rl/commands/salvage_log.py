"""`robot-rl salvage-log <store> out=<new store>`: copy a log's intact episodes to a new store (exit 0,
2 on an error). The salvage itself is robot_rl/data/log_check.py."""

from __future__ import annotations

from typing import Any

from robot_rl.commands.check_log import run_log_command, store_args
from robot_rl.data.log_check import ranges, salvage_log

CONFIG = None  # a positional store path, not a hydra config
USAGE = "robot-rl salvage-log <store> out=<new store>"


def print_salvage(report: dict[str, Any]) -> None:
    """The notes and the recovered/lost counts of a `salvage_log` report."""
    for note in report["notes"]:
        print(f"note: {note}")
    n_rec, n_lost = len(report["recovered"]), len(report["lost"])
    print(
        f"salvaged {report['source']} -> {report['out']}: recovered {n_rec} of {n_rec + n_lost} episodes "
        f"({report['recovered_steps']} steps); lost {n_lost} ({ranges(report['lost'])}; "
        f"{report['lost_steps']} steps)"
    )


def main(command: str, args: list[str]) -> int:
    """`robot-rl salvage-log <store> out=<new store>`: exit 0, 2 on an error or bad arguments."""
    parsed = store_args(command, args, {"out"}, USAGE)
    if parsed is None:
        return 2
    store, options = parsed

    def work() -> int:
        print_salvage(salvage_log(store, options["out"]))
        return 0

    return run_log_command(command, work, "no new store was written")
