"""The console's safety rules in its hub, on a controlled clock: lease, silence, stale commands, e-stop."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.console.hub import Console, Refused, RobotHub
from robot_rl.data.schema import EpisodeEnd, EpisodeLabel, EpisodeSource, EvalEvent, LabelEvent


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(on_silence: str = "policy", action_dim: int = 4) -> tuple[Console, RobotHub, Clock]:
    clock = Clock()
    console = Console()
    hub = console.add_robot(RobotHub("arm", action_dim=action_dim, on_silence=on_silence, clock=clock))
    return console, hub, clock


def test_one_page_drives_the_others_view_and_anyone_stops():
    console, hub, clock = make()
    hub.take_lease("a")
    with pytest.raises(Refused, match="another page holds control"):
        hub.take_lease("b")
    with pytest.raises(Refused, match="take control first"):
        hub.teleop("b", 1, True, [1, 0, 0, 0])
    with pytest.raises(Refused):
        hub.label("b", "success")
    with pytest.raises(Refused):
        hub.arm("b", True)
    assert hub.counters["teleop_refused"] == 1
    hub.teleop("a", 1, True, [0, 1, 0, 0])
    command = hub.read_command()
    assert command.active and command.action.tolist() == [0, 1, 0, 0]
    console.estop_all("viewer pressed it")  # a viewer's e-stop works
    assert hub.estopped and not hub.armed and "e-stop" in hub.paused()


def test_a_silent_driver_loses_control_and_its_command_is_never_replayed():
    _, hub, clock = make()
    hub.take_lease("a")
    hub.teleop("a", 1, True, [1, 0, 0, 1])
    clock.t += 0.19
    assert hub.read_command().active  # still fresh
    clock.t += 0.02  # 210 ms since the last message
    command = hub.read_command()
    assert not command.active and not command.action.any()
    assert hub.holder is None and hub.counters["lease_lost_silent"] == 1
    hub.take_lease("b")  # the lease is free for another page
    hub.teleop("b", 1, False, [0, 0, 0, 0])
    assert not hub.read_command().active


def test_old_or_repeated_seq_is_dropped():
    _, hub, clock = make()
    hub.take_lease("a")
    hub.teleop("a", 5, True, [1, 0, 0, 0])
    hub.teleop("a", 4, True, [-1, 0, 0, 0])  # arrived late: never acts
    hub.teleop("a", 5, True, [0, -1, 0, 0])
    assert hub.read_command().action.tolist() == [1, 0, 0, 0]
    assert hub.counters["stale_dropped"] == 2
    assert hub.applied_seq == 5


def test_hold_on_silence_pauses_until_a_page_takes_over():
    _, hub, clock = make(on_silence="hold")
    hub.take_lease("a")
    hub.teleop("a", 1, True, [1, 0, 0, 0])
    assert hub.read_command().active
    clock.t += 0.3
    assert not hub.read_command().active
    assert hub.paused().startswith("holding")
    assert hub.snapshot("x")["mode"] == "holding"
    hub.take_lease("b")
    assert hub.paused()  # taking the lease alone does not move the robot
    hub.teleop("b", 1, False, [0, 0, 0, 0])
    assert hub.paused() == ""


def test_a_closed_page_hands_back_at_once():
    console, hub, _ = make()
    hub.take_lease("a")
    hub.teleop("a", 1, True, [1, 0, 0, 0])
    console.disconnect("a")
    assert not hub.read_command().active and hub.holder is None


def test_estop_latches_until_a_lease_holder_clears_and_leaves_the_robot_disarmed():
    console, hub, _ = make()
    console.estop_all("test")
    hub.take_lease("a")
    with pytest.raises(Refused, match="e-stop latched"):
        hub.arm("a", True)
    with pytest.raises(Refused, match="take control"):
        console.clear_estop("b")
    console.clear_estop("a")
    assert not hub.estopped and not hub.armed and hub.paused() == "disarmed"
    hub.arm("a", True)
    assert hub.armed and hub.paused() == ""


def test_labels_and_reset_are_reported_once():
    _, hub, _ = make()
    hub.take_lease("a")
    hub.label("a", "success")
    hub.request_reset("a")
    first = hub.read_command()
    assert first.label == EpisodeLabel.SUCCESS and first.end_episode
    second = hub.read_command()
    assert second.label == EpisodeLabel.NONE and not second.end_episode
    with pytest.raises(Refused, match="unknown label"):
        hub.label("a", "great")


def test_action_is_clipped_scaled_and_sized_to_the_robot():
    _, hub, _ = make(action_dim=7)
    hub.take_lease("a")
    hub.teleop("a", 1, True, [5, float("nan"), -0.5, 0, 0, 1, 1], speed=0.5)
    action = hub.read_command().action
    assert action.shape == (7,) and np.allclose(action, [0.5, 0, -0.25, 0, 0, 0.5, 1])
    with pytest.raises(ValueError, match="on_silence"):
        RobotHub("x", on_silence="drift")


def test_telemetry_keeps_curves_and_labels_the_table():
    console, _, _ = make()
    tel = console.telemetry
    tel.emit(EpisodeEnd(50, 3, EpisodeSource.ONLINE, 50, 1.0, True, 2, 7, False), "arm")
    tel.emit(LabelEvent(50, 3, EpisodeLabel.SUCCESS))
    tel.emit(EvalEvent(100, 0.5, 0.5, 10))
    snap = tel.snapshot()
    assert snap["interventions"] == [[50, 2, 7, 50]] and snap["evals"] == [[100, 0.5, 0.5]]
    assert snap["episodes"][0]["label"] == "success" and snap["episodes"][0]["robot"] == "arm"
