"""A gamepad with a dead-man button, read through the Linux joystick API (/dev/input/jsN).

The kernel's joydev driver turns any pad into a stream of 8-byte events (linux/joystick.h):
`struct js_event { __u32 time; /* ms */ __s16 value; __u8 type; __u8 number; }` in the host's byte
order (read here as little-endian: x86 and ARM). type 0x01 = button (value 0/1), 0x02 = axis
(value -32767..32767; sticks: up / left negative; triggers: -32767 released .. +32767 pulled), or'ed
with 0x80 for the synthetic events the driver sends on open to report the initial state.

Roles map to inputs by a small spec: "b4" = button 4; "a5+" / "a0-" = axis 5 (0) beyond +0.5 (-0.5)
of full scale, used as a button (a trigger, -1 released .. +1 pulled, counts from 3/4 pull); "-a1" /
"a3" = an analog axis, optionally negated. Layouts (joydev numbering: buttons and axes in evdev code
order, which gives the same indices for xpad and for hid-sony (kernel >= 4.10) / hid-playstation):

    role      xbox (xpad)   ds4 (DualShock 4)   effect
    deadman   LB      b4    L1        b4        hold: the person has control (`active`)
    forward   left stick up / down      -a1     TCP +x / -x
    left      left stick left / right   -a0     TCP +y / -y
    up        right stick up / down     -a4     TCP +z / -z
    close     RT      a5+   R2        a5+       close the gripper
    open      RB      b5    R1        b5        open the gripper
    success   Y       b3    triangle  b2        episode labels: reported once per press,
    failure   A       b0    cross     b0        with or without the dead-man
    discard   X       b2    square    b3

Without the dead-man the command is idle (zero action, not active), whatever the sticks say.
"""

from __future__ import annotations

import errno
import os
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from robot_rl.data.schema import EpisodeLabel
from robot_rl.teleop.common import DeviceError, apply_deadzone, gripper_command, make_action, operator_to_base
from robot_rl.teleop.device import DeviceCommand, TeleopDevice

JS_EVENT = struct.Struct("<IhBB")  # time_ms, value, type, number
JS_EVENT_BUTTON, JS_EVENT_AXIS, JS_EVENT_INIT = 0x01, 0x02, 0x80
AXIS_MAX = 32767.0
DIGITAL_THRESHOLD = 0.5  # an axis used as a button is pressed beyond half deflection

MOTION_ROLES = ("forward", "left", "up")
BUTTON_ROLES = ("deadman", "close", "open", "success", "failure", "discard")
LABEL_ROLES = {"success": EpisodeLabel.SUCCESS, "failure": EpisodeLabel.FAILURE, "discard": EpisodeLabel.DISCARD}

_XBOX_NAMES = ("A", "B", "X", "Y", "LB", "RB", "back", "start", "guide", "LS", "RS")
_DS4_NAMES = ("cross", "circle", "triangle", "square", "L1", "R1", "L2", "R2", "share", "options", "PS", "L3", "R3")


@dataclass(frozen=True)
class GamepadLayout:
    """Which button / axis plays which role (specs as in the module docstring) and the buttons' names."""

    name: str
    roles: Mapping[str, str]
    button_names: tuple[str, ...] = ()
    trigger_names: Mapping[int, str] | None = None  # axis -> name, shown in `buttons` while pulled past half

    def with_roles(self, **overrides: str) -> GamepadLayout:
        """A copy with some roles remapped, e.g. with_roles(deadman="b5")."""
        unknown = set(overrides) - set(MOTION_ROLES) - set(BUTTON_ROLES)
        if unknown:
            raise ValueError(f"unknown gamepad roles {sorted(unknown)}; roles: {MOTION_ROLES + BUTTON_ROLES}")
        return GamepadLayout(self.name, {**self.roles, **overrides}, self.button_names, self.trigger_names)


LAYOUTS: dict[str, GamepadLayout] = {
    "xbox": GamepadLayout(
        "xbox",
        {
            "forward": "-a1",
            "left": "-a0",
            "up": "-a4",
            "deadman": "b4",
            "close": "a5+",
            "open": "b5",
            "success": "b3",
            "failure": "b0",
            "discard": "b2",
        },
        _XBOX_NAMES,
        {2: "LT", 5: "RT"},
    ),
    "ds4": GamepadLayout(
        "ds4",
        {
            "forward": "-a1",
            "left": "-a0",
            "up": "-a4",
            "deadman": "b4",
            "close": "a5+",
            "open": "b5",
            "success": "b2",
            "failure": "b0",
            "discard": "b3",
        },
        _DS4_NAMES,
        {2: "L2", 5: "R2"},
    ),
}


@dataclass(frozen=True)
class JsEvent:
    """One Linux joystick event."""

    time_ms: int
    value: int
    type: int
    number: int

    @property
    def is_init(self) -> bool:
        return bool(self.type & JS_EVENT_INIT)

    @property
    def kind(self) -> int:
        """JS_EVENT_BUTTON or JS_EVENT_AXIS (the init flag removed)."""
        return self.type & ~JS_EVENT_INIT


def parse_js_events(data: bytes) -> tuple[list[JsEvent], bytes]:
    """Whole 8-byte events in `data`, and the bytes of a trailing partial event (to prepend next time)."""
    n = len(data) // JS_EVENT.size * JS_EVENT.size
    events = [JsEvent(*fields) for fields in JS_EVENT.iter_unpack(data[:n])]
    return events, data[n:]


def _parse_spec(spec: str) -> tuple[str, int, float]:
    """("button" | "axis" | "digital_axis", index, sign)."""
    s = spec.strip()
    try:
        if s.startswith("b"):
            return "button", int(s[1:]), 1.0
        if s.startswith("a") and s[-1] in "+-":
            return "digital_axis", int(s[1:-1]), 1.0 if s[-1] == "+" else -1.0
        if s.startswith("-a"):
            return "axis", int(s[2:]), -1.0
        if s.startswith("a"):
            return "axis", int(s[1:]), 1.0
    except ValueError:
        pass
    raise ValueError(f"bad gamepad input spec {spec!r}: use 'b<n>', 'a<n>+', 'a<n>-', 'a<n>' or '-a<n>'")


class JoystickState:
    """Buttons and axes of a joystick as its events arrive, plus what each role saw since the last take()."""

    def __init__(self, layout: GamepadLayout) -> None:
        self.layout = layout
        self.specs = {role: _parse_spec(spec) for role, spec in layout.roles.items()}
        for role, (kind, _, _) in self.specs.items():
            if (role in MOTION_ROLES) != (kind == "axis"):
                raise ValueError(
                    f"gamepad role {role!r} needs {'an axis' if role in MOTION_ROLES else 'a button'}"
                    f" spec, got {layout.roles[role]!r}"
                )
        self.buttons: dict[int, bool] = {}
        self.axes: dict[int, int] = {}
        self.pressed = {role: False for role in self.specs if role in BUTTON_ROLES}
        self.seen = dict(self.pressed)  # pressed after any event since the last take_seen()
        self.labels: deque[EpisodeLabel] = deque()  # label presses (edges) not yet reported

    def axis(self, number: int) -> float:
        return max(-1.0, min(1.0, self.axes.get(number, 0) / AXIS_MAX))

    def role_value(self, role: str) -> float:
        """An analog role in [-1, 1]; 0 when the role is unmapped."""
        if role not in self.specs:
            return 0.0
        _, number, sign = self.specs[role]
        return sign * self.axis(number)

    def _is_pressed(self, role: str) -> bool:
        kind, number, sign = self.specs[role]
        if kind == "button":
            return self.buttons.get(number, False)
        return sign * self.axis(number) > DIGITAL_THRESHOLD

    def apply(self, event: JsEvent) -> None:
        """Update from one event; a label role going from released to pressed (not at init) is queued."""
        if event.kind == JS_EVENT_BUTTON:
            self.buttons[event.number] = event.value != 0
        elif event.kind == JS_EVENT_AXIS:
            self.axes[event.number] = event.value
        else:
            return
        for role, was in self.pressed.items():
            now = self._is_pressed(role)
            if now and not was and not event.is_init and role in LABEL_ROLES:
                self.labels.append(LABEL_ROLES[role])
            self.pressed[role] = now
            self.seen[role] = self.seen[role] or now

    def take_seen(self) -> dict[str, bool]:
        """Roles pressed now or after any event since the last call (a click between two reads counts)."""
        seen = {role: self.seen[role] or now for role, now in self.pressed.items()}
        self.seen = {role: False for role in self.pressed}
        return seen

    def held_names(self) -> frozenset[str]:
        names = self.layout.button_names
        held = {names[n] if n < len(names) else f"button{n}" for n, down in self.buttons.items() if down}
        for axis, name in (self.layout.trigger_names or {}).items():
            if self.axis(axis) > DIGITAL_THRESHOLD:
                held.add(name)
        return frozenset(held)


def gamepad_command(
    js: JoystickState, deadzone: float = 0.15, speed: float = 1.0, yaw_deg: float = 0.0
) -> DeviceCommand:
    """The command for the current state; consumes one queued label and the window of seen presses."""
    seen = js.take_seen()
    label = js.labels.popleft() if js.labels else EpisodeLabel.NONE
    names = js.held_names()
    if not js.pressed.get("deadman", False):
        return DeviceCommand(np.zeros(4, np.float32), label=label, buttons=names)
    motion = apply_deadzone(np.array([js.role_value(r) for r in MOTION_ROLES]), deadzone)
    gripper = gripper_command(seen.get("close", False), seen.get("open", False))
    action = make_action(operator_to_base(speed * motion, yaw_deg), gripper)
    return DeviceCommand(action, active=True, label=label, buttons=names)


class Gamepad(TeleopDevice):
    """A gamepad on the Linux joystick API; each read drains every pending event without blocking.

    path: the joystick device (/dev/input/js0); fd: an already-open descriptor to read instead (the
    caller keeps it; used for tests and pipes). layout: "xbox" or "ds4" (or a GamepadLayout);
    roles: overrides of the layout's role specs, e.g. {"deadman": "b5"}. deadzone: stick fraction
    ignored around rest; speed: multiplies the motion; yaw_deg: the operator's facing direction.
    """

    def __init__(
        self,
        path: str = "/dev/input/js0",
        layout: str | GamepadLayout = "xbox",
        roles: Mapping[str, str] | None = None,
        deadzone: float = 0.15,
        speed: float = 1.0,
        yaw_deg: float = 0.0,
        fd: int | None = None,
    ) -> None:
        if isinstance(layout, str):
            if layout not in LAYOUTS:
                raise ValueError(f"unknown gamepad layout {layout!r}; choose one of: {', '.join(sorted(LAYOUTS))}")
            layout = LAYOUTS[layout]
        if roles:
            layout = layout.with_roles(**roles)
        if not 0.0 <= deadzone < 1.0:
            raise ValueError(f"gamepad deadzone must be in [0, 1), got {deadzone}")
        self.js = JoystickState(layout)
        self.deadzone, self.speed, self.yaw_deg = deadzone, speed, yaw_deg
        self.path = path if fd is None else f"fd {fd}"
        self._owns_fd = fd is None
        if fd is None:
            fd = _open_joystick(path)
        else:
            os.set_blocking(fd, False)
        self._fd: int | None = fd
        self._buf = b""
        self._drain()  # the driver's init events: the pad's state when opened

    def _drain(self) -> None:
        chunks = [self._buf]
        while True:
            try:
                chunk = os.read(self._fd, 64 * JS_EVENT.size)
            except BlockingIOError:
                break
            except OSError as e:
                raise DeviceError(
                    f"gamepad at {self.path} stopped answering ({e.strerror}): was it unplugged? "
                    "Plug it back in and restart teleop"
                ) from e
            if not chunk:  # end of a file or a pipe whose writer is gone: nothing more for now
                break
            chunks.append(chunk)
        events, self._buf = parse_js_events(b"".join(chunks))
        for event in events:
            self.js.apply(event)

    def read(self) -> DeviceCommand:
        if self._fd is None:
            raise DeviceError(f"gamepad at {self.path} is closed")
        self._drain()
        return gamepad_command(self.js, self.deadzone, self.speed, self.yaw_deg)

    def reset(self) -> None:
        """Apply pending events and drop label presses and clicks made before the episode began."""
        if self._fd is not None:
            self._drain()
        self.js.labels.clear()
        self.js.take_seen()

    def close(self) -> None:
        if self._fd is not None and self._owns_fd:
            os.close(self._fd)
        self._fd = None


def _open_joystick(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise DeviceError(
            f"no gamepad at {path}: plug it in, check `ls /dev/input/js*` (load the joydev module: "
            "sudo modprobe joydev) and pass path=/dev/input/jsN"
        ) from e
    except PermissionError as e:
        raise DeviceError(
            f"cannot open the gamepad at {path} (permission denied): add your user to the "
            "'input' group (sudo usermod -aG input $USER, then log in again)"
        ) from e
    except OSError as e:
        if e.errno in (errno.ENODEV, errno.ENXIO):
            raise DeviceError(f"no gamepad at {path} ({e.strerror}): plug it in and pass path=/dev/input/jsN") from e
        raise DeviceError(f"cannot open the gamepad at {path}: {e}") from e
