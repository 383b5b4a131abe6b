"""The host <-> firmware link protocol: the one definition of its frames and message layouts.

The firmware's C header `firmware/core/protocol_gen.h` is generated from this module
(`python -m robot_rl.hardware.protocol --header firmware/core/protocol_gen.h`; a test checks it is
current), so the C and Python sides cannot drift apart.

Wire format: each frame is COBS-encoded and ends with one 0x00 byte. Decoded, a frame is
    msg_id u8 | seq u8 | payload (0..MAX_PAYLOAD bytes) | crc16 u16
with the CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of msg_id, seq and payload. Multi-byte
fields are little-endian; floats are IEEE-754 binary32. Each side numbers its own frames (seq + 1
mod 256 per frame); the receiver counts gaps. Host messages have ids below 0x80, firmware messages
0x80 and above. The firmware answers every host frame: STATE for JOINT_COMMAND and HEARTBEAT, HELLO
for HELLO, COUNTERS for GET_COUNTERS, ACK for the rest (with `echo_seq` = the host frame's seq); it
sends FAULT unprompted when a fault latches, the e-stop trips or the watchdog trips.

Units: joint positions in radians (the gripper joint too), velocities in rad/s, after the per-joint
calibration that the host sends in CONFIG_JOINT (servo ticks = offset + direction * rad * ticks_per_rad).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from cobs import cobs

PROTOCOL_VERSION = 1
MAX_JOINTS = 8
MAX_PAYLOAD = 120
MAX_FRAME = 2 + MAX_PAYLOAD + 2  # decoded: id, seq, payload, crc
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 2  # COBS overhead and the 0x00 delimiter
DEFAULT_BAUD = 1_000_000


class Msg(IntEnum):
    """Message ids."""

    HELLO = 0x01  # host: u16 protocol version -> HELLO_REPLY
    CONFIG = 0x02  # host: watchdog and stop behaviour (disarmed only) -> ACK
    CONFIG_JOINT = 0x03  # host: one joint's servo and limits (disarmed only) -> ACK
    JOINT_COMMAND = 0x10  # host: position targets for every joint -> STATE
    HEARTBEAT = 0x11  # host: keeps the watchdog fed without moving -> STATE
    ARM = 0x12  # host: u8 1 arm / 0 disarm -> ACK
    ESTOP = 0x13  # host: latch the e-stop -> ACK
    CLEAR = 0x14  # host: clear a latched e-stop (input released) or a fault; leaves the arm disarmed -> ACK
    GET_COUNTERS = 0x15  # host -> COUNTERS
    HELLO_REPLY = 0x81
    ACK = 0x82
    COUNTERS = 0x83
    FAULT = 0x84
    STATE = 0x90


class Mode(IntEnum):
    """The firmware's arming state machine: BOOT -> DISARMED <-> ARMED; any -> ESTOP / FAULT;
    CLEAR -> DISARMED."""

    BOOT = 0
    DISARMED = 1
    ARMED = 2
    FAULT = 3
    ESTOP = 4


class Result(IntEnum):
    """ACK result codes."""

    OK = 0
    REFUSED_ESTOP = 1  # e-stop latched, or its input still pressed (CLEAR)
    NOT_CONFIGURED = 2  # ARM before every joint has a CONFIG_JOINT
    BAD_PAYLOAD = 3  # wrong length, unknown joint, non-finite or inverted limits
    REFUSED_FAULT = 4  # a fault is latched: CLEAR first
    REFUSED_ARMED = 5  # configuration changes need the arm disarmed
    UNKNOWN_MESSAGE = 6


class StopAction(IntEnum):
    """What the watchdog does to the actuators."""

    HOLD = 0  # hold the measured position; the next valid command resumes from there
    TORQUE_OFF = 1  # torque off and disarm


class Fault(IntEnum):
    """FAULT message codes (and STATE's `fault`: the latched one, if any)."""

    NONE = 0
    BUS_TIMEOUT = 1  # a servo stopped answering (detail: consecutive misses)
    OVER_TEMPERATURE = 2  # detail: degrees C
    OVERLOAD = 3  # detail: load per mille
    SERVO_ERROR = 4  # the servo's status error byte (detail)
    ESTOP_INPUT = 5  # the e-stop input was pressed
    ESTOP_COMMAND = 6  # the host sent ESTOP
    WATCHDOG = 7  # an event, not a latched fault: the watchdog tripped (detail: ms since the last valid command)


class Backend(IntEnum):
    """The firmware's actuator back-end (HELLO_REPLY)."""

    FEETECH = 0  # Feetech STS/SCS serial bus servos
    PWM = 1  # hobby servos on PWM outputs (no position feedback)


# State flags (STATE.flags bits)
FLAG_ESTOP_INPUT = 0x01  # the e-stop input is pressed now
FLAG_TORQUE = 0x02  # actuators powered
FLAG_WATCHDOG = 0x04  # the watchdog tripped and no valid command or heartbeat has come since
FLAG_CLAMPED = 0x08  # the last command was clamped by a limit
FLAG_REJECTED = 0x10  # the last command was rejected (not armed, non-finite, wrong count)

# Payload layouts (struct format, little-endian). Variable parts are described beside them.
HELLO_FMT = "<H"  # protocol_version
HELLO_REPLY_FMT = "<HHBBH"  # protocol_version, firmware_version (major << 8 | minor), n_joints, backend, watchdog_ms
CONFIG_FMT = "<HB"  # watchdog_ms (10..1000), stop_action
CONFIG_JOINT_FMT = "<BBbxHHfffff"  # joint, servo_id, direction (+1/-1), pad, offset_ticks, ticks_per_rev,
#                                   pos_min, pos_max (rad), vel_max (rad/s), step_max (rad per command), max_temp_c
ARM_FMT = "<B"  # 1 arm, 0 disarm
JOINT_COMMAND_HEAD_FMT = "<B"  # n, then n x f32 targets (rad)
ACK_FMT = "<BBBB"  # echo_seq, acked msg id, result, mode
COUNTERS_FMT = "<" + "I" * 11
COUNTER_NAMES = (
    "rx_frames",  # valid frames received
    "bad_crc",  # frames with a wrong CRC
    "bad_frame",  # COBS errors, wrong length, overlong frames
    "seq_gaps",  # host frames missing by sequence number
    "dropped",  # bytes dropped: receive buffer overflow
    "bus_errors",  # servo replies missing or corrupt
    "rejected_commands",  # commands refused (not armed, non-finite, wrong joint count)
    "clamped_targets",  # targets changed by a position, step or velocity limit
    "watchdog_trips",
    "estops",
    "ticks",  # control ticks run
)
FAULT_FMT = "<BBH"  # code, joint (0xFF: none), detail
STATE_HEAD_FMT = "<BBBBBxxxI"  # echo_seq, mode, flags, fault, n, 3 pad bytes, time_ms; then per joint:
STATE_JOINT_FMT = "<ffhBB"  # pos (rad), vel (rad/s), load (per mille, signed), temp (C), servo error byte

assert struct.calcsize(STATE_HEAD_FMT) + MAX_JOINTS * struct.calcsize(STATE_JOINT_FMT) <= MAX_PAYLOAD
assert struct.calcsize(JOINT_COMMAND_HEAD_FMT) + MAX_JOINTS * 4 <= MAX_PAYLOAD
assert struct.calcsize(COUNTERS_FMT) <= MAX_PAYLOAD


class FrameError(ValueError):
    """A frame that does not decode: bad COBS, CRC, length or layout."""


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data` (check value of b"123456789": 0x29B1)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode_frame(msg_id: int, seq: int, payload: bytes = b"") -> bytes:
    """One wire frame: COBS(msg_id, seq, payload, crc16) + 0x00."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes((msg_id & 0xFF, seq & 0xFF)) + payload
    body += struct.pack("<H", crc16(body))
    return cobs.encode(body) + b"\x00"


def decode_frame(encoded: bytes) -> tuple[int, int, bytes]:
    """(msg_id, seq, payload) of one frame without its 0x00 delimiter; FrameError when it is damaged."""
    if not encoded or len(encoded) > MAX_ENCODED:
        raise FrameError(f"frame of {len(encoded)} bytes (1..{MAX_ENCODED})")
    try:
        body = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError(f"bad COBS: {exc}") from None
    if len(body) < 4 or len(body) > MAX_FRAME:
        raise FrameError(f"decoded frame of {len(body)} bytes (4..{MAX_FRAME})")
    (crc,) = struct.unpack_from("<H", body, len(body) - 2)
    if crc16(body[:-2]) != crc:
        raise FrameError("bad CRC")
    return body[0], body[1], body[2:-2]


# ---------------------------------------------------------------------- typed messages
@dataclass(frozen=True)
class JointState:
    """One joint in a STATE message."""

    pos: float
    vel: float
    load: int  # per mille of the servo's rated torque, signed
    temp: int  # degrees C
    error: int  # the servo's status error byte (0 = fine)


@dataclass(frozen=True)
class State:
    """A STATE message: the firmware's answer to a command or heartbeat."""

    echo_seq: int
    mode: Mode
    flags: int
    fault: Fault
    time_ms: int
    joints: tuple[JointState, ...]


@dataclass(frozen=True)
class Hello:
    protocol_version: int
    firmware_version: int
    n_joints: int
    backend: Backend
    watchdog_ms: int


@dataclass(frozen=True)
class Ack:
    echo_seq: int
    msg_id: int
    result: Result
    mode: Mode


@dataclass(frozen=True)
class FaultReport:
    code: Fault
    joint: int | None
    detail: int


def _enum(kind, value: int, what: str):
    try:
        return kind(value)
    except ValueError:
        raise FrameError(f"unknown {what} {value}") from None


def _unpack(fmt: str, payload: bytes, what: str) -> tuple:
    if len(payload) != struct.calcsize(fmt):
        raise FrameError(f"{what} payload of {len(payload)} bytes, expected {struct.calcsize(fmt)}")
    return struct.unpack(fmt, payload)


def parse_state(payload: bytes) -> State:
    """A STATE payload; FrameError when its length or fields are wrong."""
    head = struct.calcsize(STATE_HEAD_FMT)
    if len(payload) < head:
        raise FrameError(f"STATE payload of {len(payload)} bytes, shorter than its header")
    echo, mode, flags, fault, n, time_ms = struct.unpack_from(STATE_HEAD_FMT, payload)
    size = struct.calcsize(STATE_JOINT_FMT)
    if n > MAX_JOINTS or len(payload) != head + n * size:
        raise FrameError(f"STATE payload of {len(payload)} bytes for {n} joints")
    joints = tuple(JointState(*struct.unpack_from(STATE_JOINT_FMT, payload, head + i * size)) for i in range(n))
    return State(echo, _enum(Mode, mode, "mode"), flags, _enum(Fault, fault, "fault"), time_ms, joints)


def parse_message(msg_id: int, payload: bytes) -> State | Hello | Ack | FaultReport | dict[str, int]:
    """The typed message of a firmware frame; FrameError for an unknown id or a bad layout."""
    if msg_id == Msg.STATE:
        return parse_state(payload)
    if msg_id == Msg.HELLO_REPLY:
        proto, fw, n, backend, wd = _unpack(HELLO_REPLY_FMT, payload, "HELLO_REPLY")
        return Hello(proto, fw, n, _enum(Backend, backend, "backend"), wd)
    if msg_id == Msg.ACK:
        echo, acked, result, mode = _unpack(ACK_FMT, payload, "ACK")
        return Ack(echo, acked, _enum(Result, result, "result"), _enum(Mode, mode, "mode"))
    if msg_id == Msg.COUNTERS:
        return dict(zip(COUNTER_NAMES, _unpack(COUNTERS_FMT, payload, "COUNTERS"), strict=True))
    if msg_id == Msg.FAULT:
        code, joint, detail = _unpack(FAULT_FMT, payload, "FAULT")
        return FaultReport(_enum(Fault, code, "fault"), None if joint == 0xFF else joint, detail)
    raise FrameError(f"unknown firmware message id 0x{msg_id:02x}")


def joint_command_payload(targets) -> bytes:
    """JOINT_COMMAND payload for `targets` (rad, one per joint; non-finite values are sent as they are:
    the firmware rejects them)."""
    values = [float(t) for t in targets]
    if not 0 < len(values) <= MAX_JOINTS:
        raise ValueError(f"{len(values)} joint targets (1..{MAX_JOINTS})")
    return struct.pack(JOINT_COMMAND_HEAD_FMT, len(values)) + struct.pack(f"<{len(values)}f", *values)


# ---------------------------------------------------------------------- C header
def _fmt_size(fmt: str) -> int:
    return struct.calcsize(fmt)


def _offsets(fmt: str) -> list[int]:
    """Byte offset of each field of a struct format (padding bytes 'x' are not fields)."""
    out, codes, pos = [], fmt.lstrip("<"), 0
    for code in codes:
        if code != "x":
            out.append(pos)
        pos += struct.calcsize("<" + code)
    return out


def c_header() -> str:
    """The C header of this protocol (firmware/core/protocol_gen.h)."""
    lines = [
        "/* Generated by `python -m robot_rl.hardware.protocol --header`: do not edit.",
        " * The link protocol shared by the firmware and robot_rl/hardware/protocol.py. */",
        "#ifndef ROBOT_RL_PROTOCOL_GEN_H",
        "#define ROBOT_RL_PROTOCOL_GEN_H",
        "",
        f"#define PROTO_VERSION {PROTOCOL_VERSION}",
        f"#define PROTO_MAX_JOINTS {MAX_JOINTS}",
        f"#define PROTO_MAX_PAYLOAD {MAX_PAYLOAD}",
        f"#define PROTO_MAX_FRAME {MAX_FRAME}",
        f"#define PROTO_MAX_ENCODED {MAX_ENCODED}",
        f"#define PROTO_DEFAULT_BAUD {DEFAULT_BAUD}",
        "",
    ]
    for kind, prefix in (
        (Msg, "MSG"),
        (Mode, "MODE"),
        (Result, "RESULT"),
        (StopAction, "STOP"),
        (Fault, "FAULT"),
        (Backend, "BACKEND"),
    ):
        lines += [f"#define {prefix}_{m.name} {int(m)}" for m in kind] + [""]
    module = sys.modules[__name__]
    lines += [f"#define {name} 0x{getattr(module, name):02x}" for name in dir(module) if name.startswith("FLAG_")]
    lines.append("")
    layouts = {
        "HELLO": (HELLO_FMT, ("protocol_version",)),
        "HELLO_REPLY": (
            HELLO_REPLY_FMT,
            ("protocol_version", "firmware_version", "n_joints", "backend", "watchdog_ms"),
        ),
        "CONFIG": (CONFIG_FMT, ("watchdog_ms", "stop_action")),
        "CONFIG_JOINT": (
            CONFIG_JOINT_FMT,
            (
                "joint",
                "servo_id",
                "direction",
                "offset_ticks",
                "ticks_per_rev",
                "pos_min",
                "pos_max",
                "vel_max",
                "step_max",
                "max_temp_c",
            ),
        ),
        "ARM": (ARM_FMT, ("arm",)),
        "JOINT_COMMAND_HEAD": (JOINT_COMMAND_HEAD_FMT, ("n",)),
        "ACK": (ACK_FMT, ("echo_seq", "msg_id", "result", "mode")),
        "FAULT": (FAULT_FMT, ("code", "joint", "detail")),
        "STATE_HEAD": (STATE_HEAD_FMT, ("echo_seq", "mode", "flags", "fault", "n", "time_ms")),
        "STATE_JOINT": (STATE_JOINT_FMT, ("pos", "vel", "load", "temp", "error")),
        "COUNTERS": (COUNTERS_FMT, COUNTER_NAMES),
    }
    for name, (fmt, fields) in layouts.items():
        lines.append(f"#define {name}_SIZE {_fmt_size(fmt)}")
        for field, offset in zip(fields, _offsets(fmt), strict=True):
            lines.append(f"#define {name}_OFF_{field.upper()} {offset}")
        lines.append("")
    lines.append(f"#define COUNTERS_N {len(COUNTER_NAMES)}")
    lines += ["", "#endif", ""]
    return "\n".join(lines)


HEADER_PATH = Path("firmware/core/protocol_gen.h")

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--header":
        Path(sys.argv[2]).write_text(c_header())
    else:
        sys.exit("usage: python -m robot_rl.hardware.protocol --header firmware/core/protocol_gen.h")
