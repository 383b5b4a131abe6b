"""The serial link to the firmware: COBS frames over pyserial, synchronous request/reply.

One `SerialLink` owns one port. `request()` sends a host frame and reads until its answer arrives
(STATE/ACK matched by `echo_seq`, HELLO_REPLY/COUNTERS by message type); FAULT frames that arrive
meanwhile (or in `poll()`) are collected in `faults` and passed to `on_fault`. Damaged bytes are
skipped up to the next 0x00 delimiter and counted. No background thread: the caller's thread does
the I/O, which keeps the round trip as short as the OS allows (select + os.read on the port's fd).

When the port goes away (read or write fails, EOF, or the device node is missing at open) the link
is marked lost and every call raises `LinkLost` until `reconnect()` reopens the same path.
Errors a person can act on (missing port, permissions, busy port, no answer) are one-line
`LinkError`s that name the fix.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import select
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import serial

from robot_rl.config import UserError
from robot_rl.hardware import protocol as P

logger = logging.getLogger(__name__)

REPLY_FOR = {
    P.Msg.JOINT_COMMAND: P.Msg.STATE,
    P.Msg.HEARTBEAT: P.Msg.STATE,
    P.Msg.HELLO: P.Msg.HELLO_REPLY,
    P.Msg.GET_COUNTERS: P.Msg.COUNTERS,
}
LATENCY_SYSFS = "/sys/bus/usb-serial/devices/{name}/latency_timer"
_MISSING_ERRNOS = (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO)


class LinkError(UserError):
    """A serial link problem a person can act on (one line, naming the fix)."""


class LinkTimeout(LinkError):
    """No answer to a request within its timeout."""


class LinkLost(LinkError):
    """The port went away (unplugged, closed by the other side); `SerialLink.reconnect()` reopens it."""


def present_ports() -> list[str]:
    """The USB serial device nodes that exist now (/dev/ttyUSB*, /dev/ttyACM*)."""
    return sorted(glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*"))


def latency_timer_ms(port: str) -> int | None:
    """The FTDI latency timer of a ttyUSB device in ms (None for other devices or when unreadable)."""
    names = [n for n in (Path(port).name, Path(os.path.realpath(port)).name) if n.startswith("ttyUSB")]
    if not names:
        return None
    name = names[0]
    try:
        return int(Path(LATENCY_SYSFS.format(name=name)).read_text().strip())
    except (OSError, ValueError):
        return None


def _tee_hint(port: str) -> str:
    names = [n for n in (Path(port).name, Path(os.path.realpath(port)).name) if n.startswith("ttyUSB")]
    name = names[0] if names else "ttyUSB0"
    return f"echo 1 | sudo tee {LATENCY_SYSFS.format(name=name)}"


def open_error(port: str, exc: BaseException) -> LinkError:
    """The one-line error for a failed open of `port`."""
    code = getattr(exc, "errno", None)
    if code in _MISSING_ERRNOS or isinstance(exc, FileNotFoundError):
        present = ", ".join(present_ports()) or "none"
        return LinkLost(f"serial port {port} not found (present: {present}); is the board plugged in?")
    if code in (errno.EACCES, errno.EPERM):
        return LinkError(
            f"permission denied opening serial port {port}; add yourself to the dialout group: "
            "sudo usermod -aG dialout $USER, then log in again"
        )
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return LinkError(
            f"serial port {port} is busy: another program holds it (a second robot-rl, a serial monitor?); close it"
        )
    return LinkError(f"cannot open serial port {port}: {exc}")


@dataclass
class LinkStats:
    """Counters of one link (kept across reconnects)."""

    frames_out: int = 0
    frames_in: int = 0
    bad_frames: int = 0  # damaged frames skipped (bad COBS, CRC, length, layout, unknown id)
    garbage_bytes: int = 0  # bytes dropped with them
    stale_replies: int = 0  # replies that matched no pending request (late answers to timed-out requests)
    seq_gaps: int = 0  # firmware frames missing by sequence number
    timeouts: int = 0
    reconnects: int = 0
    faults: int = 0
    rtt_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def rtt_ms(self, q: float) -> float:
        """The `q`-quantile (0..1) of the recorded round-trip times in ms (nan when none)."""
        if not self.rtt_s:
            return float("nan")
        values = sorted(self.rtt_s)
        return values[min(len(values) - 1, int(q * len(values)))] * 1e3

    def summary(self) -> dict[str, float]:
        """The counters and round-trip p50/p99/max in ms, as a flat dict."""
        out: dict[str, float] = {k: v for k, v in vars(self).items() if k != "rtt_s"}
        out.update(
            rtt_n=len(self.rtt_s),
            rtt_p50_ms=self.rtt_ms(0.5),
            rtt_p99_ms=self.rtt_ms(0.99),
            rtt_max_ms=max(self.rtt_s, default=float("nan")) * 1e3,
        )
        return out


Reply = P.State | P.Hello | P.Ack | dict


class SerialLink:
    """A framed, synchronous link to the firmware on one serial port."""

    def __init__(
        self,
        port: str | os.PathLike,
        baud: int = P.DEFAULT_BAUD,
        *,
        timeout: float = 0.1,
        on_fault: Callable[[P.FaultReport], None] | None = None,
        exclusive: bool = True,
        open_now: bool = True,
    ) -> None:
        self.port = os.fspath(port)
        self.baud = baud
        self.timeout = timeout
        self.on_fault = on_fault
        self.exclusive = exclusive
        self.stats = LinkStats()
        self.faults: deque[P.FaultReport] = deque(maxlen=1000)
        self.latency_timer_ms: int | None = None
        self._ser: serial.Serial | None = None
        self._fd = -1
        self._buf = bytearray()
        self._skipping = False  # inside an overlong run of bytes: drop up to the next 0x00
        self._seq = 0
        self._rx_seq: int | None = None
        self._heard = False  # any valid frame since the last open
        self._lost = False
        if open_now:
            self.open()

    # ------------------------------------------------------------------ open / close
    @property
    def is_open(self) -> bool:
        return self._ser is not None

    @property
    def lost(self) -> bool:
        return self._lost

    def open(self) -> None:
        """Open the port (exclusive); a missing port raises `LinkLost` (and marks the link lost)."""
        if self._ser is not None:
            return
        try:
            ser = serial.Serial(
                port=None, baudrate=self.baud, timeout=0, write_timeout=0.5, exclusive=self.exclusive or None
            )
            ser.port = self.port
            ser.open()
        except (serial.SerialException, OSError) as exc:
            err = open_error(self.port, exc)
            if isinstance(err, LinkLost):
                self._lost = True
            raise err from None
        self._ser, self._fd = ser, ser.fileno()
        self._buf.clear()
        self._skipping = False
        self._rx_seq = None
        self._heard = False
        self._lost = False
        self.latency_timer_ms = latency_timer_ms(self.port)
        if self.latency_timer_ms is not None and self.latency_timer_ms > 1:
            logger.warning(
                "%s: FTDI latency timer is %d ms (adds up to that to every reply); set it to 1: %s",
                self.port,
                self.latency_timer_ms,
                _tee_hint(self.port),
            )

    def close(self) -> None:
        """Close the port (idempotent)."""
        ser, self._ser, self._fd = self._ser, None, -1
        if ser is not None:
            try:
                ser.close()
            except (OSError, serial.SerialException):
                pass

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mark_lost(self, why: object) -> LinkLost:
        self.close()
        self._lost = True
        return LinkLost(f"link to the firmware on {self.port} lost ({why}); plug it back in and call reconnect()")

    def _check(self) -> None:
        if self._lost or self._ser is None:
            raise LinkLost(f"link to the firmware on {self.port} is lost or closed; call reconnect()")

    def reconnect(self, timeout: float = 5.0) -> None:
        """Reopen the port, retrying with backoff (10 ms doubling to 200 ms) until it is back or
        `timeout` s have passed (then `LinkLost`). Errors other than a missing port raise at once."""
        self.close()
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                self.open()
            except LinkLost as exc:
                if time.monotonic() + delay > deadline:
                    raise LinkLost(f"{exc} (waited {timeout:g} s for it to come back)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            self.stats.reconnects += 1
            return

    # ------------------------------------------------------------------ sending
    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests inject garbage with it)."""
        self._check()
        view = memoryview(data)
        deadline = time.monotonic() + 0.5
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise self._mark_lost(f"write failed: {exc.strerror or exc}") from None
            view = view[n:]
            if view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkTimeout(f"write to {self.port} blocked for 500 ms (is the other side reading?)")
                select.select([], [self._fd], [], left)

    def send(self, msg_id: int, payload: bytes = b"") -> int:
        """Send one frame; returns its sequence number."""
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        self.write_raw(P.encode_frame(msg_id, seq, payload))
        self.stats.frames_out += 1
        return seq

    # ------------------------------------------------------------------ receiving
    def _read_some(self, timeout: float) -> bool:
        """Read what is available within `timeout` s into the buffer; False when nothing came."""
        try:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
            if not ready:
                return False
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return False
        except (OSError, ValueError) as exc:
            raise self._mark_lost(f"read failed: {getattr(exc, 'strerror', None) or exc}") from None
        if not data:
            raise self._mark_lost("end of file")
        self._buf += data
        return True

    def _frames(self):
        """Decode the complete frames in the buffer: yields (msg_id, seq, message)."""
        buf = self._buf
        while True:
            end = buf.find(0)
            if end < 0:
                if len(buf) > P.MAX_ENCODED:  # no delimiter where one must have been: drop, resync at the next 0
                    self.stats.garbage_bytes += len(buf)
                    if not self._skipping:
                        self.stats.bad_frames += 1
                    self._skipping = True
                    buf.clear()
                return
            chunk = bytes(buf[:end])
            del buf[: end + 1]
            if self._skipping:
                self._skipping = False
                self.stats.garbage_bytes += len(chunk) + 1
                continue
            if not chunk:
                continue  # an empty frame (repeated delimiters) is idle line, not damage
            try:
                msg_id, seq, payload = P.decode_frame(chunk)
                msg = P.parse_message(msg_id, payload)
            except P.FrameError:
                self.stats.bad_frames += 1
                self.stats.garbage_bytes += len(chunk) + 1
                continue
            self.stats.frames_in += 1
            if self._rx_seq is not None:
                self.stats.seq_gaps += (seq - self._rx_seq - 1) & 0xFF
            self._rx_seq = seq
            self._heard = True
            yield msg_id, seq, msg

    def _note_fault(self, fault: P.FaultReport) -> None:
        self.stats.faults += 1
        self.faults.append(fault)
        if self.on_fault is not None:
            self.on_fault(fault)

    def poll(self, timeout: float = 0.0) -> int:
        """Read and handle what arrives within `timeout` s (faults are collected; other frames are
        stale answers and counted); returns the number of frames handled."""
        self._check()
        n = 0
        deadline = time.perf_counter() + timeout
        while True:
            got = self._read_some(max(0.0, deadline - time.perf_counter()))
            for _msg_id, _seq, msg in self._frames():
                n += 1
                if isinstance(msg, P.FaultReport):
                    self._note_fault(msg)
                else:
                    self.stats.stale_replies += 1
            if not got or time.perf_counter() >= deadline:
                return n

    def drain_faults(self) -> list[P.FaultReport]:
        """The FAULT reports collected so far (emptied)."""
        out = list(self.faults)
        self.faults.clear()
        return out

    def request(self, msg_id: int, payload: bytes = b"", timeout: float | None = None) -> Reply:
        """Send a host frame and return the firmware's typed answer (State, Hello, Ack or the counters
        dict). An ACK echoing the request's seq is its answer whatever was expected (refusals)."""
        self._check()
        expect = REPLY_FOR.get(msg_id, P.Msg.ACK)
        timeout = self.timeout if timeout is None else timeout
        t0 = time.perf_counter()
        seq = self.send(msg_id, payload)
        deadline = t0 + timeout
        while True:
            for rid, _rseq, msg in self._frames():
                if isinstance(msg, P.FaultReport):
                    self._note_fault(msg)
                    continue
                echo = getattr(msg, "echo_seq", None)
                if (rid == expect and (echo is None or echo == seq)) or (rid == P.Msg.ACK and echo == seq):
                    self.stats.rtt_s.append(time.perf_counter() - t0)
                    return msg
                self.stats.stale_replies += 1
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._read_some(left)
        self.stats.timeouts += 1
        name = P.Msg(msg_id).name if msg_id in P.Msg._value2member_map_ else f"0x{msg_id:02x}"
        if not self._heard:
            raise LinkTimeout(
                f"no answer from the firmware on {self.port} at {self.baud} baud ({name} seq {seq}, "
                f"{timeout * 1e3:.0f} ms): the firmware talks at {P.DEFAULT_BAUD} baud; check baud, that the "
                f"firmware is flashed, and the FTDI latency timer: {_tee_hint(self.port)}"
            )
        raise LinkTimeout(
            f"no {P.Msg(expect).name} from the firmware on {self.port} within {timeout * 1e3:.0f} ms ({name} seq {seq})"
        )
