"""The console page in headless Chromium against the real ConsoleServer and a small 50 Hz control loop.

One browser for the module (a fresh page load per test): cameras stream, the keyboard and the gamepad drive
the loop's TCP through the hold-to-intervene dead-man, labels and reset arrive, the e-stop latches and is
cleared only after the page asks, a second page only views (but can stop), and closing a tab hands back.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser import (
    chrome,
    console_stats,
    full_page_screenshot,
    hold_key,
    key_down,
    key_up,
    leave_page,
    page_errors,
    release_keys,
    set_pad,
    skip_without_chromium,
    stub_gamepad,
    wait_for,
)

from robot_rl.console.hub import Console, RobotHub
from robot_rl.console.server import ConsoleServer
from robot_rl.data.schema import EpisodeEnd, EpisodeLabel, EpisodeSource, EvalEvent, LabelEvent, LearnerStats

ROBOT = "arm"
CAMERAS = ("front", "wrist")
STEP_M = 0.002  # metres per step per unit of action
SCREENSHOT = Path(tempfile.gettempdir()) / "robot_rl_console_page.png"  # the README's is test_console_train's
PAD_LB, PAD_Y = 4, 3
FPS_TEXT = "return document.querySelector(`span[data-fps-for='${arguments[0]}']`).textContent"


class Loop(threading.Thread):
    """A stand-in for the training loop: 50 Hz, reads the person's command, integrates it into a TCP,
    publishes the view and two changing 128x128 camera frames; waits (publishing why) while paused."""

    def __init__(self, hub: RobotHub, hz: float = 50.0) -> None:
        super().__init__(name="fake_loop", daemon=True)
        self.hub, self.period = hub, 1.0 / hz
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.tcp = np.array([0.3, 0.0, 0.2])
        self.active = False
        self.last_action = np.zeros(hub.action_dim, np.float32)
        self.max_action = np.zeros(hub.action_dim, np.float32)
        self.labels: list[EpisodeLabel] = []
        self.resets = 0
        self.step = 0
        self.episode = 0
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            why = self.hub.paused()
            if why:
                self.hub.publish(paused=why)
            else:
                self.hub.publish(paused="")
                self.tick()
            self.publish_frames()
            time.sleep(self.period)

    def tick(self) -> None:
        cmd = self.hub.read_command()
        with self.lock:
            self.reads += 1
            self.active = cmd.active
            if cmd.active:
                self.tcp += STEP_M * cmd.action[:3]
                self.last_action = cmd.action.copy()
                self.max_action = np.maximum(self.max_action, cmd.action)
            if cmd.label != EpisodeLabel.NONE:
                self.labels.append(cmd.label)
            if cmd.end_episode:
                self.resets += 1
                self.episode += 1
                self.step = 0
            self.step += 1
            tcp = [float(v) for v in self.tcp]
        q = np.sin(np.arange(6) + self.step * 0.02) * 1.5
        joints = [
            {"name": f"joint{i}", "pos": float(v), "low": -1.6, "high": 1.6, "proximity": float(abs(v) / 1.6)}
            for i, v in enumerate(q)
        ]
        p = 0.5 + 0.45 * np.sin(self.step * 0.05)
        self.hub.publish(
            mode="policy",
            episode=self.episode,
            step=self.step,
            reward=float(p > 0.7),
            episode_return=self.step * 0.01,
            success=bool(p > 0.7),
            success_probability=float(p),
            threshold=0.7,
            tcp=tcp,
            gripper=0.03,
            gripper_max=0.08,
            joints=joints,
        )

    def publish_frames(self) -> None:
        t = time.monotonic()
        ramp = ((np.arange(128)[None, :] + t * 200) % 256).astype(np.uint8)
        front = np.zeros((128, 128, 3), np.uint8)
        front[..., 0] = ramp
        front[..., 2] = ramp.T
        wrist = np.full((128, 128, 3), 40, np.uint8)
        c = int(64 + 50 * np.sin(t * 3))
        wrist[c - 10 : c + 10, 54:74] = (250, 220, 40)
        self.hub.publish_frame("front", front)
        self.hub.publish_frame("wrist", wrist)

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "tcp": self.tcp.copy(),
                "active": self.active,
                "labels": list(self.labels),
                "resets": self.resets,
                "reads": self.reads,
            }


def feed_telemetry(console: Console) -> None:
    """A run's worth of curve points: evals, online episodes with tapering take-overs, learner rates."""
    tel = console.telemetry
    for i in range(24):
        step = (i + 1) * 100
        takeovers = max(0, 4 - i // 5)
        tel.emit(EpisodeEnd(step, i, EpisodeSource.ONLINE, 100, float(i) / 3, i > 10, takeovers, takeovers * 9, False))
        if i % 4 == 3:
            tel.emit(EvalEvent(step, min(1.0, i / 24), i * 0.4, 10))
        tel.emit(LearnerStats(step, 10000, i, i * 50, 40 + i, 0.1, 1.0, 0.1, 0.0, 10, 1, 1, 9, 0.5, 0.5, 1.0), ROBOT)
    tel.emit(LabelEvent(2400, 23, EpisodeLabel.SUCCESS))


class Rig:
    def __init__(self, driver, server: ConsoleServer, hub: RobotHub, loop: Loop, console: Console) -> None:
        self.driver, self.server, self.hub, self.loop, self.console = driver, server, hub, loop, console
        self.main = driver.current_window_handle

    def open_page(self) -> None:
        """A fresh page in the main window, connected, with the hub back to armed, no e-stop, no lease."""
        d = self.driver
        for handle in d.window_handles:
            if handle != self.main:
                d.switch_to.window(handle)
                d.close()
        d.switch_to.window(self.main)
        leave_page(d)
        hub = self.hub
        wait_for(lambda: hub.holder is None, what="the lease to be free")
        hub.clear_estop()
        hub.armed = True
        d.get(self.server.url)
        wait_page_ready(d)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)


def wait_page_ready(driver) -> None:
    wait_for(
        lambda: driver.execute_script("const s = window.consoleStats; return s && s.lastState !== null"),
        what="the page's first state message",
    )


@pytest.fixture(scope="module")
def rig():
    skip_without_chromium()
    hub = RobotHub(ROBOT, action_dim=4)
    console = Console({ROBOT: hub})
    feed_telemetry(console)
    loop = Loop(hub)
    loop.start()
    rig = None
    server = ConsoleServer(console, "127.0.0.1", 0, log=lambda *_: None).start()
    try:
        with chrome() as driver:
            rig = Rig(driver, server, hub, loop, console)
            yield rig
    finally:
        (rig.server if rig else server).close()
        loop.stop.set()
        loop.join(timeout=2)


@pytest.fixture
def page(rig):
    rig.open_page()
    yield rig
    # the page threw nothing (a socket refused while the server restarts is expected)
    assert page_errors(rig.driver, ignore=("WebSocket connection",)) == []


def canvas_digest(rig: Rig, camera: str) -> str:
    data = rig.js(f"return document.querySelector('canvas[data-camera=\"{ROBOT}/{camera}\"]').toDataURL()")
    return hashlib.sha1(data.encode()).hexdigest()


def notices(rig: Rig) -> list[str]:
    return rig.js("return Array.from(document.querySelectorAll('#notices .notice')).map(li => li.textContent)")


def page_context(rig: Rig) -> str:
    """What the page and hub showed, for a failure message."""
    return f"notices: {notices(rig)}; lease: {text(rig, 'lease')!r}; hub counters: {rig.hub.counters}"


def text(rig: Rig, element_id: str) -> str:
    return rig.driver.find_element("id", element_id).text


def click(rig: Rig, element_id: str) -> None:
    rig.driver.find_element("id", element_id).click()


def test_cameras_stream_live_with_fps(page):
    for camera in CAMERAS:
        key = f"{ROBOT}/{camera}"
        wait_for(lambda k=key: (console_stats(page.driver)["drawn"].get(k) or 0) >= 3, what=f"{key} frames drawn")
    first = {camera: canvas_digest(page, camera) for camera in CAMERAS}
    counts = dict(console_stats(page.driver)["frames"])
    for camera in CAMERAS:
        wait_for(lambda c=camera: canvas_digest(page, c) != first[c], what=f"the {camera} picture to change")
    for key in (f"{ROBOT}/{c}" for c in CAMERAS):
        wait_for(lambda k=key: console_stats(page.driver)["frames"][k] > counts[k] + 5, what=f"more {key} frames")
    fps = wait_for(lambda: console_stats(page.driver)["fps"].get(f"{ROBOT}/front"), timeout=3, what="an fps figure")
    assert 5 < fps <= 35, fps  # the loop publishes 50 Hz, the server sends at most 30
    caption = page.js(FPS_TEXT, f"{ROBOT}/front")
    assert caption.endswith("fps") and caption[0].isdigit(), caption


def test_state_panel_shows_the_robot(page):
    wait_for(lambda: text(page, "mode") == "policy", what="mode policy")
    assert text(page, "armed") == "armed"
    assert text(page, "estopped") == "no"
    assert text(page, "lease") == "free"
    assert "connected" in text(page, "connection") and "DISCONNECTED" not in text(page, "connection")
    tcp = [float(v) for v in text(page, "tcp").split()]
    assert tcp == pytest.approx(page.loop.snapshot()["tcp"], abs=0.01)
    assert int(text(page, "step")) > 0
    assert len(page.driver.find_elements("css selector", "#joints .joint")) == 6
    # a joint near its limit is marked (the loop's joints sweep +-1.5 of +-1.6)
    wait_for(
        lambda: page.js("return document.querySelectorAll('#joints .fill.bad, #joints .fill.warn').length"),
        what="a joint bar coloured near its limit",
    )


def test_keyboard_dead_man_drives_and_release_hands_back(page):
    from selenium.webdriver.common.keys import Keys

    loop, hub = page.loop, page.hub
    with loop.lock:
        loop.max_action[:] = 0
    x0 = loop.snapshot()["tcp"]
    key_down(page.driver, Keys.SPACE, "w")
    try:
        wait_for(lambda: loop.snapshot()["active"], timeout=0.3, what="the loop to read the person's command")
        assert hub.lease_of("nobody") == "other", "the dead-man takes the free lease"
        wait_for(lambda: loop.snapshot()["tcp"][0] > x0[0] + 0.005, what="the TCP to move +x")
        wait_for(lambda: text(page, "driving") == "YOU ARE DRIVING", what="the driving indicator")
    finally:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(page.driver).key_up("w").key_up(Keys.SPACE).perform()
    wait_for(lambda: not loop.snapshot()["active"], timeout=0.5, what="releasing the dead-man to hand back")
    moved = loop.snapshot()["tcp"] - x0
    assert moved[0] > 0.005 and abs(moved[1]) < 1e-9 and abs(moved[2]) < 1e-9, moved
    assert loop.max_action[0] == pytest.approx(0.5), "the speed slider (0.5) scales the command"
    # the page keeps the lease (heartbeats) while the robot is back with the policy
    time.sleep(0.3)
    assert hub.holder is not None and not loop.snapshot()["active"]

    z0 = loop.snapshot()["tcp"][2]
    hold_key(page.driver, Keys.SPACE, 0.4, "r")
    wait_for(lambda: not loop.snapshot()["active"], timeout=0.5, what="hand back after Space+R")
    assert loop.snapshot()["tcp"][2] > z0 + 0.003

    latencies = console_stats(page.driver)["latencies_ms"]
    assert latencies and all(0 <= v < 500 for v in latencies), latencies

    click(page, "release")
    wait_for(lambda: hub.holder is None, what="Give back to free the lease")


def test_labels_and_reset_reach_the_loop(page):
    loop = page.loop
    click(page, "take")
    wait_for(lambda: text(page, "lease") == "you (in control)", what="the lease")
    before = loop.snapshot()
    click(page, "label-success")
    wait_for(lambda: len(loop.snapshot()["labels"]) > len(before["labels"]), what="the label")
    assert loop.snapshot()["labels"][len(before["labels"]) :] == [EpisodeLabel.SUCCESS]
    click(page, "label-discard")
    wait_for(lambda: loop.snapshot()["labels"][-1] == EpisodeLabel.DISCARD, what="the discard label")
    click(page, "reset")
    wait_for(lambda: loop.snapshot()["resets"] == before["resets"] + 1, what="the reset")


def test_estop_latches_and_clearing_asks_first(page):
    from selenium.webdriver.support.ui import WebDriverWait

    hub, d = page.hub, page.driver
    click(page, "take")
    wait_for(lambda: text(page, "lease") == "you (in control)", what="the lease")
    click(page, "estop")
    wait_for(lambda: hub.estopped, what="the e-stop")
    assert not hub.armed and hub.paused().startswith("e-stop")
    wait_for(lambda: text(page, "estopped").startswith("LATCHED"), what="the page to show the latch")
    assert "LATCHED" in text(page, "estop-banner")

    click(page, "arm")
    wait_for(
        lambda: any("e-stop latched" in n for n in notices(page)),
        what="the refusal notice",
        context=lambda: page_context(page),
    )
    assert not hub.armed and hub.estopped
    assert d.find_elements("css selector", "#notices .notice.error")

    click(page, "clear-estop")
    alert = WebDriverWait(d, 3).until(lambda drv: drv.switch_to.alert)
    assert "e-stop" in alert.text
    alert.dismiss()
    time.sleep(0.2)  # nothing may arrive: a dismissed confirm sends nothing
    assert hub.estopped

    click(page, "clear-estop")
    alert = WebDriverWait(d, 3).until(lambda drv: drv.switch_to.alert)
    time.sleep(0.5)  # a person reads the question: the page's heartbeat is blocked meanwhile
    alert.accept()
    wait_for(lambda: not hub.estopped, what="the e-stop to clear")
    assert not hub.armed, "clearing leaves the robot disarmed"
    click(page, "arm")
    wait_for(lambda: hub.armed, what="arming after the clear")
    wait_for(lambda: text(page, "armed") == "armed", what="the page to show armed")


def test_second_page_only_views_but_can_stop(page):
    from selenium.webdriver.common.keys import Keys

    hub, loop, d = page.hub, page.loop, page.driver
    click(page, "take")
    wait_for(lambda: hub.holder is not None, what="the first page's lease")
    holder = hub.holder
    d.switch_to.new_window("window")
    d.get(page.server.url)
    wait_page_ready(d)
    wait_for(lambda: text(page, "lease") == "another page", what="the viewer's lease display")
    refused, x0 = hub.counters["teleop_refused"], loop.snapshot()["tcp"]
    hold_key(d, Keys.SPACE, 0.3, "w")
    wait_for(lambda: hub.counters["teleop_refused"] > refused, what="the viewer's teleop to be refused")
    assert hub.holder == holder and not loop.snapshot()["active"]
    assert loop.snapshot()["tcp"][0] == pytest.approx(x0[0])
    wait_for(
        lambda: any("holds control" in n or "take control first" in n for n in notices(page)),
        what="why",
        context=lambda: page_context(page),
    )

    click(page, "estop")
    wait_for(lambda: hub.estopped, what="the viewer's e-stop")
    d.close()
    d.switch_to.window(page.main)
    wait_for(lambda: text(page, "estopped").startswith("LATCHED"), what="the first page to show it")


def test_closing_the_tab_mid_intervention_hands_back(page):
    from selenium.webdriver.common.keys import Keys

    hub, loop, d = page.hub, page.loop, page.driver
    # the first page holds the lease a while (its teleop seq runs up), then gives it back
    click(page, "take")
    wait_for(lambda: console_stats(d)["teleop_sent"] > 60, what="the first page's heartbeats")
    click(page, "release")
    wait_for(lambda: hub.holder is None, what="the first page to give back")
    d.switch_to.new_window("window")
    d.get(page.server.url)
    wait_page_ready(d)
    key_down(d, Keys.SPACE, "w")
    # the new holder's seq counts from 0: it drives at once all the same
    wait_for(lambda: loop.snapshot()["active"], timeout=0.3, what="driving from the second window")
    lost = hub.counters["lease_lost_silent"]
    t0 = time.monotonic()
    d.close()
    wait_for(lambda: not loop.snapshot()["active"], timeout=1.0, poll=0.002, what="hand back after close")
    elapsed = time.monotonic() - t0
    assert elapsed < 0.2, f"the hub read the person for {elapsed * 1000:.0f} ms after the tab closed"
    wait_for(lambda: hub.holder is None, timeout=0.2, what="the lease to be free")
    assert hub.counters["lease_lost_silent"] == lost, "the page handed back; it did not just go silent"
    d.switch_to.window(page.main)
    release_keys(d)  # WebDriver still counts Space and W as held


def test_gamepad_dead_man_and_stick_drive(page):
    loop, hub, d = page.loop, page.hub, page.driver
    stub_gamepad(d)
    wait_for(lambda: "stub" in text(page, "gamepad"), what="the page to see the gamepad")
    x0 = loop.snapshot()["tcp"]
    set_pad(d, axes=[0, -1, 0, 0], pressed={PAD_LB: True})  # LB + left stick up
    wait_for(lambda: loop.snapshot()["active"], timeout=0.3, what="the gamepad's dead-man")
    wait_for(lambda: loop.snapshot()["tcp"][0] > x0[0] + 0.004, what="+x from the stick")
    assert loop.last_action[0] == pytest.approx(0.5) and abs(loop.last_action[1]) < 1e-6
    set_pad(d, axes=[0, 0, 0, 0], pressed={PAD_LB: False})
    wait_for(lambda: not loop.snapshot()["active"], timeout=0.5, what="releasing LB to hand back")
    assert hub.holder is not None, "LB took the free lease"

    labels = len(loop.snapshot()["labels"])
    set_pad(d, pressed={PAD_Y: True})
    wait_for(lambda: len(loop.snapshot()["labels"]) > labels, what="Y to label")
    time.sleep(0.2)  # held: still one label
    set_pad(d, pressed={PAD_Y: False})
    assert loop.snapshot()["labels"][labels:] == [EpisodeLabel.SUCCESS]


def test_curves_and_episode_table_then_screenshot(page):
    from selenium.webdriver.common.keys import Keys

    d = page.driver
    wait_for(lambda: console_stats(d)["lastTelemetry"], what="telemetry")
    rows = d.find_elements("css selector", "#episodes tbody tr")
    assert rows and rows[0].text.split()[0] == "23" and "success" in rows[0].text
    # the plots drew something other than the background
    for plot in ("plot-rates", "plot-return", "plot-takeovers", "plot-updates"):
        colours = page.js(
            """const c = document.getElementById(arguments[0]); const px = c.getContext('2d')
                 .getImageData(0, 0, c.width, c.height).data; const seen = new Set();
               for (let i = 0; i < px.length; i += 4 * 7) seen.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
               return seen.size""",
            plot,
        )
        assert colours > 5, plot
    click(page, "take")  # show a page in control, with a few frames
    wait_for(lambda: text(page, "lease") == "you (in control)", what="the lease")
    for camera in CAMERAS:
        wait_for(lambda c=camera: page.js(FPS_TEXT, f"{ROBOT}/{c}")[0].isdigit(), what=f"{camera} fps shown")
    key_down(d, Keys.SPACE, "w")  # the picture shows a person driving
    try:
        wait_for(lambda: text(page, "driving") == "YOU ARE DRIVING", what="the driving indicator")
        path = full_page_screenshot(d, SCREENSHOT)
    finally:
        key_up(d, "w", Keys.SPACE)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000


def test_page_reconnects_after_the_server_drops(page):
    d, rig = page.driver, page
    client = console_stats(d)["lastState"]["client"]
    port = rig.server.port
    rig.server.close()
    wait_for(lambda: "DISCONNECTED" in text(page, "connection"), what="the disconnected banner")
    rig.server = ConsoleServer(rig.console, "127.0.0.1", port, log=lambda *_: None).start()
    wait_for(
        lambda: (console_stats(d)["lastState"] or {}).get("client") not in (None, client),
        timeout=8,
        what="the page to reconnect",
    )
    wait_for(lambda: "DISCONNECTED" not in text(page, "connection"), what="the banner to clear")
    new_client = console_stats(d)["lastState"]["client"]
    assert new_client != client and text(page, "connection").startswith("connected")
    assert rig.hub.holder is None  # the old socket's lease did not survive the drop
    click(page, "take")  # the reconnected page works: it takes control on the new server
    wait_for(lambda: rig.hub.holder == new_client, what="the lease on the new socket")
    wait_for(lambda: text(page, "lease") == "you (in control)", what="the page showing it is in control")


def test_hiding_the_page_gives_control_back(page):
    from selenium.webdriver.common.keys import Keys

    hub, loop, d = page.hub, page.loop, page.driver
    key_down(d, Keys.SPACE, "w")
    try:
        wait_for(lambda: loop.snapshot()["active"], timeout=0.3, what="driving")
        lost = hub.counters["lease_lost_silent"]
        # the tab goes to the background (what the browser reports when the person switches tabs)
        page.js(
            "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
            "document.dispatchEvent(new Event('visibilitychange'));"
        )
        wait_for(lambda: hub.holder is None, timeout=0.1, what="the hidden page to give the lease back")
        wait_for(lambda: not loop.snapshot()["active"], timeout=0.1, what="the loop back with the policy")
        assert hub.counters["lease_lost_silent"] == lost, "handed back, not lost to silence"
        time.sleep(0.1)  # a hidden page sends nothing: no heartbeat takes the lease again
        assert hub.holder is None
    finally:
        release_keys(d)


def test_several_robots_tabs_token_and_rotation_keys(rig):
    """Two robots (one 7-dim) behind a token: tabs switch cameras and driving, the E-STOP stops both."""
    from selenium.webdriver.common.keys import Keys

    d = rig.driver
    left, right = RobotHub("left", action_dim=4), RobotHub("right", action_dim=7)
    left.publish_frame("top", np.full((64, 64, 3), 90, np.uint8))
    right.publish_frame("side", np.full((64, 64, 3), 160, np.uint8))
    token = "console-test-token-0123456789"
    server = ConsoleServer(Console({"left": left, "right": right}), "127.0.0.1", 0, token, log=lambda *_: None)
    server.start()
    try:
        leave_page(d)
        d.get(server.url)
        wait_page_ready(d)
        tabs = [b.get_attribute("data-robot") for b in d.find_elements("css selector", "#robots button")]
        assert tabs == ["left", "right"]
        wait_for(lambda: d.find_elements("css selector", 'canvas[data-camera="left/top"]'), what="left's camera")
        d.find_element("css selector", '#robots button[data-robot="right"]').click()
        wait_for(lambda: d.find_elements("css selector", 'canvas[data-camera="right/side"]'), what="right's camera")
        assert not d.find_elements("css selector", 'canvas[data-camera="left/top"]')
        assert "rot" in d.find_element("tag name", "body").get_attribute("class").split()

        key_down(d, Keys.SPACE, "j", "u")  # yaw + roll on the selected (7-dim) robot
        try:
            command = wait_for(lambda: (c := right.read_command()).active and c, timeout=0.5, what="right driven")
        finally:
            release_keys(d)
        assert command.action.shape == (7,) and command.action[5] > 0 and command.action[3] > 0
        assert not command.action[:3].any() and left.holder is None

        d.find_element("id", "estop").click()
        wait_for(lambda: left.estopped and right.estopped, what="the e-stop on both robots")
        assert page_errors(d) == []
    finally:
        leave_page(d)
        server.close()
