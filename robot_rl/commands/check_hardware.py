"""`robot-rl check-hardware robot=serial robot.port=/dev/ttyUSB0`: what the firmware and its servos report,
and how fast the link is — without arming anything.

Prints the firmware (protocol, version, back-end, servos, watchdog), its mode, the e-stop input, latched
faults, each servo (position, speed, load, temperature, error bits), the command round trip (p50/p99 over
`samples` heartbeats at `rate_hz`) and the achieved rate, and the firmware's counters. `clear=true` clears
a latched e-stop or fault (the e-stop input must be released first): the explicit clear the latch waits
for. Exit status 0 when the firmware is ready to arm, 1 when an e-stop or fault is latched.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robot_rl.config import UserError, count_arg
from robot_rl.hardware import protocol as P
from robot_rl.hardware.firmware import FirmwareClient
from robot_rl.hardware.link import SerialLink
from robot_rl.hardware.rig import SimRig

CONFIG = "check_hardware"


def open_firmware(cfg: DictConfig, stack: ExitStack) -> tuple[FirmwareClient, str, SimRig | None]:
    """A FirmwareClient on `cfg.robot` (a serial robot; `port=sim` starts the simulated rig), closed by
    `stack`; the port's name; the rig (None on a real port)."""
    robot = OmegaConf.to_container(cfg.robot, resolve=True)
    if robot.get("name") != "serial":
        raise UserError(f"{cfg.get('command', 'this command')} needs robot=serial (got robot={robot.get('name')})")
    port = str(robot["port"])
    rig = None
    if port == "sim":
        from robot_rl.robots.serial import sim_rig

        rig = stack.enter_context(sim_rig(robot["model"]))
        path = str(rig.link_path)
    else:
        path = port
    link = stack.enter_context(SerialLink(path, baud=int(robot["baud"]), open_now=False))
    link.open()
    return FirmwareClient(link), port, rig


def servo_table(state: P.State) -> list[dict]:
    return [
        {
            "joint": i,
            "pos_rad": round(j.pos, 4),
            "vel_rad_s": round(j.vel, 3),
            "load_permille": j.load,
            "temp_c": j.temp,
            "error": j.error,
        }
        for i, j in enumerate(state.joints)
    ]


def check(cfg: DictConfig) -> dict:
    """The report (a dict, also printed)."""
    samples, rate = count_arg(cfg, "samples", 1), float(cfg.rate_hz)
    if not rate > 0:
        raise UserError(f"rate_hz={cfg.rate_hz} must be positive")
    with ExitStack() as stack:
        fw, port, _ = open_firmware(cfg, stack)
        hello = fw.hello()
        if cfg.clear:
            fw.clear()
        period, times = 1.0 / rate, []
        start = time.monotonic()
        next_at = start
        for _ in range(samples):
            t0 = time.perf_counter()
            state = fw.heartbeat()
            times.append(time.perf_counter() - t0)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        achieved = samples / (time.monotonic() - start)
        counters = fw.counters()
        faults = [f"{f.code.name} joint {f.joint} detail {f.detail}" for f in fw.drain_faults()]
        stats = fw.link.stats.summary()
    rtt = np.asarray(times) * 1e3
    report = {
        "port": port,
        "firmware": {
            "protocol": hello.protocol_version,
            "version": f"{hello.firmware_version >> 8}.{hello.firmware_version & 0xFF}",
            "backend": hello.backend.name.lower(),
            "servos": hello.n_joints,
            "watchdog_ms": hello.watchdog_ms,
        },
        "mode": state.mode.name.lower(),
        "estop_input": bool(state.flags & P.FLAG_ESTOP_INPUT),
        "latched_fault": state.fault.name.lower(),
        "servos": servo_table(state),
        "round_trip_ms": {
            "p50": float(np.percentile(rtt, 50)),
            "p99": float(np.percentile(rtt, 99)),
            "max": float(rtt.max()),
        },
        "rate_hz": {"asked": rate, "achieved": round(achieved, 1)},
        "counters": counters,
        "link": {k: stats[k] for k in ("bad_frames", "timeouts", "reconnects", "seq_gaps")},
        "faults_reported": faults,
    }
    return report


def run(cfg: DictConfig) -> int:
    report = check(cfg)
    fw, rtt = report["firmware"], report["round_trip_ms"]
    print(
        f"firmware on {report['port']}: protocol {fw['protocol']}, version {fw['version']}, {fw['backend']} back-end, "
        f"{fw['servos']} servos, watchdog {fw['watchdog_ms']} ms"
    )
    print(
        f"mode {report['mode']}, e-stop input {'PRESSED' if report['estop_input'] else 'released'}, "
        f"latched fault {report['latched_fault']}"
    )
    print("servo  pos_rad  vel_rad_s  load_permille  temp_c  error")
    for s in report["servos"]:
        print(
            f"{s['joint']:5d}  {s['pos_rad']:7.3f}  {s['vel_rad_s']:9.3f}  {s['load_permille']:13d}  "
            f"{s['temp_c']:6d}  0x{s['error']:02x}"
        )
    print(
        f"round trip p50 {rtt['p50']:.2f} ms, p99 {rtt['p99']:.2f} ms, max {rtt['max']:.2f} ms at "
        f"{report['rate_hz']['achieved']:.0f} Hz (asked {report['rate_hz']['asked']:.0f})"
    )
    print("counters: " + ", ".join(f"{k} {v}" for k, v in report["counters"].items()))
    for fault in report["faults_reported"]:
        print(f"fault reported: {fault}")
    print(json.dumps(report))
    latched = report["mode"] in ("estop", "fault")
    if latched:
        print(f"{report['mode']} latched: release the e-stop / fix the cause, then rerun with clear=true")
    return 1 if latched else 0
