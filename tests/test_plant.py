"""The MuJoCo plant: Feetech STS bytes on its pty, real-time physics, limp torque-off, the side
channel, and firmware-in-the-loop (robot_fw on the plant's bus, driven by FirmwareClient)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import serial
from firmware_proc import Firmware, PlantProc

from robot_rl.hardware import plant as PL
from robot_rl.hardware import protocol as P
from robot_rl.hardware.firmware import FirmwareClient
from robot_rl.hardware.link import SerialLink

PENDULUM = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <body name="arm" pos="0 0 1">
      <joint name="swing" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02" mass="0.5"/>
      <body name="jaw" pos="0.3 0 0">
        <joint name="jaw" type="slide" axis="0 0 1" range="0 0.05"/>
        <geom type="box" size="0.01 0.01 0.01" mass="0.01"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="swing" joint="swing" kp="40" kv="2" forcerange="-10 10"/>
    <position name="jaw" joint="jaw" kp="50" kv="2" ctrlrange="0 0.05" forcerange="-5 5"/>
  </actuator>
</mujoco>
"""


def checksum(body: bytes) -> int:
    """The STS checksum, written out independently of the plant's."""
    return (~(sum(body) & 0xFF)) & 0xFF


def packet(sid: int, instr: int, params: bytes = b"") -> bytes:
    body = bytes([sid, len(params) + 2, instr]) + params
    return b"\xff\xff" + body + bytes([checksum(body)])


def signed(lo: int, hi: int, bit: int = 15) -> int:
    raw = lo | hi << 8
    return -(raw & ((1 << bit) - 1)) if raw & (1 << bit) else raw & ((1 << bit) - 1)


class Bus:
    """The host end of the plant's servo bus, speaking raw Feetech bytes with pyserial."""

    def __init__(self, path: Path) -> None:
        self.ser = serial.Serial(str(path), 1_000_000, timeout=0.2)

    def xfer(self, pkt: bytes, n: int) -> bytes:
        self.ser.reset_input_buffer()
        self.ser.write(pkt)
        return self.ser.read(n) if n else b""

    def sync_write(self, addr: int, per_servo: dict[int, bytes]) -> None:
        n = len(next(iter(per_servo.values())))
        params = bytes([addr, n]) + b"".join(bytes([i]) + d for i, d in per_servo.items())
        self.xfer(packet(0xFE, 0x83, params), 0)

    def present(self, ids: list[int]) -> dict[int, tuple[int, int, int, int, int, int]]:
        """SYNC_READ of 56..63: {id: (pos, speed, load, voltage, temp, error)}."""
        raw = self.xfer(packet(0xFE, 0x82, bytes([56, 8, *ids])), 14 * len(ids))
        assert len(raw) == 14 * len(ids), raw.hex()
        out = {}
        for k, sid in enumerate(ids):
            r = raw[14 * k : 14 * (k + 1)]
            assert r[:5] == bytes([0xFF, 0xFF, sid, 10, r[4]]) and r[13] == checksum(r[2:13])
            d = r[5:13]
            out[sid] = (signed(d[0], d[1]), signed(d[2], d[3]), signed(d[4], d[5], 10), d[6], d[7], r[4])
        return out

    def goal(self, sid: int, ticks: float) -> None:
        t = round(ticks)
        raw = (abs(t) | (0x8000 if t < 0 else 0)).to_bytes(2, "little")
        self.sync_write(42, {sid: raw})

    def close(self) -> None:
        self.ser.close()


@pytest.fixture
def panda(tmp_path):
    plant = PL.Plant("panda_pick_cube", seed=7)
    plant.start(bus=tmp_path / "bus")
    bus = Bus(tmp_path / "bus")
    yield plant, bus
    bus.close()
    plant.stop()


def test_servo_map_inferred_from_mjcf() -> None:
    servos = PL.plant_servos_for("panda_pick_cube")
    assert [s.servo_id for s in servos] == list(range(1, 9))
    assert [s.joint for s in servos[:7]] == [f"joint{i}" for i in range(1, 8)]
    grip = servos[7]
    assert grip.actuator == "gripper" and grip.joint is None and grip.ctrl_range == (0.0, 0.08)
    assert grip.to_length(PL.GRIPPER_RAD_OPEN) == pytest.approx(0.08) and grip.to_length(0.0) == 0.0
    cal = PL.true_calibration(servos, seed=7)
    assert cal == PL.true_calibration(servos, seed=7) != PL.true_calibration(servos, seed=8)
    assert all(1 <= abs(c.offset_ticks - 2048) * 360 / 4096 <= 4.1 and c.direction in (-1, 1) for c in cal)
    assert {c.direction for c in cal} == {-1, 1}


def test_rotary_jaw_map() -> None:
    jaw = PL.PlantServo(6, "gripper", None, (0.0, 1.745), (0.0, 0.07), jaw_length=0.08)
    q_open = 2 * math.asin(0.07 / 0.16)
    assert jaw.to_length(q_open) == pytest.approx(0.07) and jaw.to_rad(0.07) == pytest.approx(q_open)
    assert jaw.to_length(0.5) == pytest.approx(0.16 * math.sin(0.25))
    eps = 1e-6
    assert jaw.rad_per_length(0.03) == pytest.approx((jaw.to_rad(0.03 + eps) - jaw.to_rad(0.03 - eps)) / (2 * eps))


@pytest.mark.skipif(not (PL.sim_dir() / "so101_pick_cube.xml").is_file(), reason="no SO-101 model in sim/")
def test_so101_plant(tmp_path) -> None:
    servos = PL.plant_servos_for("so101_pick_cube", gripper_rad=(0.0, 1.745), jaw_length=0.08)
    names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]
    assert [s.joint for s in servos[:5]] == names and servos[5].actuator == "gripper"
    plant = PL.Plant("so101_pick_cube", servos, seed=2)
    plant.start(bus=tmp_path / "bus")
    bus = Bus(tmp_path / "bus")
    try:
        s2, sg = plant.servos[2], plant.servos[6]
        q0 = plant.rpc_joint_positions()["shoulder_lift"]
        bus.goal(2, s2.cal.ticks(q0 + 0.3))
        bus.goal(6, sg.cal.ticks(0.5))
        bus.sync_write(40, {2: b"\x01", 6: b"\x01"})
        time.sleep(1.5)
        assert plant.rpc_joint_positions()["shoulder_lift"] == pytest.approx(q0 + 0.3, abs=0.02)
        assert plant.d.actuator_length[sg.act] == pytest.approx(0.16 * math.sin(0.25), abs=0.003)
        assert sg.cal.rad(bus.present([6])[6][0]) == pytest.approx(0.5, abs=0.03)
    finally:
        bus.close()
        plant.stop()


def test_feetech_bytes_per_spec(panda) -> None:
    plant, bus = panda
    assert bus.xfer(packet(1, 0x01), 6) == bytes.fromhex("ffff010200fc")  # PING -> status, no params
    assert bus.xfer(packet(9, 0x01), 6) == b""  # no servo 9: silence
    bad = bytearray(packet(2, 0x01))
    bad[-1] ^= 0xFF
    assert bus.xfer(bytes(bad), 6) == b""  # bad checksum: ignored
    assert plant.parser.bad_checksum == 1
    # READ torque enable (addr 40, 1 byte) -> status with one param: off at power-up
    assert bus.xfer(packet(3, 0x02, bytes([40, 1])), 7) == b"\xff\xff\x03\x03\x00\x00" + bytes(
        [checksum(b"\x03\x03\x00\x00")]
    )
    # SYNC_READ: each servo replies in order; positions are the true calibration of the model's joints
    truth = {i: s.spec.to_rad(float(plant.d.actuator_length[s.act])) for i, s in plant.servos.items()}
    state = bus.present([1, 4, 6, 8])
    for sid, (pos, speed, load, volt, temp, err) in state.items():
        cal = plant.servos[sid].cal
        assert pos == pytest.approx(cal.offset_ticks + cal.direction * truth[sid] * 4096 / (2 * math.pi), abs=2)
        assert abs(speed) < 20 and abs(load) <= 1000 and volt == 74 and 20 <= temp <= 30 and err == 0
    # garbage before a packet: the servos resynchronise on FF FF
    assert bus.xfer(b"\x00\x13\xff\x42" + packet(5, 0x01), 6) == packet(5, 0x00)[:-1] + bytes(
        [checksum(b"\x05\x02\x00")]
    )


def test_goal_moves_joint_in_real_time_and_gripper_maps_to_opening(panda) -> None:
    plant, bus = panda
    s4, sg = plant.servos[4], plant.servos[8]
    t_wall, t_sim = time.perf_counter(), plant.d.time
    bus.goal(4, s4.cal.ticks(-1.2))
    bus.goal(8, sg.cal.ticks(0.75))  # half open
    bus.sync_write(40, {4: b"\x01", 8: b"\x01"})
    time.sleep(1.5)
    sim_dt, wall_dt = plant.d.time - t_sim, time.perf_counter() - t_wall
    assert sim_dt == pytest.approx(wall_dt, rel=0.15), (sim_dt, wall_dt, plant.phys_stats)
    q4 = plant.d.qpos[plant.m.jnt_qposadr[plant.m.joint("joint4").id]]
    assert q4 == pytest.approx(-1.2, abs=0.01)
    opening = plant.d.actuator_length[sg.act]
    assert opening == pytest.approx(0.04, abs=0.003)
    pos = bus.present([4, 8])
    assert s4.cal.rad(pos[4][0]) == pytest.approx(-1.2, abs=0.01)
    assert sg.spec.to_rad(sg.spec.to_length(sg.cal.rad(pos[8][0]))) == pytest.approx(0.75, abs=0.05)


def test_torque_off_goes_limp(tmp_path) -> None:
    mjcf = tmp_path / "pendulum.xml"
    mjcf.write_text(PENDULUM)
    servos = PL.plant_servos_for(mjcf, ids=[11, 12])
    assert servos[1].rad_range == (0.0, PL.GRIPPER_RAD_OPEN) and servos[1].joint == "jaw"
    plant = PL.Plant(mjcf, servos, seed=1, torque_on_boot=True)
    plant.start(bus=tmp_path / "bus")
    bus = Bus(tmp_path / "bus")
    try:
        time.sleep(0.5)
        held = bus.present([11])[11]
        q = plant.d.qpos[0]
        assert abs(q) < 0.1 and abs(held[2]) > 20  # holding the arm up against gravity: load
        bus.sync_write(40, {11: b"\x00"})
        time.sleep(1.0)
        assert plant.d.qpos[0] > 1.0  # fell (+y rotation swings the tip down)
        assert bus.present([11])[11][2] == 0  # limp: no load
        assert bus.xfer(packet(11, 0x02, bytes([40, 1])), 7)[5] == 0
        bus.sync_write(40, {11: b"\x01"})  # torque back on: back to the goal register (as a real STS does)
        time.sleep(1.0)
        assert abs(plant.d.qpos[0]) < 0.1
    finally:
        bus.close()
        plant.stop()


def test_explicit_servo_map(tmp_path) -> None:
    mjcf = tmp_path / "pendulum.xml"
    mjcf.write_text(PENDULUM)
    smap = tmp_path / "servos.json"
    smap.write_text(
        '[{"servo_id": 21, "actuator": "swing", "joint": "swing"},'
        ' {"servo_id": 22, "actuator": "jaw", "joint": "jaw", "rad_range": [0.2, 1.2], "ctrl_range": [0, 0.05]}]'
    )
    servos = PL.load_servo_map(smap)
    assert servos[1] == PL.PlantServo(22, "jaw", "jaw", (0.2, 1.2), (0, 0.05))
    assert servos[1].to_length(1.2) == pytest.approx(0.05) and servos[1].to_rad(0.0) == pytest.approx(0.2)
    plant = PL.Plant(mjcf, servos)
    info = plant.rpc_servos()
    assert [s["servo_id"] for s in info] == [21, 22] and (info[1]["rad_min"], info[1]["rad_max"]) == (0.2, 1.2)
    assert plant.rpc_servo_angles()[22] == pytest.approx(0.2)  # the jaw at 0 opening: closed
    with pytest.raises(PL.UserError, match="actuator elbow .* not in pendulum.xml"):
        PL.Plant(mjcf, [PL.PlantServo(1, "elbow")])
    smap.write_text('[{"servo_id": 1}]')
    with pytest.raises(PL.UserError, match="servo map .*servos.json"):
        PL.load_servo_map(smap)


def test_side_channel(tmp_path) -> None:
    proc = PlantProc(tmp_path, "--seed", "3")
    try:
        with PL.PlantClient(proc.side) as plant:
            assert plant.ping() == "pong"
            assert set(plant.camera_names()) == {"front", "wrist"}
            assert np.allclose(plant.object_pos(), [0.5, 0.0, 0.02], atol=0.005)
            plant.set_object_pose([0.42, 0.1, 0.02], [0.0, 0.0, 0.0, 1.0])
            assert np.allclose(plant.object_pos(), [0.42, 0.1, 0.02], atol=0.005)
            assert abs(plant.object_quat()[3]) == pytest.approx(1.0, abs=0.01)
            servos = plant.servos()
            assert [s["servo_id"] for s in servos] == list(range(1, 9))
            assert servos[3]["rad_min"] == pytest.approx(-3.0718) and "offset_ticks" in servos[3]
            assert plant.joint_positions()["joint4"] == pytest.approx(-1.5708, abs=1e-3)
            t0 = plant.sim_time()
            time.sleep(0.5)
            assert 0.35 < plant.sim_time() - t0 < 0.65
            with pytest.raises(PL.PlantError, match="no side-channel call"):
                plant.call("nope")
        from multiprocessing import AuthenticationError

        with pytest.raises(AuthenticationError):
            PL.PlantClient(proc.side, authkey=b"wrong")
    finally:
        assert proc.stop() == 0, proc.output
    assert not proc.bus.exists() and not proc.side.exists()


def test_render(tmp_path, gl) -> None:
    proc = PlantProc(tmp_path)
    try:
        with PL.PlantClient(proc.side) as plant:
            img = plant.render("front", 96, 128)
            assert img.shape == (96, 128, 3) and img.dtype == np.uint8 and img.std() > 5
    finally:
        proc.stop()


# ---------------------------------------------------------------------- firmware in the loop


def test_firmware_in_the_loop(tmp_path, fw_binary) -> None:
    plant_proc = PlantProc(tmp_path / "plant", "--seed", "5")
    fw = None
    try:
        fw = Firmware(fw_binary, tmp_path / "fw", "--bus-timeout-us", "20000", joints=8, bus=str(plant_proc.bus))
        with PL.PlantClient(plant_proc.side) as plant, SerialLink(fw.link, timeout=0.2) as link:
            client = FirmwareClient(link)
            assert client.hello().n_joints == 8
            client.configure(watchdog_ms=200)
            servos = plant.servos()
            for cfg in PL.joint_configs(servos, step_max=0.05, vel_max=2.0):
                client.configure_joint(cfg)
            angles = plant.servo_angles()
            start = np.array([angles[s["servo_id"]] for s in servos])
            time.sleep(0.05)  # STATE reports the last control tick's reading: let a few ticks run
            state = client.heartbeat()
            measured = np.array([j.pos for j in state.joints])
            assert np.allclose(measured, start, atol=0.01), (measured, start)  # the true calibration reads true
            client.arm()
            goal = start + np.array([0.3, -0.2, 0.25, 0.3, -0.3, 0.2, 0.4, -0.6])
            t0 = time.perf_counter()
            for k in range(150):  # 1.5 s at 100 Hz: a ramp, then hold
                target = start + (goal - start) * min(1.0, k / 80)
                state = client.command(target)
                assert state.mode == P.Mode.ARMED and not state.flags & P.FLAG_REJECTED
                time.sleep(max(0.0, t0 + (k + 1) / 100 - time.perf_counter()))
            truth = plant.servo_angles()
            reached = np.array([truth[s["servo_id"]] for s in servos])
            assert np.allclose(reached[:7], goal[:7], atol=0.02), (reached - goal, plant.stats())
            assert reached[7] == pytest.approx(goal[7], abs=0.05)
            joints = plant.joint_positions()
            assert joints["joint1"] == pytest.approx(goal[0], abs=0.02)
            state = client.heartbeat()
            assert np.allclose([j.pos for j in state.joints][:7], goal[:7], atol=0.02)
            client.disarm()
            print(f"FIL: {link.stats.summary()} plant {plant.stats()}")
    finally:
        if fw is not None:
            fw.stop()
        plant_proc.stop()
