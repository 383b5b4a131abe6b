"""3Dconnexion SpaceMouse over hidapi: raw HID report parsing and the teleop device.

Raw HID input reports (first byte = report id, values little-endian int16, about ±350 at full
deflection; HID frame: +x right, +y towards the user, +z down):

- report 1, 6 bytes: translation (x, y, z), older wired devices (SpaceNavigator, SpaceMouse Pro,
  Compact); their rotation (rx, ry, rz) comes separately in report 2, 6 bytes.
- report 1, 12 bytes: translation then rotation in one report (SpaceMouse Wireless, Pro Wireless,
  Enterprise, the Universal Receiver).
- report 3: the buttons as a little-endian bitmask (bit 0 = left, bit 1 = right on two-button models).
- anything else (battery level, LED, ...) is ignored.

Mapping to the action: the puck's translation in the operator's frame (forward = away from the user,
left, up) drives the TCP delta, rotated by `yaw_deg` into the robot base frame; the left button closes
the gripper, the right one opens it. Rotation is parsed and kept in the state but not used by the
4-D action. The device is active while the puck is deflected beyond the deadzone on any of its six
axes or a button is held (SERL's convention: touching the device takes control).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from robot_rl.teleop.common import DeviceError, apply_deadzone, gripper_command, make_action, operator_to_base
from robot_rl.teleop.device import DeviceCommand, TeleopDevice

VENDOR_IDS = (0x046D, 0x256F)  # Logitech (older 3Dconnexion devices), 3Dconnexion
PRODUCTS: dict[tuple[int, int], str] = {
    (0x046D, 0xC603): "SpaceMouse Plus XT USB",
    (0x046D, 0xC605): "CADman",
    (0x046D, 0xC606): "SpaceMouse Classic USB",
    (0x046D, 0xC621): "SpaceBall 5000 USB",
    (0x046D, 0xC623): "SpaceTraveler",
    (0x046D, 0xC625): "SpacePilot",
    (0x046D, 0xC626): "SpaceNavigator",
    (0x046D, 0xC627): "SpaceExplorer",
    (0x046D, 0xC628): "SpaceNavigator for Notebooks",
    (0x046D, 0xC629): "SpacePilot Pro",
    (0x046D, 0xC62B): "SpaceMouse Pro",
    (0x256F, 0xC62E): "SpaceMouse Wireless (cable)",
    (0x256F, 0xC62F): "SpaceMouse Wireless (receiver)",
    (0x256F, 0xC631): "SpaceMouse Pro Wireless (cable)",
    (0x256F, 0xC632): "SpaceMouse Pro Wireless (receiver)",
    (0x256F, 0xC633): "SpaceMouse Enterprise",
    (0x256F, 0xC635): "SpaceMouse Compact",
    (0x256F, 0xC636): "SpaceMouse Module",
    (0x256F, 0xC638): "SpaceMouse Pro Wireless (Bluetooth)",
    (0x256F, 0xC63A): "SpaceMouse Wireless",
    (0x256F, 0xC641): "SpaceMouse USB",
    (0x256F, 0xC652): "3Dconnexion Universal Receiver",
}
FULL_SCALE = 350.0  # raw counts at (about) full deflection
LEFT, RIGHT = 0x1, 0x2  # button bits
MAX_REPORTS_PER_READ = 4096  # a bound on one drain, far above what ~8 ms reports can queue up

_AXES = struct.Struct("<3h")
_UDEV_HINT = (
    "check /dev/hidraw* permissions (a udev rule such as "
    'KERNEL=="hidraw*", ATTRS{idVendor}=="256f", MODE="0666") and that no other program '
    "(spacenavd, 3DxWare) holds it"
)


@dataclass(frozen=True)
class SpaceMouseState:
    """The device's latest raw values, in HID counts and the HID frame (+x right, +y to the user, +z down)."""

    translation: tuple[int, int, int] = (0, 0, 0)
    rotation: tuple[int, int, int] = (0, 0, 0)
    buttons: int = 0  # bitmask


def parse_report(report: bytes | Sequence[int], state: SpaceMouseState) -> SpaceMouseState:
    """The state after one raw HID input report (report id first); unknown reports leave it unchanged."""
    data = bytes(report)
    if not data:
        return state
    rid, payload = data[0], data[1:]
    if rid == 1 and len(payload) >= 12:
        return replace(state, translation=_AXES.unpack_from(payload, 0), rotation=_AXES.unpack_from(payload, 6))
    if rid == 1 and len(payload) >= 6:
        return replace(state, translation=_AXES.unpack_from(payload, 0))
    if rid == 2 and len(payload) >= 6:
        return replace(state, rotation=_AXES.unpack_from(payload, 0))
    if rid == 3 and payload:
        return replace(state, buttons=int.from_bytes(payload, "little"))
    return state


def parse_reports(
    reports: Sequence[bytes | Sequence[int]], state: SpaceMouseState | None = None
) -> tuple[SpaceMouseState, int]:
    """Apply reports in order: (final state, buttons held at the end or at any report in between, so
    that a click shorter than one control step is not lost)."""
    state = state if state is not None else SpaceMouseState()
    seen = 0
    for report in reports:
        state = parse_report(report, state)
        seen |= state.buttons
    return state, seen | state.buttons


def spacemouse_axes(
    state: SpaceMouseState, full_scale: float = FULL_SCALE, deadzone: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """(translation as (forward, left, up), rotation as raw-order (rx, ry, rz)), each clipped to [-1, 1]
    and zero within the deadzone."""
    tx, ty, tz = state.translation
    translation = np.array([-ty, -tx, -tz], np.float64) / full_scale
    rotation = np.array(state.rotation, np.float64) / full_scale
    return apply_deadzone(translation, deadzone), apply_deadzone(rotation, deadzone)


def button_names(mask: int) -> frozenset[str]:
    """ "left", "right", then "button<i>" for higher bits."""
    names = {0: "left", 1: "right"}
    return frozenset(names.get(i, f"button{i}") for i in range(mask.bit_length()) if mask >> i & 1)


def spacemouse_command(
    state: SpaceMouseState,
    buttons_seen: int = 0,
    *,
    full_scale: float = FULL_SCALE,
    deadzone: float = 0.1,
    speed: float = 1.0,
    yaw_deg: float = 0.0,
) -> DeviceCommand:
    """The teleop command for a state; `buttons_seen` adds buttons clicked since the last read."""
    buttons = state.buttons | buttons_seen
    translation, rotation = spacemouse_axes(state, full_scale, deadzone)
    active = bool(np.any(translation) or np.any(rotation) or buttons)
    if not active:
        return DeviceCommand(np.zeros(4, np.float32))
    motion = operator_to_base(speed * translation, yaw_deg)
    action = make_action(motion, gripper_command(bool(buttons & LEFT), bool(buttons & RIGHT)))
    return DeviceCommand(action, active=True, buttons=button_names(buttons))


def import_hid():
    """The `hid` module of the hidapi package, or a DeviceError saying how to install it."""
    try:
        import hid  # noqa: PLC0415 (optional dependency, imported on use)
    except ImportError as e:
        raise DeviceError(
            "hidapi is not installed (needed by the SpaceMouse): pip install hidapi (or pip install 'robot_rl[teleop]')"
        ) from e
    if not hasattr(hid, "device") or not hasattr(hid, "enumerate"):
        raise DeviceError(
            "the installed 'hid' module is not hidapi's (another package of that name?): "
            "pip uninstall hid && pip install hidapi"
        )
    return hid


def is_spacemouse(info: dict) -> bool:
    """Whether a hid.enumerate() entry is a 3Dconnexion 6-DoF device."""
    key = (info.get("vendor_id"), info.get("product_id"))
    if key in PRODUCTS:
        return True
    # newer 3Dconnexion products not in the table: its own vendor id and HID usage "multi-axis controller"
    return key[0] == 0x256F and info.get("usage_page") == 0x01 and info.get("usage") == 0x08


def find_spacemouse(
    devices: Sequence[dict], vendor_id: int | None = None, product_id: int | None = None
) -> dict | None:
    """The hid.enumerate() entry to open: a known (or the requested) device, preferring the interface
    whose usage is the multi-axis controller (receivers expose several)."""
    if vendor_id is not None or product_id is not None:
        found = [
            d
            for d in devices
            if (vendor_id is None or d.get("vendor_id") == vendor_id)
            and (product_id is None or d.get("product_id") == product_id)
        ]
    else:
        found = [d for d in devices if is_spacemouse(d)]
    if not found:
        return None
    found.sort(
        key=lambda d: (not (d.get("usage_page") == 0x01 and d.get("usage") == 0x08), d.get("interface_number", 0) or 0)
    )
    return found[0]


class SpaceMouse(TeleopDevice):
    """A 3Dconnexion SpaceMouse read through hidapi (non-blocking; each read drains every pending report).

    path: a hidapi device path (from hid.enumerate()) to open that device; otherwise the first known
    3Dconnexion device, or the one matching vendor_id/product_id. full_scale: raw counts that map to 1;
    deadzone: fraction of full scale ignored around rest; speed: multiplies the translation; yaw_deg:
    the operator's facing direction from the robot base +x (see common.operator_to_base).
    """

    def __init__(
        self,
        path: bytes | str | None = None,
        vendor_id: int | None = None,
        product_id: int | None = None,
        full_scale: float = FULL_SCALE,
        deadzone: float = 0.1,
        speed: float = 1.0,
        yaw_deg: float = 0.0,
    ) -> None:
        if not 0.0 <= deadzone < 1.0:
            raise ValueError(f"SpaceMouse deadzone must be in [0, 1), got {deadzone}")
        hid = import_hid()
        if path is None:
            info = find_spacemouse(hid.enumerate(), vendor_id, product_id)
            if info is None:
                wanted = (
                    "a 3Dconnexion device"
                    if vendor_id is None and product_id is None
                    else f"vendor_id={vendor_id!r} product_id={product_id!r}"
                )
                raise DeviceError(f"no SpaceMouse found (hidapi sees no {wanted}): plug it in and {_UDEV_HINT}")
            path = info["path"]
            self.name = PRODUCTS.get(
                (info.get("vendor_id"), info.get("product_id")), info.get("product_string") or "3Dconnexion device"
            )
        else:
            self.name = "SpaceMouse"
        self.path = path.encode() if isinstance(path, str) else path
        dev = hid.device()
        try:
            dev.open_path(self.path)
            dev.set_nonblocking(1)
        except OSError as e:
            raise DeviceError(f"found {self.name} at {self.path!r} but could not open it ({e}): {_UDEV_HINT}") from e
        self._dev = dev
        self.full_scale, self.deadzone, self.speed, self.yaw_deg = full_scale, deadzone, speed, yaw_deg
        self.state = SpaceMouseState()

    def _drain(self) -> list[bytes]:
        reports = []
        for _ in range(MAX_REPORTS_PER_READ):
            try:
                data = self._dev.read(64)
            except (OSError, ValueError) as e:  # hidapi raises these once the device is gone
                raise DeviceError(
                    f"{self.name} stopped answering ({e}): was it unplugged? Plug it back in and restart teleop"
                ) from e
            if not data:
                break
            reports.append(bytes(data))
        return reports

    def read(self) -> DeviceCommand:
        """Drain every pending report, then the command for the latest state (clicks in between count)."""
        if self._dev is None:
            raise DeviceError(f"{self.name} is closed")
        self.state, seen = parse_reports(self._drain(), self.state)
        return spacemouse_command(
            self.state, seen, full_scale=self.full_scale, deadzone=self.deadzone, speed=self.speed, yaw_deg=self.yaw_deg
        )

    def reset(self) -> None:
        """Drop reports queued before the episode began (the latest state is kept: the puck may be held)."""
        if self._dev is not None:
            self.state, _ = parse_reports(self._drain(), self.state)

    def close(self) -> None:
        if self._dev is not None:
            self._dev.close()
            self._dev = None
