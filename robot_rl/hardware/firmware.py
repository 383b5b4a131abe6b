"""`FirmwareClient`: the firmware's commands over a `SerialLink`, refusals as typed one-line errors.

Thin on purpose: each method is one request; what the firmware enforces (limits, arming, the
watchdog, the e-stop latch) stays in the firmware.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from robot_rl.config import UserError
from robot_rl.hardware import protocol as P
from robot_rl.hardware.link import SerialLink

FLASH_HINT = "flash a matching firmware: make -C firmware board (see firmware/README.md)"


class FirmwareError(UserError):
    """The firmware answered, but not as asked (version, refusal, unexpected reply)."""


class FirmwareVersionError(FirmwareError):
    """The firmware speaks another protocol version."""


class CommandRefused(FirmwareError):
    """The firmware refused a command; `result` says why, `mode` is its mode then."""

    def __init__(self, what: str, ack: P.Ack, message: str) -> None:
        super().__init__(message)
        self.what = what
        self.result = ack.result
        self.mode = ack.mode


_WHY = {
    P.Result.REFUSED_ESTOP: "e-stop latched; release it and run clear",
    P.Result.NOT_CONFIGURED: "not every joint is configured; send configure_joint for each joint first",
    P.Result.BAD_PAYLOAD: "bad payload (unknown joint, non-finite value or inverted limits); fix the values",
    P.Result.REFUSED_FAULT: "a fault is latched; fix its cause and run clear",
    P.Result.REFUSED_ARMED: "the arm is armed; disarm first",
    P.Result.UNKNOWN_MESSAGE: f"the firmware does not know this message; {FLASH_HINT}",
}
_WHY_CLEAR = {P.Result.REFUSED_ESTOP: "the e-stop input is still pressed; release it and run clear again"}


@dataclass(frozen=True)
class JointConfig:
    """One joint's servo, calibration and limits (CONFIG_JOINT): servo ticks = offset_ticks +
    direction * rad * ticks_per_rev / (2 pi)."""

    joint: int
    servo_id: int
    direction: int = 1
    offset_ticks: int = 2048
    ticks_per_rev: int = 4096
    pos_min: float = -math.pi
    pos_max: float = math.pi
    vel_max: float = 3.0  # rad/s
    step_max: float = 0.2  # rad per command
    max_temp_c: float = 70.0

    def payload(self) -> bytes:
        return struct.pack(
            P.CONFIG_JOINT_FMT,
            self.joint,
            self.servo_id,
            self.direction,
            self.offset_ticks,
            self.ticks_per_rev,
            self.pos_min,
            self.pos_max,
            self.vel_max,
            self.step_max,
            self.max_temp_c,
        )


class FirmwareClient:
    """The firmware's commands over `link`."""

    def __init__(self, link: SerialLink) -> None:
        self.link = link
        self.info: P.Hello | None = None

    def _expect(self, reply: object, kind: type, what: str):
        if isinstance(reply, P.Ack) and kind is not P.Ack:
            raise CommandRefused(what, reply, f"{what} refused: {reply.result.name}: {_WHY.get(reply.result, '')}")
        if not isinstance(reply, kind):
            raise FirmwareError(
                f"{what}: unexpected reply {type(reply).__name__} from the firmware on {self.link.port}"
            )
        return reply

    def _ack(self, msg_id: P.Msg, payload: bytes, what: str) -> P.Ack:
        ack = self._expect(self.link.request(msg_id, payload), P.Ack, what)
        if ack.result != P.Result.OK:
            why = (_WHY_CLEAR if msg_id == P.Msg.CLEAR else {}).get(ack.result) or _WHY.get(ack.result, "")
            raise CommandRefused(what, ack, f"{what} refused: {ack.result.name} (mode {ack.mode.name}): {why}")
        return ack

    def hello(self) -> P.Hello:
        """Exchange versions; `FirmwareVersionError` when the firmware speaks another protocol."""
        reply = self.link.request(P.Msg.HELLO, struct.pack(P.HELLO_FMT, P.PROTOCOL_VERSION))
        if isinstance(reply, P.Ack) and reply.result == P.Result.UNKNOWN_MESSAGE:
            raise FirmwareVersionError(f"the firmware on {self.link.port} does not know HELLO; {FLASH_HINT}")
        info = self._expect(reply, P.Hello, "hello")
        if info.protocol_version != P.PROTOCOL_VERSION:
            raise FirmwareVersionError(
                f"the firmware on {self.link.port} speaks protocol version {info.protocol_version}, robot_rl speaks "
                f"{P.PROTOCOL_VERSION}; {FLASH_HINT}"
            )
        self.info = info
        return info

    def configure(self, watchdog_ms: int = 100, stop_action: P.StopAction = P.StopAction.HOLD) -> None:
        """Set the watchdog period and what it does (disarmed only)."""
        self._ack(P.Msg.CONFIG, struct.pack(P.CONFIG_FMT, watchdog_ms, int(stop_action)), "configure")

    def configure_joint(self, cfg: JointConfig) -> None:
        """Send one joint's servo, calibration and limits (disarmed only)."""
        self._ack(P.Msg.CONFIG_JOINT, cfg.payload(), f"configure_joint {cfg.joint}")

    def arm(self) -> None:
        self._ack(P.Msg.ARM, struct.pack(P.ARM_FMT, 1), "arm")

    def disarm(self) -> None:
        self._ack(P.Msg.ARM, struct.pack(P.ARM_FMT, 0), "disarm")

    def estop(self) -> None:
        """Latch the e-stop (the firmware acknowledges it in any mode)."""
        self._ack(P.Msg.ESTOP, b"", "estop")

    def clear(self) -> None:
        """Clear a latched e-stop or fault; leaves the arm disarmed."""
        self._ack(P.Msg.CLEAR, b"", "clear")

    def command(self, targets: Iterable[float]) -> P.State:
        """Send joint position targets (rad); the answer's flags say whether they were rejected or clamped."""
        return self._expect(
            self.link.request(P.Msg.JOINT_COMMAND, P.joint_command_payload(targets)), P.State, "command"
        )

    def heartbeat(self) -> P.State:
        """Feed the watchdog without moving; returns the state."""
        return self._expect(self.link.request(P.Msg.HEARTBEAT), P.State, "heartbeat")

    def counters(self) -> dict[str, int]:
        return self._expect(self.link.request(P.Msg.GET_COUNTERS), dict, "counters")

    def drain_faults(self) -> list[P.FaultReport]:
        """The FAULT reports received so far (emptied); reads what is waiting first."""
        if self.link.is_open and not self.link.lost:
            self.link.poll(0.0)
        return self.link.drain_faults()
