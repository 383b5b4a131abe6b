"""The web console: key press -> action applied, camera frames per second in the browser, CPU cost.

Usage: python bench/console.py [--presses 100] [--seconds 10] [--steps 1500]

Needs Debian's chromium and chromium-driver (selenium drives them; nothing is downloaded).
1. Latency, in a real training run (`robot-rl train console=true teleop=console`, pick_cube, learning on):
   the browser holds the dead-man (Space) and taps W `--presses` times; for each key-down that changed
   the command the page records the time until the server's `applied` message for that command
   (sent when the control loop took it for a step): an upper bound on key -> applied, since it includes
   the return trip of the acknowledgement. In real time (10 Hz control, the default when a person drives
   the sim; a changed command starts the step at once), after the first steps (the first act() compiles
   the actor); and with the sim unpaced (console.realtime=false), after 1000 steps: each step then waits
   for the learner's updates.
2. Frames per second received by the browser: the console serving real `Camera`s (OpenCV capture
   threads) reading 30 fps video files, as on a robot computer: two 128x128 cameras, then one 640x480.
3. CPU cost while training: the same run (`--steps` online steps, fixed seed) without the console and
   with it and a page open; wall time, env steps/s and the training process's CPU seconds (the browser's
   own CPU, normally on another machine, is reported apart).
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")

from tests.browser import chrome, console_stats, wait_for  # noqa: E402
from tests.console_page import open_page, robot_state  # noqa: E402
from tests.console_proc import ConsoleProcess, console_process  # noqa: E402


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 1),
        "p99": round(float(np.percentile(a, 99)), 1),
        "max": round(float(a.max()), 1),
        "n": int(a.size),
    }


def train_args(run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"run_dir={run_dir}",
        "task=pick_cube",
        "num_demos=5",
        "logger.tensorboard=false",
        "runtime.eval_every=1000000",
        "runtime.eval_episodes=1",
        *extra,
    ]


def latency(run_dir: Path, presses: int, realtime: bool) -> dict:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    args = train_args(run_dir, "console=true", "teleop=console", f"console.realtime={str(realtime).lower()}")
    with console_process(*args, "steps=1000000") as run, chrome() as driver:
        open_page(driver, run.url)
        run.wait_for(r"recorded \d+ scripted demos")
        # past the one-time costs (the first act() compiles the actor; unpaced, learning starts and compiles)
        if realtime:
            wait_for(lambda: robot_state(driver).get("step", 0) > 20, 60, "the run to train")
        else:
            run.wait_for(r"\[train\] step 1000/", 300)
        driver.find_element("id", "take").click()
        rng = random.Random(0)
        ActionChains(driver).key_down(Keys.SPACE).perform()
        for _ in range(presses):
            ActionChains(driver).key_down("w").perform()
            time.sleep(rng.uniform(0.05, 0.15))
            ActionChains(driver).key_up("w").perform()
            time.sleep(rng.uniform(0.05, 0.15))
        ActionChains(driver).key_up(Keys.SPACE).perform()
        time.sleep(0.5)
        ms = console_stats(driver)["latencies_ms"]
    return percentiles(ms)


def write_video(path: Path, size: tuple[int, int], frames: int = 60, fps: float = 30.0) -> Path:
    import cv2

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(frames):
        writer.write(np.roll(base, 4 * i, axis=1))
    writer.release()
    return path


def camera_fps(tmp: Path, sizes: list[tuple[int, int]], seconds: float) -> dict:
    from robot_rl.console.feed import CameraFeed
    from robot_rl.console.hub import Console, RobotHub
    from robot_rl.console.server import ConsoleServer
    from robot_rl.hardware.camera import Camera, CameraSet

    console = Console()
    hub = console.add_robot(RobotHub("robot"))
    cameras = CameraSet(
        Camera(write_video(tmp / f"cam{i}.avi", size), name=f"cam{i}", max_age=None) for i, size in enumerate(sizes)
    ).start(wait_first=5.0)
    feed = CameraFeed(hub, cameras).start()
    try:
        with ConsoleServer(console, port=0, log=lambda _: None) as server, chrome() as driver:
            open_page(driver, server.url)
            time.sleep(1.0)  # warm-up
            before = console_stats(driver)["frames"]
            time.sleep(seconds)
            after = console_stats(driver)["frames"]
    finally:
        feed.close()
        cameras.close()
    return {
        f"{key.split('/')[-1]} {h}x{w}": round((after.get(key, 0) - before.get(key, 0)) / seconds, 1)
        for key, (h, w) in zip(sorted(after), sizes)
    }


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_cpu() -> float:
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"chromium" in (proc / "cmdline").read_bytes()[:200]:
                    total += cpu_of(int(proc.name))
            except (OSError, IndexError):
                pass
    return total


def training_cost(tmp: Path, steps: int) -> dict:
    """The same training run without and with the console (and a page open)."""
    out = {}
    for name, extra in (("console off", ()), ("console on, page open", ("console=true",))):
        run_dir = tmp / name.replace(" ", "_").replace(",", "")
        args = train_args(run_dir, f"steps={steps}", *extra)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        if extra:
            with chrome() as driver:
                run = ConsoleProcess([*args, "console.port=0"])
                open_page(driver, run.url)
                b0 = browser_cpu()
                run.proc.wait()
                b1 = browser_cpu()
                run.stop()
            out[name + " (browser CPU s)"] = round(b1 - b0, 1)
        else:
            run = ConsoleProcess(args)
            run.proc.wait()
            run.stop()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads((run_dir / "summary.json").read_text())
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out[name] = {
            "wall_s": round(wall, 1),
            "train_wall_s": summary["wall_s"],
            "env_steps_per_s": round(summary["env_steps"] / max(summary["wall_s"], 1e-9), 1),
            "cpu_s": round(cpu, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--parts", default="latency,fps,cost", help="comma-separated: latency, fps, cost")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "latency" in parts:
            result["key_to_applied_ms"] = latency(tmp / "realtime", args.presses, realtime=True)
            result["key_to_applied_ms_sim_unpaced"] = latency(tmp / "fast", args.presses, realtime=False)
        if "fps" in parts:
            result["fps_two_128x128"] = camera_fps(tmp, [(128, 128), (128, 128)], args.seconds)
            result["fps_one_640x480"] = camera_fps(tmp, [(480, 640)], args.seconds)
        if "cost" in parts:
            result["training_cost"] = training_cost(tmp, args.steps)
    print(f"machine: {result['machine']}")
    for key in ("key_to_applied_ms", "key_to_applied_ms_sim_unpaced"):
        if key in result:
            r = result[key]
            print(f"{key:34s} p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  max {r['max']:6.1f} ms  (n={r['n']})")
    for key in ("fps_two_128x128", "fps_one_640x480"):
        if key in result:
            print(f"{key:34s} " + ", ".join(f"{k}: {v} frames/s" for k, v in result[key].items()))
    for name, r in result.get("training_cost", {}).items():
        print(f"training, {name:34s} {r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
