"""ConsoleEnv on the simulated pick_cube: the gate (e-stop, disarm, hold), real time and what it reports."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from robot_rl.config import compose
from robot_rl.console.device import ConsoleDevice
from robot_rl.console.env import ConsoleEnv
from robot_rl.console.hub import Console, RobotHub
from robot_rl.envs.factory import make_env
from robot_rl.envs.intervention import InterventionWrapper


@pytest.fixture
def sim():
    env = make_env(compose("train", ["task=pick_cube"]), seed=0)
    hub = Console().add_robot(RobotHub("robot"))
    yield env, hub
    env.close()


def test_estop_stops_the_loop_until_cleared_and_armed(sim):
    env, hub = sim
    gated = ConsoleEnv(InterventionWrapper(env, ConsoleDevice(hub)), hub, fps=0)
    steps, truncated = [], []
    stop = threading.Event()

    def loop():
        gated.reset(seed=0)
        while not stop.is_set():
            _, _, term, trunc, _ = gated.step(np.array([0.5, 0, 0, 0], np.float32))
            steps.append(env.unwrapped.robot.read_state().tcp_pos.copy())
            truncated.append(trunc)
            if term or trunc:
                gated.reset()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(steps) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    hub.estop("test")
    time.sleep(0.1)
    frozen, tcp = len(steps), env.unwrapped.robot.read_state().tcp_pos.copy()
    time.sleep(0.3)
    assert len(steps) == frozen, "the loop stepped while e-stopped"
    assert np.allclose(env.unwrapped.robot.read_state().tcp_pos, tcp)
    assert hub.view.paused.startswith("e-stop")
    hub.take_lease("page")
    hub.clear_estop()
    time.sleep(0.2)
    assert len(steps) == frozen and hub.view.paused == "disarmed"
    hub.take_lease("page")  # a page heartbeats every 20 ms; this one was silent for 200 ms and lost it
    hub.arm("page", True)
    deadline = time.monotonic() + 5
    while len(steps) <= frozen and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert len(steps) > frozen and truncated[frozen], "the episode that waited must end at its next step"
    assert gated.waits == 1  # one blocked step waited through the e-stop and the disarm after it


def test_real_time_and_reports(sim):
    env, hub = sim
    gated = ConsoleEnv(env, hub, realtime=True, fps=15.0)
    gated.reset(seed=0)
    assert not hub.latest_frames(), "nothing is rendered while no page is connected"
    hub.console.pages = 1  # a page opens
    gated.reset(seed=0)  # renders (the first render makes the GL context: outside the timed steps)
    t0 = time.monotonic()
    for _ in range(10):
        gated.step(np.zeros(4, np.float32))
    elapsed = time.monotonic() - t0
    dt = env.unwrapped.robot.control_dt
    assert 9 * dt <= elapsed <= 10 * dt + 0.15, elapsed
    view = hub.snapshot("x")
    assert view["step"] == 10 and len(view["tcp"]) == 3 and view["mode"] == "policy"
    assert view["joints"] and all(0.0 <= j["proximity"] <= 1.0 for j in view["joints"])
    assert set(view["cameras"]) >= {"front"}
    frames = hub.latest_frames()
    assert frames["front"].rgb.shape == (128, 128, 3) and frames["front"].rgb.dtype == np.uint8


def test_holding_after_the_person_went_silent(sim):
    env, _ = sim
    hub = Console().add_robot(RobotHub("robot", on_silence="hold"))
    gated = ConsoleEnv(InterventionWrapper(env, ConsoleDevice(hub)), hub, fps=0)  # steps in two threads: no GL
    gated.reset(seed=0)
    hub.take_lease("page")
    hub.teleop("page", 1, True, [1, 0, 0, 0])
    _, _, _, _, info = gated.step(np.zeros(4, np.float32))
    assert info["step_info"].intervention
    time.sleep(0.25)  # the page went silent
    done = threading.Event()
    thread = threading.Thread(target=lambda: (gated.step(np.zeros(4, np.float32)), done.set()), daemon=True)
    thread.start()
    assert not done.wait(0.3), "the loop must hold while nobody drives"
    assert hub.snapshot("x")["mode"] == "holding"
    hub.take_lease("page2")
    hub.teleop("page2", 1, False, [0, 0, 0, 0])
    assert done.wait(2.0)


def test_an_estop_during_the_pacing_sleep_stops_the_step_it_delays(sim):
    env, hub = sim
    gated = ConsoleEnv(env, hub, realtime=True, fps=0)
    gated.reset(seed=0)
    gated.step(np.zeros(4, np.float32))  # the next step is due a control period from now
    stepped = threading.Event()
    thread = threading.Thread(
        target=lambda: (gated.step(np.array([1, 0, 0, 0], np.float32)), stepped.set()), daemon=True
    )
    thread.start()
    time.sleep(0.02)  # the step is in its pacing sleep
    hub.estop("pressed mid-period")
    assert not stepped.wait(0.4), "a step ran after the e-stop"
    hub.take_lease("page")
    hub.clear_estop()
    hub.arm("page", True)
    assert stepped.wait(2.0)
