"""The serial link: decoder fuzz (Python), SerialLink against a scripted pty peer, and SerialLink +
FirmwareClient against the real host-built firmware behind its pty (skipped where it cannot be built)."""

from __future__ import annotations

import errno
import math
import os
import struct
import threading
import time
import tty
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from robot_rl.hardware import protocol as P
from robot_rl.hardware.link import LinkError, LinkLost, LinkTimeout, SerialLink, open_error

# ---------------------------------------------------------------------- decoder fuzz
FRAMES = st.builds(
    lambda mid, seq, payload: (mid, seq, payload),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=P.MAX_PAYLOAD),
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_decode_frame_random_bytes_only_frame_error(data: bytes) -> None:
    try:
        msg_id, seq, payload = P.decode_frame(data)
    except P.FrameError:
        return
    # accepted: it must be exactly what encode_frame makes of its content
    assert P.encode_frame(msg_id, seq, payload) == data + b"\x00"


@settings(max_examples=400, deadline=None)
@given(FRAMES, st.lists(st.integers(0, 8 * (P.MAX_ENCODED) - 1), min_size=1, max_size=3))
def test_decode_frame_bit_flips_never_accept_wrong_content(frame, flips) -> None:
    mid, seq, payload = frame
    wire = bytearray(P.encode_frame(mid, seq, payload)[:-1])
    for bit in flips:
        bit %= 8 * len(wire)
        wire[bit // 8] ^= 1 << (bit % 8)
    try:
        got = P.decode_frame(bytes(wire))
    except P.FrameError:
        return
    assert got == (mid, seq, payload)  # flips that cancel out


@settings(max_examples=300, deadline=None)
@given(FRAMES, st.data())
def test_decode_frame_truncations_rejected(frame, data) -> None:
    mid, seq, payload = frame
    wire = P.encode_frame(mid, seq, payload)[:-1]
    cut = data.draw(st.integers(0, len(wire) - 1))
    start = data.draw(st.integers(0, cut))
    piece = wire[start:cut] if start < cut else wire[:cut]
    assume(piece != wire)
    with pytest.raises(P.FrameError):
        P.decode_frame(piece)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=P.MAX_PAYLOAD))
def test_parse_message_only_frame_error(msg_id: int, payload: bytes) -> None:
    try:
        msg = P.parse_message(msg_id, payload)
    except P.FrameError:
        return
    assert msg_id in (P.Msg.STATE, P.Msg.HELLO_REPLY, P.Msg.ACK, P.Msg.COUNTERS, P.Msg.FAULT)
    fmt = {
        P.Msg.HELLO_REPLY: P.HELLO_REPLY_FMT,
        P.Msg.ACK: P.ACK_FMT,
        P.Msg.COUNTERS: P.COUNTERS_FMT,
        P.Msg.FAULT: P.FAULT_FMT,
    }.get(msg_id)
    if fmt is not None:
        assert len(payload) == struct.calcsize(fmt)
    else:
        n = payload[4]
        assert len(payload) == struct.calcsize(P.STATE_HEAD_FMT) + n * struct.calcsize(P.STATE_JOINT_FMT)
        assert len(msg.joints) == n and msg.echo_seq == payload[0]


def _fw_frames():
    """Valid firmware frames (msg_id, payload) of every kind."""
    joint = st.tuples(
        st.floats(width=32, allow_nan=False), st.floats(width=32, allow_nan=False), st.integers(-1000, 1000)
    ).map(lambda t: struct.pack(P.STATE_JOINT_FMT, t[0], t[1], t[2], 40, 0))
    state = st.builds(
        lambda echo, joints: (
            P.Msg.STATE,
            struct.pack(P.STATE_HEAD_FMT, echo, 2, 0, 0, len(joints), 1234) + b"".join(joints),
        ),
        st.integers(0, 255),
        st.lists(joint, max_size=P.MAX_JOINTS),
    )
    ack = st.builds(
        lambda e, m, r: (P.Msg.ACK, struct.pack(P.ACK_FMT, e, m, r, 1)), *[st.integers(0, 255)] * 2, st.integers(0, 6)
    )
    fault = st.builds(
        lambda c, j: (P.Msg.FAULT, struct.pack(P.FAULT_FMT, c, j, 7)), st.integers(1, 7), st.integers(0, 255)
    )
    return st.one_of(state, ack, fault)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            _fw_frames().map(lambda f: ("frame", f)),
            st.binary(min_size=1, max_size=200).map(lambda b: ("junk", b.replace(b"\x00", b"\x55") + b"\x00")),
        ),
        max_size=12,
    )
)
def test_link_stream_keeps_valid_frames_and_counts_junk(segments) -> None:
    """A byte stream of valid frames and junk (each junk run ends in a 0x00): the link yields exactly
    the valid frames, in order, and counts each junk run as one bad frame."""
    link = SerialLink("/nonexistent", open_now=False)
    wire, want, junk = b"", [], 0
    for seq, (kind, seg) in enumerate(segments):
        if kind == "frame":
            wire += P.encode_frame(seg[0], seq, seg[1])
            want.append((int(seg[0]), seq))
        else:
            try:
                P.parse_message(*P.decode_frame(seg[:-1])[::2])
                assume(False)  # junk that happens to be a valid frame
            except P.FrameError:
                pass
            wire += seg
            junk += 1
    for i in range(0, len(wire), 37):  # arrives in pieces
        link._buf += wire[i : i + 37]
        got = list(link._frames())
        for msg_id, seq, _msg in got:
            assert (msg_id, seq) == want.pop(0)
    assert want == []
    assert link.stats.bad_frames == junk


# ---------------------------------------------------------------------- SerialLink against a scripted peer
class Peer:
    """The far end of a pty, scripted in Python: answers HEARTBEAT with STATE (by default)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if path.is_symlink():
            path.unlink()
        path.symlink_to(os.ttyname(self.slave))
        self.seq = 0
        self.before_reply = b""  # bytes sent ahead of every reply
        self.silent = False
        self.received: list[tuple[int, int, bytes]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def send(self, msg_id: int, payload: bytes) -> None:
        os.write(self.master, P.encode_frame(msg_id, self.seq, payload))
        self.seq = (self.seq + 1) & 0xFF

    def _run(self) -> None:
        import select

        buf = bytearray()
        while not self._stop:
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while 0 in buf:
                end = buf.index(0)
                chunk = bytes(buf[:end])
                del buf[: end + 1]
                msg_id, seq, payload = P.decode_frame(chunk)
                self.received.append((msg_id, seq, payload))
                if self.silent:
                    continue
                if self.before_reply:
                    os.write(self.master, self.before_reply)
                if msg_id == P.Msg.HEARTBEAT:
                    head = struct.pack(P.STATE_HEAD_FMT, seq, P.Mode.DISARMED, 0, 0, 1, 42)
                    self.send(P.Msg.STATE, head + struct.pack(P.STATE_JOINT_FMT, 0.25, 0.0, 0, 30, 0))
                else:
                    self.send(P.Msg.ACK, struct.pack(P.ACK_FMT, seq, msg_id, P.Result.OK, P.Mode.DISARMED))

    def unplug(self) -> None:
        self._stop = True
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)
        self.path.unlink()


@pytest.fixture
def peer(tmp_path):
    p = Peer(tmp_path / "port")
    yield p
    if not p._stop:
        p.unplug()


def test_request_reply_stats_and_faults(peer) -> None:
    seen = []
    with SerialLink(peer.path, on_fault=seen.append) as link:
        st_ = link.request(P.Msg.HEARTBEAT)
        assert isinstance(st_, P.State) and st_.joints[0].pos == pytest.approx(0.25)
        peer.send(P.Msg.FAULT, struct.pack(P.FAULT_FMT, P.Fault.ESTOP_INPUT, 0xFF, 0))
        time.sleep(0.05)
        ack = link.request(P.Msg.ARM, b"\x01")
        assert isinstance(ack, P.Ack) and ack.result == P.Result.OK and ack.msg_id == P.Msg.ARM
        assert seen == [P.FaultReport(P.Fault.ESTOP_INPUT, None, 0)]
        assert link.drain_faults() == seen and link.drain_faults() == []
        s = link.stats
        assert (s.frames_out, s.frames_in, s.faults, s.bad_frames, s.timeouts) == (2, 3, 1, 0, 0)
        assert len(s.rtt_s) == 2


def test_garbage_and_stale_replies_are_skipped(peer) -> None:
    with SerialLink(peer.path) as link:
        link.request(P.Msg.HEARTBEAT)
        # junk, then a STATE echoing an old seq, then the real answer
        peer.before_reply = b"\x13\x37\xff\xfe\x00" + P.encode_frame(P.Msg.STATE, 0, b"\x00" * 12)
        for _ in range(5):
            assert isinstance(link.request(P.Msg.HEARTBEAT), P.State)
        assert link.stats.bad_frames == 5 and link.stats.stale_replies == 5
        assert link.stats.seq_gaps > 0  # the injected frames reuse seq 0


def test_timeout_names_the_baud_when_nothing_was_heard(peer) -> None:
    peer.silent = True
    with SerialLink(peer.path, timeout=0.05) as link:
        with pytest.raises(LinkTimeout, match="1000000 baud.*latency_timer"):
            link.request(P.Msg.HEARTBEAT)
        peer.silent = False
        link.request(P.Msg.HEARTBEAT)
        peer.silent = True
        with pytest.raises(LinkTimeout, match="no STATE .* within 50 ms") as err:
            link.request(P.Msg.HEARTBEAT)
        assert "\n" not in str(err.value)
        assert link.stats.timeouts == 2
        peer.silent = False
        time.sleep(0.01)
        assert isinstance(link.request(P.Msg.HEARTBEAT), P.State)


def test_lost_and_reconnect(peer, tmp_path) -> None:
    link = SerialLink(peer.path)
    link.request(P.Msg.HEARTBEAT)
    peer.unplug()
    with pytest.raises(LinkLost, match="reconnect"):
        link.request(P.Msg.HEARTBEAT)
    assert link.lost
    with pytest.raises(LinkLost):
        link.request(P.Msg.HEARTBEAT)
    with pytest.raises(LinkLost, match="not found.*plugged in.*waited 0.2 s"):
        link.reconnect(timeout=0.2)

    def replug() -> None:
        time.sleep(0.3)
        replugged.append(Peer(peer.path))

    replugged: list[Peer] = []
    threading.Thread(target=replug).start()
    link.reconnect(timeout=5)
    assert isinstance(link.request(P.Msg.HEARTBEAT), P.State)
    assert link.stats.reconnects == 1 and not link.lost
    link.close()
    replugged[0].unplug()


def test_open_errors_name_the_fix(peer, tmp_path) -> None:
    with pytest.raises(LinkLost, match=r"serial port .*nope not found \(present: .*\); is the board plugged in\?"):
        SerialLink(tmp_path / "nope")
    with SerialLink(peer.path), pytest.raises(LinkError, match="busy"):
        SerialLink(peer.path)
    denied = open_error("/dev/ttyUSB0", OSError(errno.EACCES, "Permission denied"))
    assert "sudo usermod -aG dialout $USER" in str(denied) and type(denied) is LinkError
    assert "busy" in str(open_error("/dev/ttyUSB0", OSError(errno.EBUSY, "busy")))


def test_latency_timer_warning(monkeypatch, tmp_path, peer, caplog) -> None:
    from robot_rl.hardware import link as link_mod

    sysfs = tmp_path / "sys" / "{name}"
    (tmp_path / "sys" / "ttyUSB7").mkdir(parents=True)
    (tmp_path / "sys" / "ttyUSB7" / "latency_timer").write_text("16\n")
    monkeypatch.setattr(link_mod, "LATENCY_SYSFS", str(sysfs / "latency_timer"))
    assert link_mod.latency_timer_ms("/dev/ttyUSB7") == 16
    assert link_mod.latency_timer_ms(str(peer.path)) is None  # a pty: nothing to read
    usb = tmp_path / "ttyUSB7"
    usb.symlink_to(os.ttyname(peer.slave))
    with caplog.at_level("WARNING"), SerialLink(usb) as link:
        assert link.latency_timer_ms == 16
    assert "latency timer is 16 ms" in caplog.text and "echo 1 | sudo tee" in caplog.text
