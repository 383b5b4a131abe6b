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
        self.version = P.PROTOCOL_VERSION
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
                if msg_id == P.Msg.HELLO:
                    self.send(P.Msg.HELLO_REPLY, struct.pack(P.HELLO_REPLY_FMT, self.version, 0x0102, 1, 0, 100))
                elif msg_id == P.Msg.HEARTBEAT:
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


def test_hello_version_mismatch_names_both_versions_and_the_flash(peer) -> None:
    from robot_rl.hardware.firmware import FirmwareClient, FirmwareVersionError

    with SerialLink(peer.path) as link:
        client = FirmwareClient(link)
        assert client.hello().firmware_version == 0x0102
        peer.version = P.PROTOCOL_VERSION + 1
        with pytest.raises(FirmwareVersionError) as err:
            client.hello()
    msg = str(err.value)
    assert f"protocol version {P.PROTOCOL_VERSION + 1}, robot_rl speaks {P.PROTOCOL_VERSION}" in msg
    assert "make -C firmware board" in msg and "firmware/README.md" in msg and "\n" not in msg


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


# ---------------------------------------------------------------------- against the real firmware
from firmware_proc import Firmware  # noqa: E402

from robot_rl.hardware.firmware import CommandRefused, FirmwareClient, JointConfig  # noqa: E402

N_JOINTS = 6


@pytest.fixture
def fw(fw_binary, tmp_path):
    proc = Firmware(fw_binary, tmp_path / "fw", joints=N_JOINTS)
    yield proc
    proc.stop()


@pytest.fixture
def client(fw):
    with SerialLink(fw.link, timeout=0.2) as link:
        yield FirmwareClient(link)


def configure_all(client: FirmwareClient, watchdog_ms: int = 100) -> None:
    client.configure(watchdog_ms, P.StopAction.HOLD)
    for j in range(N_JOINTS):
        client.configure_joint(JointConfig(j, j + 1, step_max=0.5))


def positions(state: P.State) -> list[float]:
    return [j.pos for j in state.joints]


def test_fw_hello_configure_arm_command_counters(client) -> None:
    info = client.hello()
    assert (info.protocol_version, info.n_joints, info.backend) == (P.PROTOCOL_VERSION, N_JOINTS, P.Backend.FEETECH)
    state = client.heartbeat()
    assert state.mode == P.Mode.DISARMED and len(state.joints) == N_JOINTS
    assert client.command([0.1] * N_JOINTS).flags & P.FLAG_REJECTED  # not armed
    with pytest.raises(CommandRefused, match="arm refused: NOT_CONFIGURED") as err:
        client.arm()
    assert err.value.result == P.Result.NOT_CONFIGURED and err.value.mode == P.Mode.DISARMED
    with pytest.raises(CommandRefused, match="BAD_PAYLOAD"):
        client.configure_joint(JointConfig(0, 1, pos_min=1.0, pos_max=-1.0))
    with pytest.raises(CommandRefused, match="BAD_PAYLOAD"):
        client.configure_joint(JointConfig(N_JOINTS, 9))  # no such joint
    configure_all(client)
    client.arm()
    with pytest.raises(CommandRefused, match="REFUSED_ARMED.*disarm first"):
        client.configure(100)
    target = [0.3, -0.2, 0.1, 0.0, 0.25, -0.3]
    for _ in range(60):
        state = client.command(target)
        assert state.mode == P.Mode.ARMED and not state.flags & P.FLAG_REJECTED
        time.sleep(0.005)
    assert positions(state) == pytest.approx(target, abs=0.01)
    nan = client.command([math.nan] + target[1:])
    assert nan.flags & P.FLAG_REJECTED and nan.mode == P.Mode.ARMED
    assert client.command(target[:3]).flags & P.FLAG_REJECTED  # wrong joint count
    client.disarm()
    assert client.heartbeat().mode == P.Mode.DISARMED
    counters = client.counters()
    assert counters["rx_frames"] == client.link.stats.frames_out
    assert counters["rejected_commands"] == 3 and counters["bad_crc"] == 0 and counters["ticks"] > 0


def test_fw_estop_latch_via_input_and_command(client, fw) -> None:
    client.hello()
    configure_all(client, watchdog_ms=1000)
    client.arm()
    fw.press_estop()
    deadline = time.monotonic() + 2
    while not client.link.faults and time.monotonic() < deadline:
        client.heartbeat()
        time.sleep(0.01)
    assert P.FaultReport(P.Fault.ESTOP_INPUT, None, 0) in [
        P.FaultReport(f.code, f.joint, 0) for f in client.drain_faults()
    ]
    state = client.heartbeat()
    assert state.mode == P.Mode.ESTOP and state.flags & P.FLAG_ESTOP_INPUT and not state.flags & P.FLAG_TORQUE
    assert client.command([0.0] * N_JOINTS).flags & P.FLAG_REJECTED
    with pytest.raises(CommandRefused, match="still pressed") as err:
        client.clear()
    assert err.value.result == P.Result.REFUSED_ESTOP
    with pytest.raises(CommandRefused, match="arm refused: REFUSED_ESTOP.*e-stop latched; release it and run clear"):
        client.arm()
    fw.press_estop(False)
    time.sleep(0.05)
    assert client.heartbeat().mode == P.Mode.ESTOP  # released, still latched
    client.clear()
    assert client.heartbeat().mode == P.Mode.DISARMED  # clear leaves it disarmed
    client.arm()
    client.estop()
    state = client.heartbeat()
    assert state.mode == P.Mode.ESTOP and not state.flags & P.FLAG_TORQUE
    assert P.Fault.ESTOP_COMMAND in [f.code for f in client.drain_faults()]
    client.clear()
    client.arm()
    assert client.counters()["estops"] == 2


def test_fw_watchdog_unplug_replug(client, fw) -> None:
    link = client.link
    client.hello()
    configure_all(client, watchdog_ms=100)
    client.arm()
    hold = [0.2] * N_JOINTS
    for _ in range(30):
        client.command(hold)
        time.sleep(0.005)
    # the watchdog trips when commands stop: FAULT WATCHDOG, unprompted; the arm holds and stays armed
    link.poll(0.25)
    trips = [f for f in client.drain_faults() if f.code == P.Fault.WATCHDOG]
    assert len(trips) == 1 and 95 < trips[0].detail <= 100  # the last 5 ms tick within the 100 ms period
    state = client.heartbeat()
    assert state.mode == P.Mode.ARMED and positions(state) == pytest.approx(hold, abs=0.01)
    client.command(hold)
    # unplugged: the link is lost; the firmware's watchdog holds meanwhile
    fw.unplug()
    with pytest.raises(LinkLost):
        for _ in range(100):
            client.heartbeat()
            time.sleep(0.01)
    assert link.lost
    time.sleep(0.2)
    t_replug = time.monotonic()
    threading.Timer(0.3, fw.unplug, args=(False,)).start()
    link.reconnect(timeout=5)
    assert time.monotonic() - t_replug < 3 and link.stats.reconnects == 1
    assert client.hello().protocol_version == P.PROTOCOL_VERSION
    assert client.counters()["watchdog_trips"] == 2
    state = client.heartbeat()
    assert state.mode == P.Mode.ARMED and positions(state) == pytest.approx(hold, abs=0.01)
    moved = [0.3] * N_JOINTS
    for _ in range(40):  # the next valid command resumes
        state = client.command(moved)
        time.sleep(0.005)
    assert not state.flags & (P.FLAG_WATCHDOG | P.FLAG_REJECTED) and positions(state) == pytest.approx(moved, abs=0.01)


def test_fw_resync_on_garbage(client) -> None:
    client.hello()
    before = client.counters()
    garbage = [b"\x01\x02\x03\x00", b"\xff" * 300 + b"\x00", b"\x05hello\x00\x00", bytes(range(1, 200)) + b"\x00"]
    for junk in garbage:
        client.link.write_raw(junk)
        assert client.heartbeat().mode == P.Mode.DISARMED
    after = client.counters()
    bad = sum(after[k] - before[k] for k in ("bad_crc", "bad_frame"))
    assert bad == len(garbage), (before, after)


def _corrupt(wire: bytes, data) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    out = bytearray(wire)
    if kind == "flip":
        for bit in data.draw(st.lists(st.integers(0, 8 * len(out) - 1), min_size=1, max_size=4)):
            out[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        out = out[: data.draw(st.integers(1, len(out) - 1))]
    else:
        at = data.draw(st.integers(0, len(out)))
        out[at:at] = data.draw(st.binary(min_size=1, max_size=20))
    return bytes(out).replace(b"\x00", b"")


@pytest.mark.parametrize("n_examples", [250])
def test_fw_fuzz_through_the_c_decoder(client, n_examples) -> None:
    """Random and corrupted frames written to the firmware: it keeps answering, nothing is executed
    (positions, mode and the e-stop stay as they were) and every damaged frame is counted."""
    client.hello()
    configure_all(client, watchdog_ms=1000)
    client.arm()
    home = [0.1, -0.1, 0.2, 0.0, -0.2, 0.05]
    for _ in range(40):
        client.command(home)
        time.sleep(0.005)
    base = client.counters()
    far = P.joint_command_payload([1.0] * N_JOINTS)
    sent = {"bad": 0, "rejected": 0}

    @settings(max_examples=n_examples, deadline=None, derandomize=True, database=None)
    @given(st.data())
    def fuzz(data) -> None:
        kind = data.draw(st.sampled_from(["random", "corrupt", "corrupt_other", "bad_layout"]))
        if kind == "random":
            frame = data.draw(st.binary(min_size=1, max_size=200)).replace(b"\x00", b"")
        elif kind in ("corrupt", "corrupt_other"):
            msg, payload = (
                (P.Msg.JOINT_COMMAND, far)
                if kind == "corrupt"
                else (data.draw(st.sampled_from([P.Msg.ESTOP, P.Msg.ARM, P.Msg.CLEAR, P.Msg.CONFIG])), b"\x00\x01\x00")
            )
            frame = _corrupt(P.encode_frame(msg, client.link._seq, payload)[:-1], data)
        else:  # framed correctly, wrong layout: a JOINT_COMMAND the firmware must reject
            n = data.draw(st.sampled_from([0, 1, N_JOINTS - 1, N_JOINTS + 1, P.MAX_JOINTS, N_JOINTS]))
            count = data.draw(st.integers(0, P.MAX_JOINTS))
            if n == N_JOINTS and count == N_JOINTS:
                count = N_JOINTS - 1
            payload = bytes([n]) + struct.pack(f"<{count}f", *([1.0] * count))
            state = client.link.request(P.Msg.JOINT_COMMAND, payload)
            assert state.flags & P.FLAG_REJECTED and state.mode == P.Mode.ARMED
            sent["rejected"] += 1
            return
        if not frame:
            return
        try:  # by the Python decoder's judgement: a damaged frame (the CRC makes a valid one vanishingly rare)
            P.decode_frame(frame)
            return
        except P.FrameError:
            pass
        client.link.write_raw(frame + b"\x00")
        sent["bad"] += 1
        state = client.heartbeat()
        assert state.mode == P.Mode.ARMED and positions(state) == pytest.approx(home, abs=0.01)

    fuzz()
    client.link.write_raw(b"\xff" * 600 + b"\x00")  # an overlong run
    state = client.command(home)
    assert state.mode == P.Mode.ARMED and not state.flags & P.FLAG_REJECTED
    assert positions(state) == pytest.approx(home, abs=0.01)
    after = client.counters()
    bad = sum(after[k] - base[k] for k in ("bad_crc", "bad_frame"))
    assert bad == sent["bad"] + 1, (sent, base, after)
    assert after["rejected_commands"] - base["rejected_commands"] == sent["rejected"]
    assert after["estops"] == base["estops"]
    assert client.link.stats.bad_frames == 0  # the firmware never answered with garbage
    print(f"fuzz: {sent['bad']} damaged and {sent['rejected']} ill-formed frames; firmware counters {after}")


def test_fw_round_trip_at_100hz(client) -> None:
    """The acceptance figure: command -> STATE round trip through the pty at 100 Hz, p99 < 5 ms."""
    client.hello()
    configure_all(client, watchdog_ms=100)
    client.arm()
    link = client.link
    link.stats.rtt_s.clear()
    t0 = time.perf_counter()
    n = 300
    for k in range(n):
        client.command([0.05 * math.sin(k / 20)] * N_JOINTS)
        time.sleep(max(0.0, t0 + (k + 1) / 100 - time.perf_counter()))
    s = link.stats
    print(
        f"round trip at 100 Hz through the pty: n={len(s.rtt_s)} p50={s.rtt_ms(0.5):.3f} ms "
        f"p99={s.rtt_ms(0.99):.3f} ms max={max(s.rtt_s) * 1e3:.3f} ms (load {os.getloadavg()[0]:.1f})"
    )
    assert len(s.rtt_s) == n and s.timeouts == 0
    assert s.rtt_ms(0.5) < 2.0
    # 5 ms is the acceptance figure; a machine loaded past its cores (CI, parallel workers) gets 25 ms
    loaded = os.getloadavg()[0] > (os.cpu_count() or 1)
    limit = float(os.environ.get("ROBOT_RL_RTT_P99_MS", "25" if loaded else "5"))
    assert s.rtt_ms(0.99) < limit, f"p99 {s.rtt_ms(0.99):.2f} ms over {limit} ms (loaded: {loaded})"
