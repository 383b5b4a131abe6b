"""robot_rl/config.py: the one-line error printer shared by the `robot-rl` commands and the ROS nodes."""

from __future__ import annotations

import pytest

from robot_rl.config import UserError, one_line, print_error, report_errors


def fail(err: BaseException):
    def run() -> int:
        raise err

    return run


def test_report_errors_prints_an_actionable_error_on_one_line(capsys):
    assert report_errors("robot-rl eval:", fail(UserError("no run in x\n  pass run_dir=...")), (UserError,)) == 2
    assert capsys.readouterr().err == "robot-rl eval: error: no run in x; pass run_dir=...\n"
    assert report_errors("robot-rl eval:", lambda: None, (UserError,)) == 0
    assert report_errors("robot-rl check-log:", lambda: 1, (UserError,)) == 1
    with pytest.raises(KeyError):  # not a person's error: the traceback stays
        report_errors("robot-rl eval:", fail(KeyError("bug")), (UserError, ValueError))


def test_report_errors_on_ctrl_c(capsys):
    code = report_errors("robot-rl train:", fail(KeyboardInterrupt()), (UserError,), "rerun to resume")
    assert code == 130 and capsys.readouterr().err == "robot-rl train: interrupted; rerun to resume\n"
    with pytest.raises(KeyboardInterrupt):  # a node stops on Ctrl-C without a message
        report_errors("[learner]", fail(KeyboardInterrupt()), (UserError,))


def test_print_error_for_a_node(capsys):
    print_error("[learner]", ValueError("bad value for agent.utd\n"))
    assert capsys.readouterr().err == "[learner] error: bad value for agent.utd\n"
    assert one_line("a\n\n  b  \n") == "a; b"
