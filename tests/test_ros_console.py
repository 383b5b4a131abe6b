"""The web console in ROS mode: the `console` node with a free-running sim bridge, an actor taking the
console's teleop commands (teleop=ros) and the learner, all real processes over real DDS, driven by a
WebSocket client as the page drives it (robot_rl/console/protocol.py). Also the run events' JSON codec
and RosTeleopDevice's end-episode code and several senders.

Every process of this module runs in its own ROS domain (ROS_DOMAIN_ID from the pid); the process
harness is tests/ros_processes.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time

import numpy as np
import pytest

from robot_rl.data.schema import (
    EpisodeEnd,
    EpisodeLabel,
    EpisodeSource,
    EStopEvent,
    EvalEvent,
    LabelEvent,
    LearnerStats,
    event_from_json,
    event_to_json,
)

DOMAIN = 215 + os.getpid() % 18  # this module's own DDS domain (test_ros: 40..89, test_ros_nodes: 100..199)
NS = "/robot"


# ------------------------------------------------------------------------------------ the events codec
def test_run_events_round_trip_through_json():
    events = [
        EpisodeEnd(120, 7, EpisodeSource.INTERVENTION, 42, 1.5, True, 2, 9, False, "/robot/actor"),
        LabelEvent(120, 7, EpisodeLabel.SUCCESS),
        EvalEvent(1000, 0.75, 0.6, 4, None),
        EStopEvent(5, True, "pressed"),
    ]
    for event in events:
        text = json.dumps(event_to_json(event), allow_nan=False)
        assert event_from_json(json.loads(text)) == event
    assert json.loads(json.dumps(event_to_json(events[0])))["source"] == "intervention"
    stats = LearnerStats(500, 1000, 10, 64, float("nan"), np.float32(0.5), 1.0, 0.1, 0.2, 10, 3, 1, 4, 0.6, 0.4, 9.0)
    data = json.loads(json.dumps(event_to_json(stats), allow_nan=False))  # NaN travels as null
    assert data["updates_per_s"] is None and data["critic_loss"] == 0.5
    back = event_from_json(data)
    assert np.isnan(back.updates_per_s) and back.critic_loss == 0.5 and back.total_steps == 1000


@pytest.mark.parametrize(
    "data, match",
    [
        ([1, 2], "JSON object"),
        ({"kind": "Nope"}, "unknown run event kind"),
        ({"kind": "LabelEvent", "env_step": 1, "episode": 2}, "missing field 'label'"),
        ({"kind": "LabelEvent", "env_step": 1, "episode": 2, "label": "great"}, "LabelEvent.label='great'"),
        ({"kind": "LabelEvent", "env_step": 1.5, "episode": 2, "label": "success"}, "env_step must be an integer"),
        ({"kind": "LabelEvent", "env_step": 1, "episode": 2, "label": "success", "x": 1}, "unexpected field"),
        ({"kind": "EStopEvent", "env_step": 1, "engaged": 1}, "engaged must be true or false"),
        ({"kind": "EStopEvent", "env_step": 1, "engaged": True, "reason": "x" * 300}, "at most 256"),
    ],
)
def test_run_events_from_json_refuse_what_is_not_an_event(data, match):
    with pytest.raises(ValueError, match=match):
        event_from_json(data)


# ---------------------------------------------------------------------------------------------- over DDS
rclpy = pytest.importorskip("rclpy")
pytest.importorskip("websockets")

from ros_processes import Nodes, ros_session  # noqa: E402

from robot_rl.data.episode_log import EpisodeLog  # noqa: E402


def joy(active: bool, x: float, code: int = 0, sender: str = ""):
    from sensor_msgs.msg import Joy

    msg = Joy(axes=[x, 0.0, 0.0, 0.0], buttons=[int(active), code])
    msg.header.frame_id = sender
    return msg


def test_ros_teleop_device_takes_end_episode_and_several_senders(monkeypatch):
    from robot_rl.teleop.ros import END_EPISODE, RosTeleopDevice

    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN))
    device = RosTeleopDevice(NS, max_age=0.25)
    try:
        device._on_command(joy(False, 0.0, END_EPISODE, "console"))
        command = device.read()
        assert command.end_episode and not command.active and command.label == EpisodeLabel.NONE
        assert not device.read().end_episode  # an edge: reported once
        device._on_command(joy(False, 0.0, END_EPISODE, "console"))
        device.reset()  # asked for before the episode began: dropped
        assert not device.read().end_episode

        # a SpaceMouse's idle teleop node and the console driving: the active sender drives, whatever the order
        device._on_command(joy(True, 0.7, sender="console"))
        device._on_command(joy(False, 0.0, sender="/robot/teleop"))
        command = device.read()
        assert command.active and command.action[0] == pytest.approx(0.7)
        device._on_command(joy(True, -0.3, EpisodeLabel.SUCCESS, sender="/robot/teleop"))
        command = device.read()  # both active: the newest drives
        assert command.active and command.action[0] == pytest.approx(-0.3) and command.label == EpisodeLabel.SUCCESS
        device._on_command(joy(False, 0.0, sender="console"))
        device._on_command(joy(False, 0.0, sender="/robot/teleop"))
        assert not device.read().active  # both idle
        device._on_command(joy(True, 0.5, sender="console"))
        time.sleep(0.3)
        assert not device.read().active  # stale: a dead link never keeps control
    finally:
        device.close()


class Page:
    """A WebSocket client speaking the console protocol: a reader thread keeps the newest state, every
    telemetry and notice and the camera frames; `drive` runs the lease holder's 50 Hz teleop heartbeat."""

    def __init__(self, port: int, robot: str, timeout: float = 30.0) -> None:
        from websockets.sync.client import connect

        deadline = time.monotonic() + timeout
        while True:  # until the console has found the robot
            self.connection = connect(f"ws://127.0.0.1:{port}/ws", origin=f"http://127.0.0.1:{port}", open_timeout=10)
            self.ws = self.connection.__enter__()
            self.hello = json.loads(self.ws.recv(timeout=10))
            if robot in self.hello["robots"] or time.monotonic() > deadline:
                break
            self.connection.__exit__(None, None, None)
            time.sleep(0.5)
        self.robot = robot
        self.lock = threading.Lock()
        self.state: dict | None = None
        self.telemetry: list[dict] = []
        self.notices: list[dict] = []
        self.frames: list[tuple[str, str, int, bytes]] = []
        self.active, self.action = False, [0.0, 0.0, 0.0, 0.0]
        self.silent = False
        self.seq = 0
        self.running = True
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.heartbeat: threading.Thread | None = None

    def _read(self) -> None:
        from robot_rl.console.protocol import parse_frame_message

        while self.running:
            try:
                message = self.ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:
                return
            with self.lock:
                if isinstance(message, bytes):
                    self.frames.append(parse_frame_message(message))
                    continue
                data = json.loads(message)
                if data["type"] == "state":
                    self.state = data
                elif data["type"] == "telemetry":
                    self.telemetry.append(data)
                elif data["type"] == "notice":
                    self.notices.append(data)

    def send(self, **message) -> None:
        with self.lock:
            self.ws.send(json.dumps(message))

    def view(self) -> dict | None:
        with self.lock:
            return None if self.state is None else self.state["robots"].get(self.robot)

    def drive(self) -> None:
        """Take the lease and keep it: the teleop heartbeat every 20 ms, with `active` and `action`."""
        self.send(type="lease", robot=self.robot, take=True)

        def beat() -> None:
            while self.running:
                if self.silent:  # the tab went away: nothing is sent
                    time.sleep(0.02)
                    continue
                self.seq += 1
                self.send(
                    type="teleop", robot=self.robot, seq=self.seq, active=self.active, action=self.action, speed=1.0
                )
                time.sleep(0.02)

        self.heartbeat = threading.Thread(target=beat, daemon=True)
        self.heartbeat.start()

    def close(self) -> None:
        self.running = False
        for thread in (self.heartbeat, self.reader):
            if thread is not None:
                thread.join(timeout=2)
        self.connection.__exit__(None, None, None)


def wait_until(condition, timeout: float, what: str, nodes: Nodes, page: Page | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for name, proc in nodes.procs.items():
            assert proc.poll() is None, f"{what}: node {name} exited ({proc.returncode}):\n{nodes.log(name)[-3000:]}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{nodes.log(n)[-1500:]}" for n in nodes.procs)
            state = page.view() if page is not None else None
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; page view {state}\n{logs}")
        time.sleep(0.05)


def console_port(nodes: Nodes) -> int | None:
    found = re.search(r"open http://127\.0\.0\.1:(\d+)/", nodes.log("console"))
    return int(found.group(1)) if found else None


def committed(run_dir) -> EpisodeLog | None:
    path = run_dir / "episodes.zarr"
    return EpisodeLog(path) if path.exists() else None


def start_training_robot(nodes: Nodes, run_dir, *console_params: str) -> None:
    """A free-running sim bridge with a camera, the learner, an actor taking the console's teleop commands
    (teleop=ros) and the console node on a free port."""
    nodes.start(
        "bridge",
        "bridge",
        "mode:=free",  # real time, as a robot: a person can drive it
        "cameras:=[front]",  # a state task: the camera is only for the people watching
        "overrides:=['robot.render_size=[48,64]']",
        namespace=NS,
    )
    nodes.start(
        "learner",
        "learner",
        f"overrides:=[run_dir={run_dir}, steps=100000, task.max_steps=100, runtime.learning_starts=100000, "
        "agent.compile=false, runtime.torch_threads=1, logger.tensorboard=false]",
    )
    nodes.start(
        "actor",
        "actor",
        f"overrides:=[robot=ros, robot.namespace={NS}, robot.timeout=30.0, task.max_steps=100, teleop=ros, "
        f"teleop.namespace={NS}]",
        "num_demos:=0",
        "start_active:=true",
        "learner_timeout_s:=5.0",
        namespace=NS,
    )
    nodes.start("console", "console", "port:=0", *console_params)


def test_console_node_drives_labels_resets_and_stops_a_training_robot(tmp_path, gl, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "run"
    with ros_session(DOMAIN, tmp_path) as (nodes, probe):
        # a generous silence limit: two CPUs run five processes here, and the test is not about silence
        start_training_robot(nodes, run_dir, "max_silence_s:=1.0")
        probe.watch(f"{NS}/status", "latched")
        port = wait_until(lambda: console_port(nodes), 60, "the console's URL", nodes)
        page = Page(port, NS)
        try:
            assert NS in page.hello["robots"] and page.hello["action_dim"][NS] == 4

            # the bridge's state and camera frames reach the page
            view = wait_until(lambda: (v := page.view()) and v["tcp"] and v["joints"] and v, 30, "state", nodes, page)
            assert len(view["tcp"]) == 3 and view["gripper_max"] == pytest.approx(0.08)
            assert [j["name"] for j in view["joints"]] == [f"joint{i}" for i in range(1, 8)]
            assert all(0 <= j["proximity"] <= 1 and j["low"] < j["high"] for j in view["joints"])
            assert view["armed"] is False and view["paused"] == "disarmed" and view["lease"] == "free"
            wait_until(lambda: len(page.frames) >= 3, 30, "camera frames", nodes, page)
            robot, camera, _, jpeg = page.frames[-1]
            assert (robot, camera) == (NS, "front")
            assert Image.open(io.BytesIO(jpeg)).size == (64, 48)

            # arm from the page: the bridge arms, the actor acts with the policy
            page.send(type="arm", robot=NS, on=True)  # refused: no lease yet
            wait_until(lambda: any("take control" in n["text"] for n in page.notices), 10, "a refusal", nodes)
            page.drive()
            wait_until(lambda: page.view()["lease"] == "you", 10, "the lease", nodes, page)
            page.send(type="arm", robot=NS, on=True)
            probe.wait_for(f"{NS}/status", lambda s: s["armed"], 10, "the bridge armed")
            wait_until(
                lambda: (v := page.view())["mode"] == "policy" and v["paused"] == "" and v["step"] > 3,
                60,
                "the actor acting",
                nodes,
                page,
            )

            # hold to intervene with +x for a second: the TCP moves +x (to the workspace's edge at most)
            x_max = probe.latest[f"{NS}/status"]["workspace"][1][0]
            x0 = page.view()["tcp"][0]
            page.action, page.active = [1.0, 0.0, 0.0, 0.0], True
            wait_until(lambda: page.view()["mode"] == "person", 5, "the person driving", nodes, page)
            time.sleep(1.0)
            x1 = page.view()["tcp"][0]
            page.action = [0.0, 0.0, 0.0, 0.0]
            time.sleep(0.3)  # a few steps held still by the person
            assert x1 - x0 > min(0.08, x_max - x0 - 0.01), (
                f"the TCP moved {x1 - x0:+.3f} m in x from {x0:.3f} m\n{nodes.log('actor')[-2000:]}"
            )

            # a success label ends the episode, labelled: in the learner's log and on the page
            page.send(type="label", robot=NS, label="success")
            page.active = False
            log = wait_until(lambda: (lg := committed(run_dir)) and lg.num_episodes >= 1 and lg, 30, "a commit", nodes)
            meta = log.episode_meta()
            assert EpisodeLabel(int(meta["label"][0])) == EpisodeLabel.SUCCESS
            assert EpisodeSource(int(meta["source"][0])) == EpisodeSource.ONLINE
            first = log.episode(0)
            assert first["intervention"].sum() >= 5 and first["terminated"][-1] and first["success"][-1]
            pushed = first["action"][first["intervention"]]
            assert (pushed[:, 0] == 1.0).sum() >= 5  # the person's +x, logged as the executed action
            assert meta["length"][0] < 100  # ended by the label, not the step limit

            # the learner's events reach the page as telemetry: the episode, its robot and its label
            def labelled_row():
                with page.lock:
                    rows = [r for t in page.telemetry for r in t["episodes"]]
                return next((r for r in rows if r["episode"] == 0 and r["label"] == "success"), None)

            row = wait_until(labelled_row, 20, "the episode in telemetry", nodes, page)
            assert row["robot"] == NS and row["source"] == "online" and row["success"] is True
            assert row["length"] == int(meta["length"][0]) and row["interventions"] >= 1

            # reset from the page ends the next episode at once (truncated, unlabelled); the actor resets
            view = wait_until(
                lambda: (v := page.view())["episode"] >= 1 and v["step"] >= 2 and v, 30, "a new episode", nodes, page
            )
            page.send(type="reset", robot=NS)
            log = wait_until(lambda: (lg := committed(run_dir)) and lg.num_episodes >= 2 and lg, 30, "the reset", nodes)
            meta, second = log.episode_meta(), log.episode(1)
            assert EpisodeLabel(int(meta["label"][1])) == EpisodeLabel.NONE and meta["length"][1] < 40
            assert second["truncated"][-1] and not second["terminated"][-1] and not second["intervention"].any()
            wait_until(lambda: page.view()["episode"] > view["episode"], 30, "the episode after the reset", nodes)

            # e-stop from the page: the bridge latches it; arming is refused until the e-stop is cleared
            page.send(type="estop")
            probe.wait_for(f"{NS}/status", lambda s: s["estop"] and not s["armed"], 10, "the bridge e-stopped")
            wait_until(lambda: page.view()["paused"].startswith("e-stop"), 10, "the page e-stopped", nodes, page)
            notices = len(page.notices)
            page.send(type="arm", robot=NS, on=True)
            wait_until(
                lambda: any("clear it first" in n["text"] for n in page.notices[notices:]), 10, "arm refused", nodes
            )
            time.sleep(0.5)
            assert probe.latest[f"{NS}/status"]["estop"] and not probe.latest[f"{NS}/status"]["armed"]
            page.send(type="clear_estop", confirm=True)
            probe.wait_for(f"{NS}/status", lambda s: not s["estop"] and not s["armed"], 10, "the e-stop cleared")
            page.send(type="arm", robot=NS, on=True)
            probe.wait_for(f"{NS}/status", lambda s: s["armed"], 10, "the bridge armed again")
        finally:
            page.close()
        console_log = nodes.log("console")
        assert "internal" not in console_log, console_log[-3000:]


def test_console_node_on_silence_hold_stops_the_actor_until_a_page_drives_again(tmp_path, gl, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with ros_session(DOMAIN, tmp_path) as (nodes, probe):
        nodes.start("bridge", "bridge", "mode:=free", "start_armed:=true", namespace=NS)
        nodes.start(  # no learner: the actor waits for one, active
            "actor",
            "actor",
            f"overrides:=[robot=ros, robot.namespace={NS}, robot.timeout=30.0, teleop=ros, teleop.namespace={NS}]",
            "start_active:=true",
            namespace=NS,
        )
        nodes.start("console", "console", "port:=0", "on_silence:=hold", "max_silence_s:=0.5")
        probe.watch(f"{NS}/actor/status")
        port = wait_until(lambda: console_port(nodes), 60, "the console's URL", nodes)
        page = Page(port, NS)
        try:
            assert page.hello["on_silence"] == "hold"
            probe.wait_for(f"{NS}/actor/status", lambda s: s["active"], 60, "the actor active")
            wait_until(lambda: (v := page.view()) and v["paused"].startswith("actor: waiting"), 10, "a view", nodes)
            page.drive()
            page.active = True  # driving (zero motion)
            wait_until(lambda: page.view()["mode"] == "person", 10, "the person driving", nodes, page)
            page.silent = True  # the driving page goes silent: the robot holds, its actor stopped
            wait_until(lambda: page.view()["mode"] == "holding", 5, "holding", nodes, page)
            assert page.view()["lease"] == "free"
            probe.wait_for(f"{NS}/actor/status", lambda s: not s["active"], 10, "the actor stopped")
            time.sleep(1.0)
            assert probe.latest[f"{NS}/actor/status"]["active"] is False  # stays stopped while nobody drives
            page.active, page.silent = False, False
            page.send(type="lease", robot=NS, take=True)  # a page takes control again: the actor goes on
            probe.wait_for(f"{NS}/actor/status", lambda s: s["active"], 10, "the actor active again")
            wait_until(lambda: page.view()["mode"] != "holding", 5, "the hold over", nodes, page)
        finally:
            page.close()


@pytest.mark.parametrize(
    "params, message",
    [
        (["on_silence:=never"], "console on_silence='never': choose one of policy, hold"),
        (["host:=0.0.0.0"], "console host=0.0.0.0 is reachable from other machines: set token=auto"),
        (["token:=short"], "console token is 5 characters"),
        (["robot_namespaces:=[robot]"], "console robot_namespaces item='robot': give an absolute ROS namespace"),
        (["max_silence_s:=0.0"], "console max_silence_s=0.0"),
    ],
)
def test_console_node_bad_parameters_end_it_with_one_line(tmp_path, params, message):
    nodes = Nodes(DOMAIN, tmp_path)
    try:
        proc = nodes.start("console", "console", "port:=0", *params)
        assert proc.wait(timeout=60) == 2
        log = nodes.log("console")
        errors = [line for line in log.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], log
        assert "Traceback" not in log
    finally:
        nodes.stop_all()


def test_console_page_in_a_browser_supervises_a_ros_training_robot(tmp_path, gl, monkeypatch):
    """The page itself (headless chromium) against the console node, bridge, actor and learner over DDS."""
    from tests.browser import chrome, hold_key, key_down, key_up, set_pad, skip_without_chromium, stub_gamepad
    from tests.console_page import click, confirm_clear_estop, open_page, robot_state, wait_images_change

    skip_without_chromium()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "run"
    with ros_session(DOMAIN, tmp_path) as (nodes, probe), chrome() as d:
        start_training_robot(nodes, run_dir)
        probe.watch(f"{NS}/status", "latched")
        port = wait_until(lambda: console_port(nodes), 60, "the console's URL", nodes)
        url = f"http://127.0.0.1:{port}/"
        open_page(d, url)
        main_window = d.current_window_handle
        view = lambda: robot_state(d, NS)  # noqa: E731
        wait_until(lambda: view().get("tcp"), 60, "the robot on the page", nodes)
        wait_images_change(d, NS, "front")

        click(d, "take")
        wait_until(lambda: view().get("lease") == "you", 10, "the lease", nodes)
        click(d, "arm")
        probe.wait_for(f"{NS}/status", lambda s: s["armed"], 10, "the bridge armed from the page")
        wait_until(lambda: view()["mode"] == "policy" and view()["step"] > 3, 60, "the actor acting", nodes)

        x0 = view()["tcp"][0]
        key_down(d, " ", "w")
        wait_until(lambda: view()["mode"] == "person", 5, "the person driving", nodes)
        time.sleep(1.0)
        key_up(d, "w", " ")
        assert view()["tcp"][0] - x0 > 0.03, "Space + W moves the TCP +x"
        click(d, "label-success")
        log = wait_until(lambda: (lg := committed(run_dir)) and lg.num_episodes >= 1 and lg, 30, "a commit", nodes)
        labelled = np.flatnonzero(log.episode_meta()["label"] == EpisodeLabel.SUCCESS)
        assert len(labelled) == 1
        episode = log.episode(int(labelled[0]))
        assert (episode["action"][episode["intervention"]][:, 0] > 0).sum() >= 5  # the page's +x, logged

        click(d, "estop")
        probe.wait_for(f"{NS}/status", lambda s: s["estop"] and not s["armed"], 10, "the bridge e-stopped")
        click(d, "arm")
        wait_until(lambda: "clear it first" in d.find_element("id", "notices").text, 10, "arm refused", nodes)
        assert not probe.latest[f"{NS}/status"]["armed"]
        confirm_clear_estop(d)
        probe.wait_for(f"{NS}/status", lambda s: not s["estop"] and not s["armed"], 10, "the e-stop cleared")
        click(d, "arm")
        probe.wait_for(f"{NS}/status", lambda s: s["armed"], 10, "the bridge armed again")
        wait_until(lambda: view()["mode"] == "policy", 30, "the actor acting again", nodes)

        stub_gamepad(d)  # LB + left stick down: -x
        x0 = view()["tcp"][0]
        set_pad(d, axes=[0.0, 1.0, 0.0, 0.0], pressed={4: True})
        wait_until(lambda: view()["mode"] == "person", 5, "the pad driving", nodes)
        time.sleep(1.0)
        set_pad(d, axes=[0.0, 0.0, 0.0, 0.0], pressed={4: False})
        assert x0 - view()["tcp"][0] > 0.03, "the pad's stick moves the TCP -x"

        click(d, "release")  # a second tab drives, then is closed mid take-over
        d.switch_to.new_window("tab")
        open_page(d, url, 10)
        key_down(d, " ", "a")
        wait_until(lambda: view()["mode"] == "person", 5, "the second tab driving", nodes)
        d.close()
        closed = time.monotonic()
        d.switch_to.window(main_window)
        key_up(d, "a", " ")
        wait_until(lambda: view()["mode"] != "person", 2, "control back with the policy", nodes)
        assert time.monotonic() - closed < 0.3  # the page's view lags by up to one 50 ms state message
        hold_key(d, "w", 0.1)  # keys without the dead-man move nothing
        assert view()["mode"] != "person"
