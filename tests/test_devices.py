"""Teleop devices: raw report parsing from fixture files, the device classes driven through real file
descriptors (a pipe and a file for the joystick, a pseudo-terminal for the keyboard, a stand-in
hid.device for the SpaceMouse), the missing-device errors and make_device."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
import time
import types
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.schema import EpisodeLabel
from robot_rl.teleop.common import DeviceError, apply_deadzone, operator_to_base
from robot_rl.teleop.device import DeviceCommand, TeleopDevice, idle_command
from robot_rl.teleop.devices import DEVICES, make_device
from robot_rl.teleop.gamepad import LAYOUTS, Gamepad, JoystickState, gamepad_command, parse_js_events
from robot_rl.teleop.keyboard import Keyboard, parse_keys
from robot_rl.teleop.spacemouse import (
    SpaceMouse,
    SpaceMouseState,
    find_spacemouse,
    parse_report,
    parse_reports,
    spacemouse_axes,
    spacemouse_command,
)

DATA = Path(__file__).parent / "data" / "teleop"
NONE, SUCCESS, FAILURE, DISCARD = EpisodeLabel.NONE, EpisodeLabel.SUCCESS, EpisodeLabel.FAILURE, EpisodeLabel.DISCARD


def load_batches(name: str) -> list[list[bytes]]:
    """A fixture: one hex record per line, '#' comments, '---' ends the records pending at one read()."""
    batches: list[list[bytes]] = [[]]
    for raw in (DATA / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line == "---":
            batches.append([])
        elif line:
            batches[-1].append(bytes.fromhex(line))
    if not batches[-1]:
        batches.pop()
    return batches


def assert_command(cmd: DeviceCommand, action, active: bool, label=NONE, buttons=None) -> None:
    assert cmd.action.dtype == np.float32 and cmd.action.shape == (4,)
    np.testing.assert_allclose(cmd.action, action, atol=1e-4)
    assert cmd.active is active
    assert cmd.label == label
    if buttons is not None:
        assert cmd.buttons == frozenset(buttons)


# --------------------------------------------------------------------------- shared helpers


def test_deadzone_is_continuous_and_clips():
    out = apply_deadzone(np.array([0.05, -0.1, 0.1 + 1e-6, 0.55, -1.0, 3.0]), 0.1)
    np.testing.assert_allclose(out, [0, 0, 1e-6 / 0.9, 0.5, -1, 1], atol=1e-9)
    np.testing.assert_allclose(apply_deadzone(np.array([0.05, -2.0]), 0.0), [0.05, -1.0])


def test_operator_frame_rotation():
    np.testing.assert_allclose(operator_to_base([1, 0, 0.5], 0.0), [1, 0, 0.5])
    np.testing.assert_allclose(operator_to_base([1, 0, 0.5], 90.0), [0, 1, 0.5], atol=1e-12)
    np.testing.assert_allclose(operator_to_base([1, 1, 0], 180.0), [-1, -1, 0], atol=1e-12)


def test_idle_command_matches_inactive_commands():
    assert_command(idle_command(), [0, 0, 0, 0], False)


# --------------------------------------------------------------------------- SpaceMouse: parsing


def test_spacemouse_report_styles():
    s = parse_report(bytes.fromhex("01 64 00 38 ff 9c ff"), SpaceMouseState(rotation=(1, 2, 3)))
    assert s.translation == (100, -200, -100) and s.rotation == (1, 2, 3)  # 6 bytes: translation only
    s = parse_report(bytes.fromhex("02 0a 00 00 00 c8 00"), s)
    assert s.rotation == (10, 0, 200) and s.translation == (100, -200, -100)
    s = parse_report(list(bytes.fromhex("01 01 00 02 00 03 00 04 00 05 00 06 00")), s)  # hidapi gives lists
    assert s.translation == (1, 2, 3) and s.rotation == (4, 5, 6)  # 12 bytes: all six axes
    s = parse_report(bytes.fromhex("03 02 01"), s)
    assert s.buttons == 0x0102
    assert parse_report(bytes.fromhex("17 55 00"), s) == s  # battery level: ignored
    assert parse_report(b"", s) == s


def test_spacemouse_axes_frame_scaling_and_deadzone():
    # HID frame (+x right, +y towards the user, +z down) -> (forward, left, up)
    t, r = spacemouse_axes(SpaceMouseState((-350, -350, -350), (0, 350, -700)), deadzone=0.0)
    np.testing.assert_allclose(t, [1, 1, 1])
    np.testing.assert_allclose(r, [0, 1, -1])  # clipped
    t, _ = spacemouse_axes(SpaceMouseState((30, -35, 0)), deadzone=0.1)
    np.testing.assert_allclose(t, [0, 0, 0])
    t, _ = spacemouse_axes(SpaceMouseState((0, -175, 0)), deadzone=0.1)
    np.testing.assert_allclose(t, [0.4 / 0.9, 0, 0])


def test_spacemouse_wired_fixture_parsing():
    batches = load_batches("spacemouse_wired.hex")
    assert len(batches) == 7
    state = SpaceMouseState()
    expected = [
        ([1, 0, 0, 0], True, set()),
        ([0.4 / 0.9, -(120 / 350 - 0.1) / 0.9, (70 / 350 - 0.1) / 0.9, 0], True, set()),
        ([0, 0, 0, 0], False, None),  # every axis inside the deadzone
        ([0, 0, 0, 1], True, {"left"}),  # a click between two reads still closes the gripper
        ([0, 0, 0, -1], True, {"right"}),
        ([0, 0, 0, -1], True, {"right"}),  # nothing new: the held button still counts
        ([0, 0, 0, 0], False, None),
    ]
    for i, (batch, (action, active, buttons)) in enumerate(zip(batches, expected)):
        state, seen = parse_reports(batch, state)
        if i == 1:
            assert state.translation == (120, -175, -70) and state.rotation == (10, 0, 200)
        assert_command(spacemouse_command(state, seen, deadzone=0.1), action, active, buttons=buttons)


def test_spacemouse_wireless_fixture_parsing():
    batches = load_batches("spacemouse_wireless.hex")
    state, seen = parse_reports(batches[0])
    assert state.translation == (-350, 0, 500)
    assert_command(spacemouse_command(state, seen), [0, 1, -1, 0], True)
    state, seen = parse_reports(batches[1], state)
    assert state.rotation == (-90, 180, 0)
    assert_command(spacemouse_command(state, seen), [0, 0, 0, 0], True)  # twisting the puck holds the arm
    state, seen = parse_reports(batches[2], state)
    assert state.translation == (0, 0, 0) and state.buttons == 3
    assert_command(spacemouse_command(state, seen), [0, 0, 0, 0], True, buttons={"left", "right"})


def test_spacemouse_speed_and_yaw():
    state = SpaceMouseState((0, -350, 0))  # full forward
    assert_command(spacemouse_command(state, speed=0.5, yaw_deg=180.0), [-0.5, 0, 0, 0], True)
    assert_command(spacemouse_command(state, speed=0.5, yaw_deg=90.0), [0, 0.5, 0, 0], True)


# --------------------------------------------------------------------------- SpaceMouse: the device

SPACENAV = {
    "vendor_id": 0x046D,
    "product_id": 0xC626,
    "path": b"/dev/hidraw3",
    "usage_page": 1,
    "usage": 8,
    "interface_number": 0,
    "product_string": "SpaceNavigator",
}
LOGI_MOUSE = {
    "vendor_id": 0x046D,
    "product_id": 0xC52B,
    "path": b"/dev/hidraw0",
    "usage_page": 1,
    "usage": 2,
    "interface_number": 0,
}
RECEIVER_KBD = {
    "vendor_id": 0x256F,
    "product_id": 0xC652,
    "path": b"/dev/hidraw5",
    "usage_page": 0x0C,
    "usage": 1,
    "interface_number": 0,
}
RECEIVER_AXES = {**RECEIVER_KBD, "path": b"/dev/hidraw6", "usage_page": 1, "usage": 8, "interface_number": 2}


class FakeHidDevice:
    """Stands in for hidapi's hid.device: replays queued reports, [] when none is pending."""

    def __init__(self, fail_open: bool = False) -> None:
        self.fail_open = fail_open
        self.pending: deque[bytes] = deque()
        self.path = None
        self.nonblocking = 0
        self.closed = False
        self.reads = 0
        self.read_error = False

    def open_path(self, path: bytes) -> None:
        if self.fail_open:
            raise OSError("open failed")
        self.path = path

    def set_nonblocking(self, value: int) -> int:
        self.nonblocking = value
        return 0

    def read(self, max_length: int, timeout_ms: int = 0) -> list[int]:
        assert self.nonblocking, "read before set_nonblocking(1) would block"
        self.reads += 1
        if self.read_error:
            raise OSError("read error")
        return list(self.pending.popleft()[:max_length]) if self.pending else []

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_hid(monkeypatch):
    dev = FakeHidDevice()
    module = types.SimpleNamespace(
        device=lambda: dev, enumerate=lambda vid=0, pid=0: list(module.entries), entries=[LOGI_MOUSE, SPACENAV], dev=dev
    )
    monkeypatch.setitem(sys.modules, "hid", module)
    return module


def test_find_spacemouse_picks_the_multi_axis_interface():
    assert find_spacemouse([LOGI_MOUSE]) is None
    assert find_spacemouse([LOGI_MOUSE, SPACENAV]) is SPACENAV
    assert find_spacemouse([RECEIVER_KBD, RECEIVER_AXES]) is RECEIVER_AXES
    unknown_new = {**RECEIVER_AXES, "product_id": 0xC6FF}
    assert find_spacemouse([LOGI_MOUSE, unknown_new]) is unknown_new
    assert find_spacemouse([LOGI_MOUSE, SPACENAV], vendor_id=0x046D, product_id=0xC52B) is LOGI_MOUSE


def test_spacemouse_device_drains_every_pending_report(fake_hid):
    with SpaceMouse(deadzone=0.1) as sm:
        dev = fake_hid.dev
        assert dev.path == SPACENAV["path"] and dev.nonblocking == 1 and sm.name == "SpaceNavigator"
        assert_command(sm.read(), [0, 0, 0, 0], False)  # nothing pending yet
        batches = load_batches("spacemouse_wired.hex")
        dev.pending.extend(batches[0] + batches[1])  # two reads' worth pending at once: the latest wins
        cmd = sm.read()
        assert not dev.pending and sm.state.translation == (120, -175, -70)
        assert_command(cmd, [0.4 / 0.9, -(120 / 350 - 0.1) / 0.9, (70 / 350 - 0.1) / 0.9, 0], True)
        assert_command(sm.read(), cmd.action, True)  # no new report: the puck is still deflected
        for batch in batches[2:4]:
            dev.pending.extend(batch)
        assert_command(sm.read(), [0, 0, 0, 1], True, buttons={"left"})  # the click is not lost
        assert_command(sm.read(), [0, 0, 0, 0], False)
        dev.pending.extend(batches[4])
        sm.reset()  # drains, keeps the held button
        assert not dev.pending
        assert_command(sm.read(), [0, 0, 0, -1], True, buttons={"right"})
    assert dev.closed


def test_spacemouse_device_by_path_and_yaw(fake_hid):
    fake_hid.entries = []
    sm = SpaceMouse(path="/dev/hidraw9", yaw_deg=180.0, deadzone=0.0)
    assert fake_hid.dev.path == b"/dev/hidraw9"
    fake_hid.dev.pending.extend(load_batches("spacemouse_wireless.hex")[0])
    assert_command(sm.read(), [0, -1, -1, 0], True)  # facing the robot: the operator's left is the base's -y
    sm.close()


def test_spacemouse_unplugged_mid_run(fake_hid):
    sm = SpaceMouse()
    fake_hid.dev.read_error = True
    with pytest.raises(DeviceError, match="SpaceNavigator stopped answering.*unplugged"):
        sm.read()
    sm.close()
    with pytest.raises(DeviceError, match="closed"):
        sm.read()


def test_spacemouse_missing_with_real_hidapi():
    hid = pytest.importorskip("hid")
    if find_spacemouse(hid.enumerate()) is not None:
        pytest.skip("a real SpaceMouse is plugged in")
    with pytest.raises(DeviceError, match=r"no SpaceMouse found .*plug it in.*hidraw") as err:
        SpaceMouse()
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)
    with pytest.raises(DeviceError, match="could not open"):  # hidapi cannot open a path that does not exist
        SpaceMouse(path=b"/nonexistent/hidraw42")


def test_spacemouse_missing_hidapi(monkeypatch):
    monkeypatch.setitem(sys.modules, "hid", None)  # import hid -> ImportError
    with pytest.raises(DeviceError, match="hidapi is not installed.*pip install hidapi"):
        SpaceMouse()
    monkeypatch.setitem(sys.modules, "hid", types.SimpleNamespace(Device=object, enumerate=lambda: []))
    with pytest.raises(DeviceError, match="not hidapi's"):
        SpaceMouse()


def test_spacemouse_not_found_and_open_refused(fake_hid):
    fake_hid.entries = [LOGI_MOUSE]
    with pytest.raises(DeviceError, match="no SpaceMouse found"):
        SpaceMouse()
    fake_hid.entries = [SPACENAV]
    fake_hid.dev.fail_open = True
    with pytest.raises(DeviceError, match=r"found SpaceNavigator at .*could not open it.*udev"):
        SpaceMouse()


# --------------------------------------------------------------------------- gamepad: parsing


def test_parse_js_events_and_partial_tail():
    records = [r for batch in load_batches("gamepad_xbox.hex") for r in batch]
    assert all(len(r) == 8 for r in records)
    data = b"".join(records)
    events, rest = parse_js_events(data + records[-1][:3])
    assert len(events) == len(records) and rest == records[-1][:3]
    first, stick = events[0], events[17]
    assert (first.is_init, first.kind, first.number, first.value) == (True, 0x01, 0, 1)
    assert (stick.is_init, stick.kind, stick.number, stick.value, stick.time_ms) == (False, 0x02, 1, -32767, 1000)


def _run_gamepad_fixture(feed_and_read) -> list[DeviceCommand]:
    return [feed_and_read(b"".join(batch)) for batch in load_batches("gamepad_xbox.hex")[1:]]


GAMEPAD_EXPECTED = [  # (action, active, label, buttons) after each batch of gamepad_xbox.hex
    ([0, 0, 0, 0], False, NONE, set()),  # stick pushed, no dead-man; A released: no label (not a press)
    ([1, (16384 / 32767 - 0.15) / 0.85, (20000 / 32767 - 0.15) / 0.85, 0], True, NONE, {"LB"}),
    ([1, (16384 / 32767 - 0.15) / 0.85, (20000 / 32767 - 0.15) / 0.85, 0], True, SUCCESS, {"LB", "Y"}),
    ([0, 0, 0, 0], True, NONE, {"LB", "Y"}),  # Y still held: the label is an edge, not a level
    ([0, 0, 0, 1], True, DISCARD, {"LB"}),  # RT pulled and released in between: close; X then A pressed
    ([0, 0, 0, -1], True, FAILURE, {"LB", "RB"}),  # the second label of the last batch
    ([0, 0, 0, 0], False, NONE, {"RB"}),  # dead-man released: idle whatever the stick says
]


def test_gamepad_state_machine_on_fixture():
    js = JoystickState(LAYOUTS["xbox"])
    batches = load_batches("gamepad_xbox.hex")
    for event in parse_js_events(b"".join(batches[0]))[0]:
        js.apply(event)
    assert js.buttons[0] and not js.labels  # A held at open: no label
    gamepad_command(js)

    def feed(data: bytes) -> DeviceCommand:
        for event in parse_js_events(data)[0]:
            js.apply(event)
        return gamepad_command(js, deadzone=0.15)

    for cmd, (action, active, label, buttons) in zip(_run_gamepad_fixture(feed), GAMEPAD_EXPECTED, strict=True):
        assert_command(cmd, action, active, label, buttons)


def test_gamepad_layouts_and_roles():
    js = JoystickState(LAYOUTS["ds4"].with_roles(deadman="b5", close="b7"))
    assert js.specs["deadman"] == ("button", 5, 1.0) and js.specs["forward"] == ("axis", 1, -1.0)
    assert js.specs["success"] == ("button", 2, 1.0)  # triangle
    with pytest.raises(ValueError, match="unknown gamepad roles"):
        LAYOUTS["xbox"].with_roles(jump="b1")
    with pytest.raises(ValueError, match="bad gamepad input spec"):
        JoystickState(LAYOUTS["xbox"].with_roles(deadman="x4"))
    with pytest.raises(ValueError, match="needs an axis"):
        JoystickState(LAYOUTS["xbox"].with_roles(forward="b1"))
    with pytest.raises(ValueError, match="needs a button"):
        JoystickState(LAYOUTS["xbox"].with_roles(close="a5"))


# --------------------------------------------------------------------------- gamepad: the device


def test_gamepad_through_a_pipe():
    r, w = os.pipe()
    try:
        batches = load_batches("gamepad_xbox.hex")
        os.write(w, b"".join(batches[0]))
        pad = Gamepad(fd=r, layout="xbox", deadzone=0.15)  # reads the init events on open

        def feed(data: bytes) -> DeviceCommand:
            os.write(w, data)
            return pad.read()

        for cmd, (action, active, label, buttons) in zip(_run_gamepad_fixture(feed), GAMEPAD_EXPECTED, strict=True):
            assert_command(cmd, action, active, label, buttons)
        assert_command(pad.read(), [0, 0, 0, 0], False, NONE, {"RB"})  # nothing new, nothing pending
    finally:
        os.close(w)
        os.close(r)


def test_gamepad_split_event_and_reset():
    r, w = os.pipe()
    try:
        pad = Gamepad(fd=r)
        lb_down = struct.pack("<IhBB", 10, 1, 0x01, 4)
        y_down = struct.pack("<IhBB", 20, 1, 0x01, 3)
        os.write(w, lb_down + y_down[:5])
        assert_command(pad.read(), [0, 0, 0, 0], True, NONE, {"LB"})
        os.write(w, y_down[5:])
        assert_command(pad.read(), [0, 0, 0, 0], True, SUCCESS, {"LB", "Y"})
        os.write(w, struct.pack("<IhBB", 30, 0, 0x01, 3) + struct.pack("<IhBB", 40, 1, 0x01, 0))  # Y up, A down
        pad.reset()  # a press made before the episode began is dropped
        assert_command(pad.read(), [0, 0, 0, 0], True, NONE, {"LB", "A"})
        pad.close()
        with pytest.raises(DeviceError, match="closed"):
            pad.read()
    finally:
        os.close(w)
        os.close(r)  # the caller's descriptor: close() left it open


def test_gamepad_from_a_file_of_events(tmp_path):
    path = tmp_path / "js0"
    path.write_bytes(b"".join(r for batch in load_batches("gamepad_xbox.hex") for r in batch))
    with make_device("gamepad", path=str(path), layout="xbox") as pad:
        # everything arrived before the first read: the three label presses come out one per read
        labels = [pad.read() for _ in range(4)]
        assert [c.label for c in labels] == [SUCCESS, DISCARD, FAILURE, NONE]
        assert not any(c.active for c in labels)  # the dead-man ended released
        fd = pad._fd
    with pytest.raises(OSError):
        os.fstat(fd)  # a device it opened itself is closed


def test_gamepad_missing_and_bad_config(tmp_path):
    missing = tmp_path / "js7"
    with pytest.raises(DeviceError, match=re.escape(f"no gamepad at {missing}: plug it in") + ".*joydev") as err:
        Gamepad(path=str(missing))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown gamepad layout 'snes'; choose one of: ds4, xbox"):
        Gamepad(path=str(missing), layout="snes")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "js8"
        locked.write_bytes(b"")
        locked.chmod(0)
        with pytest.raises(DeviceError, match="permission denied.*input"):
            Gamepad(path=str(locked))


# --------------------------------------------------------------------------- keyboard


def test_parse_keys():
    keys, rest = parse_keys(b"wW \x7f\x1b[A\x1b[1;2D\x1bOB\x1b[5~\x1b[15~\x03\xc3\xa9q")
    assert keys == ["w", "W", "space", "backspace", "up", "shift-left", "down", "pageup", "ctrl-c", "q"]
    assert rest == b""
    assert parse_keys(b"w\x1b[1;") == (["w"], b"\x1b[1;")
    assert parse_keys(b"\x1b") == ([], b"\x1b")
    assert parse_keys(b"\x1bx") == (["escape", "x"], b"")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def terminal():
    master, slave = pty.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def type_keys(master: int, slave: int, data: bytes) -> None:
    """Write to the pseudo-terminal and wait until the kernel has moved the bytes to the reading side."""
    before = _pending(slave)
    os.write(master, data)
    deadline = time.monotonic() + 5.0
    while _pending(slave) < before + len(data):
        assert time.monotonic() < deadline, "the pty never delivered the bytes"
        time.sleep(0.001)


def _pending(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_keyboard_session_through_a_pty(terminal):
    master, slave = terminal
    clock = Clock()
    batches = load_batches("keyboard_session.hex")
    kb = Keyboard(fd=slave, clock=clock, hold_s=0.5, fine=0.25)
    plan = [  # (seconds since start, action, active, label, keys) for each batch of keyboard_session.hex
        (0.0, [1, 0, 0, 0], True, NONE, {"w"}),
        (0.1, [0, 0.25, 1, 0], True, NONE, {"up", "shift-left", "s", "pageup"}),  # up and s cancel
        (0.3, [0, 0, 0, 0], True, NONE, set()),  # no key for 0.2 s: still in control, not moving
        (1.0, [0.25, 0, 0, 1], True, NONE, {"c", "W"}),
        (2.0, [0, 0, 0, 0], True, SUCCESS, {"space", "y", "backspace"}),  # latched; two labels queued
        (9.0, [0, 0, 0, 0], True, DISCARD, set()),  # the latch holds control without keys
        (9.1, [0, 0, 0, 0], False, NONE, {"space"}),  # latch off; "q" is not bound
    ]
    assert len(batches) == len(plan)
    for batch, (t, action, active, label, keys) in zip(batches, plan):
        clock.t = 100.0 + t
        if batch:
            type_keys(master, slave, b"".join(batch))
        assert_command(kb.read(), action, active, label, keys)
    kb.close()


def test_keyboard_hold_window_and_terminal_restore(terminal):
    master, slave = terminal
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ECHO and before[3] & termios.ICANON
    clock = Clock()
    with Keyboard(fd=slave, clock=clock, hold_s=0.5, speed=0.6, yaw_deg=90.0) as kb:
        mode = termios.tcgetattr(slave)
        assert not mode[3] & termios.ECHO and not mode[3] & termios.ICANON and mode[3] & termios.ISIG
        type_keys(master, slave, b"w")
        assert_command(kb.read(), [0, 0.6, 0, 0], True)  # facing +y: forward is the base's +y
        clock.t += 0.49
        assert_command(kb.read(), [0, 0, 0, 0], True)
        clock.t += 0.02
        assert_command(kb.read(), [0, 0, 0, 0], False)  # no key for more than hold_s
        type_keys(master, slave, b"\x1b[")  # an arrow split across two reads
        assert_command(kb.read(), [0, 0, 0, 0], False)
        type_keys(master, slave, b"A")
        assert_command(kb.read(), [0, 0.6, 0, 0], True, buttons={"up"})
        type_keys(master, slave, b"\x1b")  # a lone Esc is dropped after one read without a follow-up ...
        kb.read()
        kb.read()
        type_keys(master, slave, b"[A")  # ... so later keys do not join it into an arrow: "[" and Shift+a
        assert_command(kb.read(), [-0.6 * 0.25, 0, 0, 0], True, buttons={"A"})
        type_keys(master, slave, b"d")
        assert_command(kb.read(), [0.6, 0, 0, 0], True, buttons={"d"})
        type_keys(master, slave, b"yn")
        assert kb.read().label == SUCCESS  # FAILURE waits for the next read ...
        type_keys(master, slave, b"yw")
        kb.reset()  # ... but reset drops it, and the keys typed before the episode began
        assert_command(kb.read(), [0, 0, 0, 0], False, NONE)
    assert termios.tcgetattr(slave) == before
    with pytest.raises(DeviceError, match="closed"):
        kb.read()


def test_keyboard_key_overrides():
    master, slave = pty.openpty()
    try:
        kb = Keyboard(fd=slave, keys={"discard": ["x", "backspace"], "toggle": "t"})
        type_keys(master, slave, b"x t")
        cmd = kb.read()
        assert cmd.label == DISCARD and cmd.active and kb.latched
        kb.close()
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(ValueError, match="bound to both"):
        Keyboard(fd=0, keys={"close": "o"})
    with pytest.raises(ValueError, match="unknown keyboard roles"):
        Keyboard(fd=0, keys={"jump": "j"})


def test_keyboard_needs_a_terminal():
    r, w = os.pipe()
    try:
        with pytest.raises(DeviceError, match=f"file descriptor {r} is not a TTY") as err:
            Keyboard(fd=r)
        assert "\n" not in str(err.value)
    finally:
        os.close(r)
        os.close(w)


# --------------------------------------------------------------------------- make_device


def test_make_device_names_and_errors(tmp_path, monkeypatch):
    assert {"spacemouse", "gamepad", "keyboard"} <= set(DEVICES)
    with pytest.raises(
        ValueError, match="unknown teleop device 'wiimote'; choose one of: gamepad, keyboard, ros, spacemouse"
    ):
        make_device("wiimote")
    with pytest.raises(ValueError, match=r"bad config for teleop device 'gamepad'.*its keys: path, layout"):
        make_device("gamepad", port="/dev/input/js0")
    with pytest.raises(DeviceError, match="no gamepad at"):
        make_device("gamepad", path=str(tmp_path / "js0"))
    r, w = os.pipe()
    try:
        with pytest.raises(DeviceError, match="not a TTY"):
            make_device("keyboard", fd=r)
    finally:
        os.close(r)
        os.close(w)
    monkeypatch.setitem(sys.modules, "hid", None)
    with pytest.raises(DeviceError, match="pip install hidapi"):
        make_device("spacemouse", deadzone=0.2)


def test_make_device_registry_takes_new_devices(monkeypatch):
    class Operator(TeleopDevice):
        def __init__(self, gain: float = 1.0) -> None:
            self.gain = gain

        def read(self) -> DeviceCommand:
            return DeviceCommand(np.full(4, self.gain, np.float32), active=True)

    monkeypatch.setitem(DEVICES, "sim_operator", Operator)
    dev = make_device("sim_operator", gain=0.5)
    assert isinstance(dev, Operator) and dev.read().action[0] == 0.5
    with pytest.raises(ValueError, match="choose one of: gamepad, keyboard, ros, sim_operator, spacemouse"):
        make_device("nope")
