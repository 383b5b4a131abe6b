"""Terminal keyboard teleop: keys read from a TTY (stdin by default) in cbreak mode, without blocking.

A terminal sends bytes when a key goes down and repeats them while it is held (after the repeat delay,
typically 250-660 ms), but never says when a key goes up. So:

- motion: a motion key received since the last read moves the TCP this step (a unit step on its
  axis, `fine` times that with Shift); opposite keys in one read cancel. Holding a key streams motion
  once the terminal's key repeat starts.
- active: while motion / gripper keys keep arriving within `hold_s` (0.5 s by default, longer than
  the usual repeat delay, so control is not handed back to the policy between the first press and the
  repeats), or while the control latch is on (Space toggles it: the robot holds still under the
  person's control until they press Space again). Inactive reads return a zero action.
- the gripper keys send close / open on the step they arrive (then "keep").
- episode labels are reported once per key press, active or not.

Default keys (override with keys={"role": "key" or ["key", ...]}):

    forward / back   w / s, Up / Down          TCP +x / -x
    left / right     a / d, Left / Right       TCP +y / -y
    raise / lower    r / f, PageUp / PageDown  TCP +z / -z
    close / open     c / o                     gripper
    toggle           Space                     latch control on / off
    success          y                         episode labels
    failure          n
    discard          Backspace

The terminal is put in cbreak mode (no echo, no line buffering; Ctrl-C still interrupts) and restored
on close() or at interpreter exit. Reads poll with select() instead of setting O_NONBLOCK, which
would also make stdout non-blocking when both share the terminal. The device prints nothing.
"""

from __future__ import annotations

import atexit
import errno
import os
import select
import sys
import termios
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from robot_rl.data.schema import EpisodeLabel
from robot_rl.teleop.common import DeviceError, gripper_command, make_action, operator_to_base
from robot_rl.teleop.device import DeviceCommand, TeleopDevice

DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "forward": ("w", "up"),
    "back": ("s", "down"),
    "left": ("a", "left"),
    "right": ("d", "right"),
    "raise": ("r", "pageup"),
    "lower": ("f", "pagedown"),
    "close": ("c",),
    "open": ("o",),
    "toggle": ("space",),
    "success": ("y",),
    "failure": ("n",),
    "discard": ("backspace",),
}
MOTION_ROLES = {
    "forward": (0, 1.0),
    "back": (0, -1.0),
    "left": (1, 1.0),
    "right": (1, -1.0),
    "raise": (2, 1.0),
    "lower": (2, -1.0),
}
LABEL_ROLES = {"success": EpisodeLabel.SUCCESS, "failure": EpisodeLabel.FAILURE, "discard": EpisodeLabel.DISCARD}

_SINGLE = {0x20: "space", 0x7F: "backspace", 0x08: "backspace", 0x0D: "enter", 0x0A: "enter", 0x09: "tab"}
_CSI_FINAL = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end"}
_CSI_TILDE = {"1": "home", "2": "insert", "3": "delete", "4": "end", "5": "pageup", "6": "pagedown"}


def _escape_key(params: str, final: str) -> str | None:
    """The key of a CSI / SS3 sequence (ESC [ params final, ESC O final); "shift-" when Shift is held."""
    parts = params.split(";")
    if final == "~":
        name = _CSI_TILDE.get(parts[0])
    else:
        name = _CSI_FINAL.get(final)
    if name is None:
        return None
    modifier = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1
    return f"shift-{name}" if (modifier - 1) & 1 else name


def parse_keys(data: bytes) -> tuple[list[str], bytes]:
    """Key names in terminal input bytes, and a trailing incomplete escape sequence (to prepend next time).

    Printable ASCII keys are the character itself ("w", "W"); special keys are named ("space", "up",
    "shift-up", "pageup", "backspace", "enter", "escape", "ctrl-x"); unknown sequences and non-ASCII
    bytes are skipped.
    """
    keys: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            if i + 1 == n:
                return keys, data[i:]
            if data[i + 1] in b"[O":
                j = i + 2
                while j < n and not 0x40 <= data[j] <= 0x7E:
                    j += 1
                if j == n:
                    return keys, data[i:]
                key = _escape_key(data[i + 2 : j].decode("ascii", "replace"), chr(data[j]))
                if key is not None:
                    keys.append(key)
                i = j + 1
                continue
            keys.append("escape")
        elif b in _SINGLE:
            keys.append(_SINGLE[b])
        elif 0x20 < b < 0x7F:
            keys.append(chr(b))
        elif b < 0x20:
            keys.append(f"ctrl-{chr(b + 0x60)}")
        i += 1
    return keys, b""


class Keyboard(TeleopDevice):
    """Keyboard teleop on a terminal (see the module docstring for the rules and the keys).

    fd: the terminal to read (stdin by default; the caller keeps it open). hold_s: how long control
    stays active after the last motion / gripper key; speed: the motion magnitude; fine: the Shift
    factor; yaw_deg: the operator's facing direction; keys: role -> key(s) overrides; clock: seconds.
    """

    def __init__(
        self,
        fd: int | None = None,
        hold_s: float = 0.5,
        speed: float = 1.0,
        fine: float = 0.25,
        yaw_deg: float = 0.0,
        keys: Mapping[str, str | Sequence[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._roles = _key_roles(keys or {})
        if fd is None:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError):  # no stdin, or one replaced by a file-like object
                raise DeviceError(
                    "keyboard teleop needs a terminal (TTY), and this process's stdin is none: "
                    "run it in an interactive terminal or use the gamepad / SpaceMouse"
                ) from None
        if not os.isatty(fd):
            raise DeviceError(
                f"keyboard teleop needs a terminal, but file descriptor {fd} is not a TTY: run it in "
                "an interactive terminal (not under nohup, a pipe or a service) or use the "
                "gamepad / SpaceMouse"
            )
        self.fd = fd
        self.hold_s, self.speed, self.fine, self.yaw_deg, self.clock = hold_s, speed, fine, yaw_deg, clock
        self.latched = False
        self._last_control = -float("inf")
        self._pending = b""
        self._labels: deque[EpisodeLabel] = deque()
        self._saved = termios.tcgetattr(fd)
        mode = termios.tcgetattr(fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        self._closed = False
        atexit.register(self.close)

    def _read_available(self) -> bytes:
        chunks = []
        while select.select([self.fd], [], [], 0)[0] and len(chunks) < 64:
            try:
                chunk = os.read(self.fd, 1024)
            except OSError as e:
                if e.errno == errno.EIO:
                    raise DeviceError("the keyboard's terminal was closed: restart teleop in a terminal") from e
                raise
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _role(self, key: str) -> tuple[str | None, float]:
        """(role, motion scale) for a key; Shift (an upper-case letter or a shift- key) means fine motion."""
        if key in self._roles:
            return self._roles[key], 1.0
        if key.startswith("shift-") and key[6:] in self._roles:
            return self._roles[key[6:]], self.fine
        if len(key) == 1 and key.isupper() and key.lower() in self._roles:
            return self._roles[key.lower()], self.fine
        return None, 1.0

    def read(self) -> DeviceCommand:
        if self._closed:
            raise DeviceError("the keyboard device is closed")
        now = self.clock()
        data = self._read_available()
        if not data and self._pending:  # an escape sequence that never completed (a lone Esc): drop it
            self._pending = b""
        keys, self._pending = parse_keys(self._pending + data)
        positive, negative = np.zeros(3), np.zeros(3)
        close = open_ = control = False
        names = set()
        for key in keys:
            role, scale = self._role(key)
            if role is None:
                continue
            names.add(key)
            if role in MOTION_ROLES:
                axis, sign = MOTION_ROLES[role]
                side = positive if sign > 0 else negative
                side[axis] = max(side[axis], scale)
                control = True
            elif role in ("close", "open"):
                close, open_ = close or role == "close", open_ or role == "open"
                control = True
            elif role == "toggle":
                self.latched = not self.latched
                if not self.latched:
                    self._last_control = -float("inf")
            elif role in LABEL_ROLES:
                self._labels.append(LABEL_ROLES[role])
        if control:
            self._last_control = now
        label = self._labels.popleft() if self._labels else EpisodeLabel.NONE
        active = self.latched or now - self._last_control < self.hold_s
        if not active:
            return DeviceCommand(np.zeros(4, np.float32), label=label, buttons=frozenset(names))
        motion = operator_to_base(self.speed * (positive - negative), self.yaw_deg)
        action = make_action(motion, gripper_command(close, open_))
        return DeviceCommand(action, active=True, label=label, buttons=frozenset(names))

    def reset(self) -> None:
        """Drop keys typed before the episode began (the control latch is kept)."""
        if not self._closed:
            self._read_available()
        self._pending = b""
        self._labels.clear()
        self._last_control = -float("inf")

    def close(self) -> None:
        """Restore the terminal as it was."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        except (termios.error, OSError):  # the terminal is already gone
            pass


def _key_roles(overrides: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    """key name -> role, from DEFAULT_KEYS with per-role overrides; a key may play one role only."""
    unknown = set(overrides) - set(DEFAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown keyboard roles {sorted(unknown)}; roles: {', '.join(DEFAULT_KEYS)}")
    table: dict[str, str] = {}
    for role, default in DEFAULT_KEYS.items():
        keys = overrides.get(role, default)
        for key in [keys] if isinstance(keys, str) else keys:
            if key in table:
                raise ValueError(f"keyboard key {key!r} is bound to both {table[key]!r} and {role!r}")
            table[key] = role
    return table
