"""The MuJoCo plant for firmware-in-the-loop: emulated Feetech STS servos on a pty, real-time physics.

    python -m robot_rl.hardware.plant --model panda_pick_cube.xml --bus /tmp/bus --side /tmp/plant.sock

creates a pseudo-terminal for the servo bus (symlinked at --bus: give that path to `robot_fw --bus`)
and answers the Feetech STS protocol on it like a chain of STS3215 servos (PING, READ, WRITE,
SYNC_READ, SYNC_WRITE; status replies with return delay 0). Each servo drives one MuJoCo position
actuator: goal position ticks -> the servo's angle through the plant's own "true" calibration (per
servo a seeded offset a few degrees off 2048 and a direction), so the host's calibration matters;
torque off makes the actuator limp. Present position/speed come from the actuator's length and
velocity, load from its force, temperature from a first-order model of the load. The physics runs in
real time on its own thread (sim time follows the wall clock).

What a serial bus cannot carry goes over a side channel (a UNIX socket, multiprocessing.connection
with an authkey, socket mode 0600): the object's pose (what a tracking system and a person placing
the cube would do), camera renders, ground truth for tests (joint positions, servo angles, the true
calibration) and fault injection (temperature, servo error bits, a silent servo). `PlantClient` is
its client.

The servo <-> actuator mapping is a list of `PlantServo`; `plant_servos_for(model)` infers it from an
MJCF (hinge position actuators 1:1, a slide/tendon actuator as a gripper mapped linearly from its
servo angle to the jaw opening), so any arm model works.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import select
import signal
import sys
import threading
import time
import tty
from dataclasses import asdict, dataclass
from multiprocessing.connection import Client, Connection, Listener, wait
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402  (after MUJOCO_GL is set)
import numpy as np  # noqa: E402

from robot_rl.config import UserError  # noqa: E402

# ---------------------------------------------------------------------- Feetech STS protocol
TICKS_PER_REV = 4096  # STS3215
CENTRE = 2048
BROADCAST = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
ADDR_ID = 5
ADDR_MAX_TEMP = 13
ADDR_TORQUE = 40
ADDR_GOAL = 42  # u16, bit 15 sign
ADDR_PRESENT = 56  # position u16 (bit 15 sign), speed u16 (bit 15 sign, ticks/s), load u16 (bit 10
#                    direction, 0..1000 per mille), voltage u8 (0.1 V), temperature u8 (C)
PRESENT_LEN = 8
ERR_VOLTAGE, ERR_SENSOR, ERR_TEMP, ERR_CURRENT, ERR_OVERLOAD = 0x01, 0x02, 0x04, 0x08, 0x20

DEFAULT_AUTHKEY = b"robot_rl plant"
GRIPPER_RAD_OPEN = 1.5  # default servo angle of a fully open gripper (closed = 0)


def sts_checksum(body: bytes) -> int:
    """The STS checksum of ID, LEN, INSTR/ERR and params: ~sum & 0xFF."""
    return ~sum(body) & 0xFF


def sts_packet(servo_id: int, instr: int, params: bytes = b"") -> bytes:
    """An instruction packet FF FF ID LEN INSTR PARAMS CHK (LEN = len(params) + 2)."""
    body = bytes((servo_id, len(params) + 2, instr)) + bytes(params)
    return b"\xff\xff" + body + bytes((sts_checksum(body),))


sts_status = sts_packet  # a status reply has the same shape, with the error byte in INSTR's place


def sm_encode(value: int, sign_bit: int = 15) -> int:
    """Sign-magnitude encoding (the sign in `sign_bit`)."""
    mag = min(abs(int(value)), (1 << sign_bit) - 1)
    return mag | (1 << sign_bit) if value < 0 else mag


def sm_decode(raw: int, sign_bit: int = 15) -> int:
    mag = raw & ((1 << sign_bit) - 1)
    return -mag if raw & (1 << sign_bit) else mag


class StsParser:
    """Splits a byte stream into STS packets (id, instr, params); bad checksums are counted and
    skipped byte by byte, as a servo resynchronises on the next FF FF."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad_checksum = 0
        self.garbage = 0

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self.buf
        buf += data
        out = []
        while True:
            start = buf.find(b"\xff\xff")
            if start < 0:
                keep = 1 if buf[-1:] == b"\xff" else 0
                self.garbage += len(buf) - keep
                del buf[: len(buf) - keep]
                return out
            if start:
                self.garbage += start
                del buf[:start]
            if len(buf) < 4:
                return out
            if buf[2] == 0xFF:  # FF FF FF ...: the header starts one byte later
                self.garbage += 1
                del buf[:1]
                continue
            length = buf[3]
            if length < 2:
                self.garbage += 2
                del buf[:2]
                continue
            if len(buf) < 4 + length:
                return out
            body = bytes(buf[2 : 3 + length])
            if sts_checksum(body) != buf[3 + length]:
                self.bad_checksum += 1
                del buf[:1]
                continue
            del buf[: 4 + length]
            out.append((body[0], body[2], body[3:]))


# ---------------------------------------------------------------------- servo <-> model mapping
@dataclass(frozen=True)
class PlantServo:
    """One servo: its bus id, the MuJoCo position actuator it drives and the joint it moves (for the
    ground-truth readout; None for a tendon-driven gripper). Without `rad_range`/`ctrl_range` the servo
    angle is the actuator length (a hinge joint). With them it is a gripper: `rad_range` = (rad_closed,
    rad_open) of the servo, `ctrl_range` = the actuator's (closed, open) length, the jaw opening; the map
    is linear, or with `jaw_length` > 0 a rotary jaw's chord, opening = 2 jaw_length sin(rad / 2)."""

    servo_id: int
    actuator: str
    joint: str | None = None
    rad_range: tuple[float, float] | None = None
    ctrl_range: tuple[float, float] | None = None
    jaw_length: float = 0.0

    def _scale(self) -> tuple[float, float, float, float]:
        if self.rad_range is None or self.ctrl_range is None:
            return 0.0, 1.0, 0.0, 1.0
        return (*self.rad_range, *self.ctrl_range)

    def to_length(self, rad: float) -> float:
        """The actuator length (ctrl) of a servo angle."""
        if self.jaw_length > 0:
            return 2 * self.jaw_length * math.sin(rad / 2)
        r0, r1, c0, c1 = self._scale()
        return c0 + (rad - r0) * (c1 - c0) / (r1 - r0)

    def to_rad(self, length: float) -> float:
        """The servo angle of an actuator length."""
        if self.jaw_length > 0:
            return 2 * math.asin(max(-1.0, min(1.0, length / (2 * self.jaw_length))))
        r0, r1, c0, c1 = self._scale()
        return r0 + (length - c0) * (r1 - r0) / (c1 - c0)

    def rad_per_length(self, length: float) -> float:
        """d(servo angle) / d(actuator length) at `length`."""
        if self.jaw_length > 0:
            return 1.0 / max(1e-6, self.jaw_length * math.cos(self.to_rad(length) / 2))
        r0, r1, c0, c1 = self._scale()
        return (r1 - r0) / (c1 - c0)


@dataclass(frozen=True)
class ServoCalibration:
    """A servo's true mounting: ticks = offset_ticks + direction * rad * ticks_per_rev / (2 pi)."""

    servo_id: int
    offset_ticks: int
    direction: int
    ticks_per_rev: int = TICKS_PER_REV

    def ticks(self, rad: float) -> float:
        return self.offset_ticks + self.direction * rad * self.ticks_per_rev / (2 * math.pi)

    def rad(self, ticks: float) -> float:
        return self.direction * (ticks - self.offset_ticks) * 2 * math.pi / self.ticks_per_rev


def true_calibration(servos: list[PlantServo], seed: int = 0, max_offset_deg: float = 4.0) -> list[ServoCalibration]:
    """The plant's hidden calibration: per servo an offset within +-max_offset_deg of the centre
    (at least 1 degree off) and a random direction, from `seed`."""
    rng = random.Random(seed)
    out = []
    for s in servos:
        deg = rng.uniform(1.0, max_offset_deg) * rng.choice((-1, 1))
        out.append(ServoCalibration(s.servo_id, CENTRE + round(deg * TICKS_PER_REV / 360), rng.choice((-1, 1))))
    return out


def sim_dir() -> Path:
    """The MJCF directory: `$ROBOT_RL_SIM_DIR`, else `<repo>/sim`."""
    return Path(os.environ.get("ROBOT_RL_SIM_DIR") or Path(__file__).resolve().parents[2] / "sim")


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """An MJCF path: an existing file, else `<name>` or `<name>.xml` in `sim_dir()`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for cand in (sim_dir() / path, sim_dir() / f"{path}.xml"):
        if cand.is_file():
            return cand
    raise UserError(f"MuJoCo model {name_or_path} not found (looked in {sim_dir()}; set ROBOT_RL_SIM_DIR)")


def _load(model: str | os.PathLike | mujoco.MjModel) -> mujoco.MjModel:
    return model if isinstance(model, mujoco.MjModel) else mujoco.MjModel.from_xml_path(str(resolve_model(model)))


def plant_servos_for(
    model: str | os.PathLike | mujoco.MjModel,
    ids: list[int] | None = None,
    gripper_rad: tuple[float, float] = (0.0, GRIPPER_RAD_OPEN),
    jaw_length: float = 0.0,
) -> list[PlantServo]:
    """The servos of an arm MJCF, one per position actuator in actuator order (ids 1..n unless
    given): an actuator on a hinge joint maps 1:1; one on a slide joint or a tendon is a gripper whose
    servo angle `gripper_rad` (closed, open) maps onto its ctrlrange (the jaw opening): linearly, or as
    a rotary jaw's chord with `jaw_length` > 0 (see `PlantServo`)."""
    m = _load(model)
    servos = []
    for a in range(m.nu):
        if m.actuator_biastype[a] != mujoco.mjtBias.mjBIAS_AFFINE:
            continue  # not a position servo
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) or f"actuator{a}"
        sid = ids[len(servos)] if ids else len(servos) + 1
        trn, target = m.actuator_trntype[a], m.actuator_trnid[a, 0]
        hinge = trn == mujoco.mjtTrn.mjTRN_JOINT and m.jnt_type[target] == mujoco.mjtJoint.mjJNT_HINGE
        if hinge:
            servos.append(PlantServo(sid, name, mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, target)))
        else:
            lo, hi = (float(v) for v in m.actuator_ctrlrange[a])
            joint = None
            if trn == mujoco.mjtTrn.mjTRN_JOINT:
                joint = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, target)
            servos.append(PlantServo(sid, name, joint, tuple(gripper_rad), (lo, hi), float(jaw_length)))
    if ids and len(ids) != len(servos):
        raise UserError(f"{len(ids)} servo ids given for the {len(servos)} position actuators of the model")
    return servos


def load_servo_map(path: str | os.PathLike) -> list[PlantServo]:
    """An explicit servo map from JSON: a list of {"servo_id", "actuator", "joint"?, "rad_range"?,
    "ctrl_range"?} (a gripper: rad_range = [rad_closed, rad_open], ctrl_range = [opening closed, open])."""
    import json

    try:
        items = json.loads(Path(path).read_text())
        return [
            PlantServo(
                int(d["servo_id"]),
                str(d["actuator"]),
                d.get("joint"),
                tuple(d["rad_range"]) if d.get("rad_range") else None,
                tuple(d["ctrl_range"]) if d.get("ctrl_range") else None,
                float(d.get("jaw_length", 0.0)),
            )
            for d in items
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"servo map {path}: {exc}; expected a JSON list of {{servo_id, actuator, joint, ...}}"
        ) from None


# ---------------------------------------------------------------------- the plant
class _Servo:
    """One emulated servo's registers and injected faults."""

    def __init__(self, spec: PlantServo, cal: ServoCalibration, actuator: int, temp: float) -> None:
        self.spec, self.cal, self.act = spec, cal, actuator
        self.torque = False
        self.goal_raw = 0
        self.temp = temp
        self.temp_override: float | None = None
        self.error_override = 0
        self.silent = False
        self.regs = bytearray(128)  # other registers, as written


class Plant:
    """MuJoCo physics in real time behind emulated Feetech servos on a pty and a side channel."""

    def __init__(
        self,
        model: str | os.PathLike,
        servos: list[PlantServo] | None = None,
        *,
        seed: int = 0,
        keyframe: str | int | None = 0,
        object_body: str = "cube",
        voltage_dv: int = 74,
        ambient_c: float = 25.0,
        max_temp_c: int = 70,
        rate: float = 1.0,
        torque_on_boot: bool = False,
    ) -> None:
        self.model_path = resolve_model(model)
        self.m = mujoco.MjModel.from_xml_path(str(self.model_path))
        self.d = mujoco.MjData(self.m)
        if keyframe is not None and self.m.nkey:
            key = keyframe
            if isinstance(keyframe, str):
                key = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_KEY, keyframe)
            if key >= 0:
                mujoco.mj_resetDataKeyframe(self.m, self.d, key)
        mujoco.mj_forward(self.m, self.d)
        self.specs = servos if servos is not None else plant_servos_for(self.m)
        self.calibration = true_calibration(self.specs, seed)
        self.voltage_dv, self.ambient_c, self.max_temp_c, self.rate = voltage_dv, ambient_c, max_temp_c, rate
        self.servos: dict[int, _Servo] = {}
        for spec, cal in zip(self.specs, self.calibration, strict=True):
            act = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_ACTUATOR, spec.actuator)
            if act < 0:
                raise UserError(f"actuator {spec.actuator} (servo {spec.servo_id}) not in {self.model_path.name}")
            if spec.joint and mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_JOINT, spec.joint) < 0:
                raise UserError(f"joint {spec.joint} (servo {spec.servo_id}) not in {self.model_path.name}")
            s = _Servo(spec, cal, act, ambient_c)
            s.goal_raw = sm_encode(round(cal.ticks(spec.to_rad(float(self.d.actuator_length[act])))))
            self.servos[spec.servo_id] = s
        self._gain = self.m.actuator_gainprm[:, 0].copy()
        self._bias = self.m.actuator_biasprm[:, :3].copy()
        for s in self.servos.values():
            self._set_torque(s, torque_on_boot)
            self.d.ctrl[s.act] = self.d.actuator_length[s.act]
        self.object_body = object_body
        obj = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_BODY, object_body)
        self._obj_qadr = None
        if obj >= 0 and self.m.body_jntnum[obj] == 1 and self.m.jnt_type[self.m.body_jntadr[obj]] == 0:
            jnt = self.m.body_jntadr[obj]
            self._obj_qadr, self._obj_vadr = self.m.jnt_qposadr[jnt], self.m.jnt_dofadr[jnt]
        self.lock = threading.Lock()
        self._held: dict[int, tuple[float, int]] = {}  # qpos address -> (value held at, dof address): rpc_hold
        self.parser = StsParser()
        self.bus_stats = dict(packets=0, replies=0, sync_writes=0, sync_reads=0, unknown=0, bytes_in=0)
        self.phys_stats = dict(steps=0, overruns=0, max_lag_s=0.0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._master = self._slave = -1
        self.bus_path: Path | None = None
        self.pty_name = ""
        self._listener: Listener | None = None
        self.side_path: Path | None = None
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    # ------------------------------------------------------------------ servo model
    def _set_torque(self, s: _Servo, on: bool) -> None:
        s.torque = on
        a = s.act
        self.m.actuator_gainprm[a, 0] = self._gain[a] if on else 0.0
        self.m.actuator_biasprm[a, :3] = self._bias[a] if on else 0.0
        if on:  # hold where the goal register points
            self._apply_goal(s)

    def _apply_goal(self, s: _Servo) -> None:
        rad = s.cal.rad(sm_decode(s.goal_raw))
        self.d.ctrl[s.act] = s.spec.to_length(rad)

    def _load_frac(self, s: _Servo) -> float:
        lo, hi = self.m.actuator_forcerange[s.act]
        fmax = max(abs(lo), abs(hi)) if self.m.actuator_forcelimited[s.act] else max(1.0, abs(self._gain[s.act]))
        return float(self.d.actuator_force[s.act]) / fmax

    def _present(self, s: _Servo) -> bytes:
        """The 8 bytes at address 56: position, speed, load, voltage, temperature."""
        length, vel = float(self.d.actuator_length[s.act]), float(self.d.actuator_velocity[s.act])
        pos = round(s.cal.ticks(s.spec.to_rad(length)))
        speed = round(s.cal.direction * vel * s.spec.rad_per_length(length) * s.cal.ticks_per_rev / (2 * math.pi))
        frac = s.cal.direction * self._load_frac(s)
        load = min(1000, round(abs(frac) * 1000)) | (0x400 if frac < 0 else 0)
        temp = s.temp if s.temp_override is None else s.temp_override
        return (
            sm_encode(pos).to_bytes(2, "little")
            + sm_encode(speed).to_bytes(2, "little")
            + load.to_bytes(2, "little")
            + bytes((self.voltage_dv & 0xFF, max(0, min(255, round(temp)))))
        )

    def _error(self, s: _Servo) -> int:
        temp = s.temp if s.temp_override is None else s.temp_override
        return s.error_override | (ERR_TEMP if temp > self.max_temp_c else 0)

    def _read_regs(self, s: _Servo, addr: int, n: int) -> bytes:
        regs = bytearray(s.regs)
        regs[ADDR_ID] = s.spec.servo_id
        regs[ADDR_MAX_TEMP] = self.max_temp_c
        regs[ADDR_TORQUE] = int(s.torque)
        regs[ADDR_GOAL : ADDR_GOAL + 2] = s.goal_raw.to_bytes(2, "little")
        regs[ADDR_PRESENT : ADDR_PRESENT + PRESENT_LEN] = self._present(s)
        return bytes(regs[addr : addr + n]).ljust(n, b"\x00")

    def _write_regs(self, s: _Servo, addr: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            if addr + i < len(s.regs):
                s.regs[addr + i] = byte
        if addr <= ADDR_GOAL + 1 and addr + len(data) > ADDR_GOAL:
            s.goal_raw = int.from_bytes(s.regs[ADDR_GOAL : ADDR_GOAL + 2], "little")
            if s.torque:
                self._apply_goal(s)
        if addr <= ADDR_TORQUE < addr + len(data):
            on = bool(data[ADDR_TORQUE - addr])
            if on != s.torque:
                self._set_torque(s, on)

    def handle_packet(self, sid: int, instr: int, params: bytes) -> bytes:
        """The bytes the servos put on the bus in answer to one instruction packet."""
        self.bus_stats["packets"] += 1
        out = b""
        with self.lock:
            s = self.servos.get(sid)
            if instr == INST_PING and s is not None and not s.silent:
                out = sts_status(sid, self._error(s))
            elif instr == INST_READ and s is not None and not s.silent and len(params) == 2:
                out = sts_status(sid, self._error(s), self._read_regs(s, params[0], params[1]))
            elif instr == INST_WRITE and len(params) >= 1:
                targets = self.servos.values() if sid == BROADCAST else [s] if s is not None else []
                for t in targets:
                    self._write_regs(t, params[0], params[1:])
                if s is not None and not s.silent:
                    out = sts_status(sid, self._error(s))
            elif instr == INST_SYNC_WRITE and sid == BROADCAST and len(params) >= 2:
                self.bus_stats["sync_writes"] += 1
                addr, n = params[0], params[1]
                for i in range(2, len(params) - n, n + 1):
                    t = self.servos.get(params[i])
                    if t is not None:
                        self._write_regs(t, addr, params[i + 1 : i + 1 + n])
            elif instr == INST_SYNC_READ and sid == BROADCAST and len(params) >= 2:
                self.bus_stats["sync_reads"] += 1
                addr, n = params[0], params[1]
                parts = []
                for i in params[2:]:
                    t = self.servos.get(i)
                    if t is not None and not t.silent:
                        parts.append(sts_status(i, self._error(t), self._read_regs(t, addr, n)))
                out = b"".join(parts)
            elif s is not None or sid == BROADCAST:
                self.bus_stats["unknown"] += 1
        if out:
            self.bus_stats["replies"] += 1
        return out

    # ------------------------------------------------------------------ threads
    def _physics(self) -> None:
        dt = self.m.opt.timestep
        t0, sim0 = time.perf_counter(), self.d.time
        last_temp = t0
        while not self._stop.is_set():
            now = time.perf_counter()
            target = sim0 + (now - t0) * self.rate
            with self.lock:
                n = 0
                while self.d.time < target and n < 10:
                    mujoco.mj_step(self.m, self.d)
                    self._apply_hold()
                    n += 1
                self.phys_stats["steps"] += n
                lag = target - self.d.time
                if now - last_temp > 0.05:
                    self._heat(now - last_temp)
                    last_temp = now
            self.phys_stats["max_lag_s"] = max(self.phys_stats["max_lag_s"], lag)
            if lag > 0.1:  # fell behind (a loaded machine): count it and carry on from here
                self.phys_stats["overruns"] += 1
                t0, sim0 = time.perf_counter(), self.d.time
            if n < 10:
                time.sleep(max(0.0, (self.d.time + dt - target) / self.rate))

    def _heat(self, dt: float, tau: float = 120.0, rise: float = 45.0) -> None:
        for s in self.servos.values():
            hot = self.ambient_c + rise * self._load_frac(s) ** 2
            s.temp += (hot - s.temp) * min(1.0, dt / tau)

    def _bus(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                time.sleep(0.01)
                continue
            self.bus_stats["bytes_in"] += len(data)
            reply = b"".join(self.handle_packet(*p) for p in self.parser.feed(data))
            if reply:
                try:
                    os.write(self._master, reply)
                except OSError:
                    pass

    def start_bus(self, path: str | os.PathLike) -> str:
        """Create the servo bus pty, symlink `path` to it; returns the pty's name."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # before anyone writes: no echo, no line editing
        self.pty_name = os.ttyname(self._slave)
        self.bus_path = Path(path)
        if self.bus_path.is_symlink() or self.bus_path.exists():
            self.bus_path.unlink()
        self.bus_path.symlink_to(self.pty_name)
        return self.pty_name

    def start(self, bus: str | os.PathLike | None = None, side: str | os.PathLike | None = None) -> None:
        """Start the physics thread, and the bus and side channel where paths are given."""
        if bus is not None:
            self.start_bus(bus)
        if side is not None:
            self.side_path = Path(side)
            if self.side_path.exists():
                self.side_path.unlink()
            self._listener = Listener(str(self.side_path), "AF_UNIX", authkey=self.authkey)
            os.chmod(self.side_path, 0o600)
        targets = [self._physics] + ([self._bus] if bus is not None else []) + ([self._serve] if side else [])
        for fn in targets:
            th = threading.Thread(target=fn, name=f"plant{fn.__name__}", daemon=True)
            th.start()
            self._threads.append(th)

    authkey = DEFAULT_AUTHKEY

    def stop(self) -> None:
        """Stop the threads, close the pty and the socket, remove their paths."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        for th in self._threads:
            th.join(timeout=2)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        for p in (self.bus_path, self.side_path):
            if p is not None and (p.is_symlink() or p.exists()):
                p.unlink()

    # ------------------------------------------------------------------ side channel
    def _serve(self) -> None:
        conns: list[Connection] = []
        pending: list[Connection] = []

        def accept() -> None:
            while not self._stop.is_set():
                try:
                    pending.append(self._listener.accept())
                except (OSError, EOFError):
                    if self._stop.is_set():
                        return
                except Exception:  # a client with the wrong authkey
                    continue

        threading.Thread(target=accept, name="plant_accept", daemon=True).start()
        while not self._stop.is_set():
            while pending:
                conns.append(pending.pop())
            if not conns:
                time.sleep(0.02)
                continue
            for c in wait(conns, timeout=0.02):
                try:
                    name, args, kwargs = c.recv()
                except (EOFError, OSError):
                    conns.remove(c)
                    continue
                try:
                    fn = getattr(self, f"rpc_{name}", None)
                    if fn is None:
                        raise UserError(f"the plant has no side-channel call {name}")
                    reply = (True, fn(*args, **kwargs))
                except Exception as exc:  # the client raises it
                    reply = (False, f"{type(exc).__name__}: {exc}")
                try:
                    c.send(reply)
                except OSError:
                    conns.remove(c)
        for r in self._renderers.values():  # in the thread whose GL context they hold
            r.close()
        for c in conns:
            c.close()

    def rpc_ping(self) -> str:
        return "pong"

    def rpc_sim_time(self) -> float:
        return float(self.d.time)

    def rpc_object_pos(self) -> np.ndarray:
        with self.lock:
            return self.d.qpos[self._obj_qadr : self._obj_qadr + 3].copy()

    def rpc_object_quat(self) -> np.ndarray:
        with self.lock:
            return self.d.qpos[self._obj_qadr + 3 : self._obj_qadr + 7].copy()

    def rpc_set_object_pose(self, pos, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
        with self.lock:
            q = self._obj_qadr
            self.d.qpos[q : q + 3] = pos
            self.d.qpos[q + 3 : q + 7] = np.asarray(quat, float) / np.linalg.norm(quat)
            self.d.qvel[self._obj_vadr : self._obj_vadr + 6] = 0
            mujoco.mj_forward(self.m, self.d)

    def rpc_camera_names(self) -> list[str]:
        return [mujoco.mj_id2name(self.m, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.m.ncam)]

    def rpc_render(self, camera: str, height: int = 240, width: int = 320) -> np.ndarray:
        r = self._renderers.get((height, width))
        if r is None:
            r = self._renderers[(height, width)] = mujoco.Renderer(self.m, height, width)
        with self.lock:
            r.update_scene(self.d, camera)
        return r.render()

    def rpc_joint_positions(self) -> dict[str, float]:
        """Ground truth: qpos of each servo's joint (hinge or slide), by joint name."""
        with self.lock:
            return {
                s.spec.joint: float(self.d.qpos[self.m.jnt_qposadr[self.m.joint(s.spec.joint).id]])
                for s in self.servos.values()
                if s.spec.joint
            }

    def rpc_servo_angles(self) -> dict[int, float]:
        """Ground truth: each servo's angle in the host's units (rad; a gripper's mapped from its opening)."""
        with self.lock:
            return {i: s.spec.to_rad(float(self.d.actuator_length[s.act])) for i, s in self.servos.items()}

    def rpc_servos(self) -> list[dict]:
        """Each servo's mapping, true calibration and angle range (rad), for tests and calibration."""
        out = []
        for s in self.servos.values():
            if s.spec.joint and s.spec.rad_range is None:
                jid = self.m.joint(s.spec.joint).id
                lo, hi = (float(v) for v in self.m.jnt_range[jid]) if self.m.jnt_limited[jid] else (-math.pi, math.pi)
            else:
                lo, hi = s.spec.rad_range or (-math.pi, math.pi)
            out.append(dict(asdict(s.spec), **asdict(s.cal), rad_min=lo, rad_max=hi, torque=s.torque))
        return out

    def rpc_stats(self) -> dict:
        return dict(
            self.bus_stats,
            **self.phys_stats,
            bad_checksum=self.parser.bad_checksum,
            garbage=self.parser.garbage,
            sim_time=float(self.d.time),
        )

    def rpc_hold(self, angles: dict[int, float] | None = None) -> None:
        """A person holding the limp arm: each servo `{servo_id: angle}` (its true angle, rad) is put there and
        kept there, whatever gravity does, until `hold(None)` lets go. What calibration needs on a bench."""
        held: dict[int, tuple[float, int]] = {}
        for sid, angle in (angles or {}).items():
            s = self.servos[int(sid)]
            length = s.spec.to_length(float(angle))
            if self.m.actuator_trntype[s.act] == mujoco.mjtTrn.mjTRN_JOINT:
                joint = int(self.m.actuator_trnid[s.act, 0])
                held[int(self.m.jnt_qposadr[joint])] = (length, int(self.m.jnt_dofadr[joint]))
            else:  # a fixed tendon (the parallel jaw): its joints share the length by their coefficients
                tendon = int(self.m.actuator_trnid[s.act, 0])
                first, count = self.m.tendon_adr[tendon], self.m.tendon_num[tendon]
                joints = [int(self.m.wrap_objid[w]) for w in range(first, first + count)]
                total = float(sum(self.m.wrap_prm[w] for w in range(first, first + count)))
                for j in joints:
                    held[int(self.m.jnt_qposadr[j])] = (length / total, int(self.m.jnt_dofadr[j]))
        with self.lock:
            self._held = held
            self._apply_hold()

    def _apply_hold(self) -> None:
        if self._held:
            for adr, (value, dof) in self._held.items():
                self.d.qpos[adr] = value
                self.d.qvel[dof] = 0.0
            mujoco.mj_forward(self.m, self.d)

    def rpc_set_servo(
        self,
        servo_id: int,
        temp: float | None = None,
        error: int | None = None,
        silent: bool | None = None,
        reset: bool = False,
    ) -> None:
        """Fault injection: a fixed temperature, error bits, a servo that stops answering; reset clears."""
        s = self.servos[servo_id]
        if reset:
            s.temp_override, s.error_override, s.silent = None, 0, False
        if temp is not None:
            s.temp_override = float(temp)
        if error is not None:
            s.error_override = int(error)
        if silent is not None:
            s.silent = bool(silent)


class PlantError(UserError):
    """A side-channel call failed in the plant."""


class PlantClient:
    """Client of a plant's side channel (thread-safe: one call at a time)."""

    def __init__(self, path: str | os.PathLike, authkey: bytes = DEFAULT_AUTHKEY, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._conn = Client(str(path), "AF_UNIX", authkey=authkey)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise PlantError(
                        f"no plant side channel at {path} after {timeout:g} s; is the plant running?"
                    ) from None
                time.sleep(0.05)
        self._lock = threading.Lock()

    def call(self, name: str, *args, **kwargs):
        with self._lock:
            self._conn.send((name, args, kwargs))
            ok, value = self._conn.recv()
        if not ok:
            raise PlantError(f"plant {name}: {value}")
        return value

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PlantClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> str:
        return self.call("ping")

    def sim_time(self) -> float:
        return self.call("sim_time")

    def object_pos(self) -> np.ndarray:
        return self.call("object_pos")

    def object_quat(self) -> np.ndarray:
        return self.call("object_quat")

    def set_object_pose(self, pos, quat=(1.0, 0.0, 0.0, 0.0)) -> None:
        self.call("set_object_pose", list(map(float, pos)), list(map(float, quat)))

    def camera_names(self) -> list[str]:
        return self.call("camera_names")

    def render(self, camera: str, height: int = 240, width: int = 320) -> np.ndarray:
        return self.call("render", camera, height, width)

    def joint_positions(self) -> dict[str, float]:
        return self.call("joint_positions")

    def servo_angles(self) -> dict[int, float]:
        return self.call("servo_angles")

    def servos(self) -> list[dict]:
        return self.call("servos")

    def stats(self) -> dict:
        return self.call("stats")

    def hold(self, angles: dict[int, float] | None) -> None:
        self.call("hold", angles)

    def set_servo(self, servo_id: int, **kwargs) -> None:
        self.call("set_servo", servo_id, **kwargs)


def joint_configs(servos: list[dict], **limits):
    """Host `JointConfig`s matching a plant's servos (`PlantClient.servos()`): its true calibration
    and angle ranges; `limits` overrides vel_max/step_max/max_temp_c."""
    from robot_rl.hardware.firmware import JointConfig

    return [
        JointConfig(
            joint=i,
            servo_id=s["servo_id"],
            direction=s["direction"],
            offset_ticks=s["offset_ticks"],
            ticks_per_rev=s["ticks_per_rev"],
            pos_min=s["rad_min"],
            pos_max=s["rad_max"],
            **limits,
        )
        for i, s in enumerate(servos)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robot_rl.hardware.plant", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="panda_pick_cube.xml", help="MJCF path or name in sim/")
    ap.add_argument("--bus", required=True, help="symlink to create for the servo bus pty")
    ap.add_argument("--side", help="UNIX socket path of the side channel")
    ap.add_argument("--ids", help="servo ids, comma separated (default 1..n)")
    ap.add_argument("--servo-map", help="JSON servo map (default: inferred from the model's position actuators)")
    ap.add_argument(
        "--gripper-open", type=float, default=GRIPPER_RAD_OPEN, help="gripper servo angle of a fully open jaw (rad)"
    )
    ap.add_argument(
        "--gripper-jaw-length", type=float, default=0.0, help="rotary jaw: pivot to pads (m); 0: linear map"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the true calibration")
    ap.add_argument("--keyframe", default="0", help="initial keyframe (name or index; 'none')")
    ap.add_argument("--object", default="cube", help="free body reported by object_pos")
    ap.add_argument("--rate", type=float, default=1.0, help="sim seconds per wall second")
    ap.add_argument("--torque-on", action="store_true", help="servos hold their position at power-up")
    args = ap.parse_args(argv)
    key: str | int | None = args.keyframe
    if args.keyframe == "none":
        key = None
    elif args.keyframe.isdigit():
        key = int(args.keyframe)
    try:
        ids = [int(v) for v in args.ids.split(",")] if args.ids else None
        plant = Plant(
            args.model,
            load_servo_map(args.servo_map)
            if args.servo_map
            else plant_servos_for(resolve_model(args.model), ids, (0.0, args.gripper_open), args.gripper_jaw_length),
            seed=args.seed,
            keyframe=key,
            object_body=args.object,
            rate=args.rate,
            torque_on_boot=args.torque_on,
        )
        authkey = os.environ.get("ROBOT_RL_PLANT_AUTHKEY")
        if authkey:
            plant.authkey = authkey.encode()
        plant.start(args.bus, args.side)
    except (UserError, OSError, ValueError) as exc:
        print(f"plant error: {exc}", file=sys.stderr, flush=True)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    ids_text = ",".join(str(i) for i in plant.servos)
    print(f"plant ready bus={args.bus} pty={plant.pty_name} side={args.side} servos={ids_text}", flush=True)
    done.wait()
    plant.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
