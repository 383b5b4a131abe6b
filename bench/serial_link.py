"""The serial link and the firmware's safety reactions, through the host build of the firmware on a pty.

Usage: python bench/serial_link.py [--seconds 10] [--trials 20] [--bus emulator|plant]

For each command rate (100 Hz, HIL-SERL's inner loop, and 500 Hz) the host sends JOINT_COMMANDs with
pyserial for `--seconds` and times each command -> STATE round trip; it reports p50/p99/max and the
rate achieved. Then, `--trials` times each:
  - watchdog reaction: the host goes silent; time from the last command's reply to the firmware's
    WATCHDOG report arriving (host clock), and the firmware's own count (ms since the last command);
  - e-stop reaction (input): the e-stop input is pressed (the rig's control file, read every 5 ms tick);
    time until the firmware's ESTOP_INPUT report arrives, torque already off;
  - e-stop reaction (command): ESTOP sent -> ACK received (the latch is set before the ACK leaves).
`--bus emulator` (default): the firmware's own servo-bus emulator (the link and the firmware alone);
`--bus plant`: firmware in the loop, its bus answered by the MuJoCo plant of the SO-101.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
from robot_rl.hardware import protocol as P  # noqa: E402
from robot_rl.hardware.calibration import servo_joints  # noqa: E402
from robot_rl.hardware.firmware import FirmwareClient, JointConfig  # noqa: E402
from robot_rl.hardware.link import SerialLink  # noqa: E402
from robot_rl.hardware.rig import SimRig  # noqa: E402
from robot_rl.robots.arms import get_arm  # noqa: E402
from robot_rl.robots.serial import sim_rig  # noqa: E402


def percentiles(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1e3
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
        "n": int(ms.size),
    }


def arm(fw: FirmwareClient, rig: SimRig, n: int) -> np.ndarray:
    """Configure (the rig's calibration, wide limits), clear, arm; the measured joint positions."""
    fw.hello()
    fw.disarm()
    fw.clear()
    cal = rig.true_calibration() if rig.plant is not None else [(i + 1, 2048, 1) for i in range(n)]
    fw.configure(100, P.StopAction.HOLD)
    for i, (servo_id, offset, direction) in enumerate(cal):
        fw.configure_joint(JointConfig(i, servo_id, direction, offset, pos_min=-1.5, pos_max=1.5))
    fw.arm()
    return np.array([j.pos for j in fw.heartbeat().joints])


def round_trips(fw: FirmwareClient, q: np.ndarray, rate: float, seconds: float) -> dict:
    """Commands at `rate` for `seconds` (a slow 0.1 rad sine on the first joint): round-trip times and rate."""
    period, times = 1.0 / rate, []
    start = next_at = time.monotonic()
    while time.monotonic() - start < seconds:
        target = q.copy()
        target[0] += 0.1 * np.sin(time.monotonic() - start)
        t0 = time.perf_counter()
        fw.command(target)
        times.append(time.perf_counter() - t0)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    return {**percentiles(times), "rate_hz": round(len(times) / (time.monotonic() - start), 1)}


def wait_fault(link: SerialLink, code: P.Fault, timeout: float = 1.0) -> tuple[float, P.FaultReport]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link.poll(0.0005)
        for fault in link.drain_faults():
            if fault.code == code:
                return time.monotonic(), fault
    raise RuntimeError(f"no {code.name} report within {timeout} s")


def reactions(fw: FirmwareClient, rig: SimRig, n: int, trials: int) -> dict:
    link = fw.link
    watchdog_host, watchdog_fw, estop_input, estop_command = [], [], [], []
    for _ in range(trials):
        q = arm(fw, rig, n)
        fw.command(q)
        last = time.monotonic()
        link.drain_faults()
        t, fault = wait_fault(link, P.Fault.WATCHDOG)
        watchdog_host.append(t - last)
        watchdog_fw.append(fault.detail / 1e3)
        fw.command(q)  # resumes
        link.drain_faults()
        pressed = time.monotonic()
        rig.press_estop(True)
        t, _ = wait_fault(link, P.Fault.ESTOP_INPUT)
        estop_input.append(t - pressed)
        assert not fw.heartbeat().flags & P.FLAG_TORQUE
        rig.press_estop(False)
        time.sleep(0.02)
        arm(fw, rig, n)
        t0 = time.perf_counter()
        fw.estop()
        estop_command.append(time.perf_counter() - t0)
        assert fw.heartbeat().mode == P.Mode.ESTOP
    return {
        "watchdog_host_ms": percentiles(watchdog_host),
        "watchdog_firmware_ms": percentiles(watchdog_fw),
        "estop_input_ms": percentiles(estop_input),
        "estop_command_ms": percentiles(estop_command),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--bus", choices=("emulator", "plant"), default="emulator")
    args = parser.parse_args()
    names = servo_joints(get_arm("so101").arm_joints)
    results: dict = {"bus": args.bus, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rates": {}}
    with sim_rig("so101", plant=args.bus == "plant") as rig, SerialLink(rig.link_path) as link:
        fw = FirmwareClient(link)
        q = arm(fw, rig, len(names))
        for rate in (100.0, 500.0):
            results["rates"][f"{rate:.0f}"] = round_trips(fw, q, rate, args.seconds)
        results.update(reactions(fw, rig, len(names), args.trials))
        results["counters"] = fw.counters()
        results["link"] = {k: v for k, v in link.stats.summary().items() if not k.startswith("rtt")}
    print(f"serial link through a pty, firmware host build, bus={args.bus} ({results['machine']})")
    print(f"{'':28s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'rate Hz':>8s}")
    for rate, r in results["rates"].items():
        print(
            f"{'round trip @ ' + rate + ' Hz':28s} {r['p50']:8.3f} {r['p99']:8.3f} {r['max']:8.3f} {r['rate_hz']:8.1f}"
        )
    for key in ("watchdog_host_ms", "watchdog_firmware_ms", "estop_input_ms", "estop_command_ms"):
        r = results[key]
        print(f"{key[:-3].replace('_', ' '):28s} {r['p50']:8.3f} {r['p99']:8.3f} {r['max']:8.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
