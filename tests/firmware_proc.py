"""Test helpers: the host-built firmware (`robot_fw`) and the MuJoCo plant as real processes.

The firmware sources are `$ROBOT_RL_FIRMWARE_DIR`, else `<repo>/firmware`; `build_firmware()` runs
`make -C <dir> host BUILD=<out>` (out of the source tree) and returns the binary, or None where the
sources or a C compiler are missing (the tests that need it skip).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def firmware_dir() -> Path:
    return Path(os.environ.get("ROBOT_RL_FIRMWARE_DIR") or REPO / "firmware")


def build_firmware(out: Path) -> tuple[Path | None, str]:
    """Build the host firmware into `out`; (binary, "") or (None, why not)."""
    src = firmware_dir()
    if not (src / "Makefile").is_file() or not (src / "host").is_dir():
        return None, f"no firmware sources with a host build in {src}"
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        return None, "make or a C compiler is missing"
    res = subprocess.run(["make", "-C", str(src), "host", f"BUILD={out}"], capture_output=True, text=True, timeout=300)
    binary = out / "host" / "robot_fw"
    if res.returncode != 0 or not binary.is_file():
        raise RuntimeError(f"firmware host build failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return binary, ""


class Proc:
    """A child process whose output is collected by a thread; `wait_for(text)` waits for a line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.args[0]}: no '{text}' line (exit {self.proc.poll()}):\n{self.output}")
                self._cond.wait(min(left, 0.1))

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class Firmware(Proc):
    """`robot_fw` behind a pty at `workdir/link`, with its control directory `workdir/control`."""

    def __init__(self, binary: Path, workdir: Path, *extra: str, joints: int = 6, bus: str = "emulator") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.link = workdir / "link"
        self.control = workdir / "control"
        self.control.mkdir(exist_ok=True)
        args = [str(binary), "--link", str(self.link), "--bus", bus, "--joints", str(joints)]
        super().__init__(args + ["--control-dir", str(self.control), *extra])
        self.ready = self.wait_for("robot_fw ready")

    def _flag(self, name: str, on: bool) -> None:
        path = self.control / name
        if on:
            path.touch()
        elif path.exists():
            path.unlink()

    def press_estop(self, on: bool = True) -> None:
        self._flag("estop", on)

    def unplug(self, on: bool = True) -> None:
        self._flag("unplug", on)


class PlantProc(Proc):
    """`python -m robot_rl.hardware.plant` with its bus pty at `workdir/bus`, side channel `workdir/side`."""

    def __init__(self, workdir: Path, *extra: str, model: str = "panda_pick_cube.xml") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.bus = workdir / "bus"
        self.side = workdir / "side"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        env.setdefault("MUJOCO_GL", "egl")
        args = [sys.executable, "-m", "robot_rl.hardware.plant", "--model", model]
        super().__init__(args + ["--bus", str(self.bus), "--side", str(self.side), *extra], env=env)
        self.ready = self.wait_for("plant ready", timeout=60)
