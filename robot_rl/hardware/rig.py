"""The simulated rig for firmware in the loop: the real firmware and a MuJoCo plant of the arm, as processes.

    rig = SimRig("sim/so101_pick_cube.xml", ("shoulder_pan", ..., "gripper"))
    link = SerialLink(rig.link_path)   # the firmware's pseudo-terminal: what /dev/ttyUSB0 is on a bench

`SimRig` builds the host firmware (`make -C firmware host`) when needed and starts
  - the plant (`python -m robot_rl.hardware.plant`): MuJoCo physics in real time behind emulated
    Feetech STS3215 servos on a pseudo-terminal (the servo bus), with its own hidden calibration;
  - the firmware (`firmware/build/host/robot_fw --bus <that pty>`): the same C core as on the
    microcontroller, its host link another pseudo-terminal at `link_path`.
What a serial link cannot carry comes from the plant over its side channel, as it would on a real
bench: the cube's pose (a tracking system), putting the cube back (a person), camera frames (a camera).
`unplug()`/`press_estop()` pull the link's plug and press the e-stop input (the firmware's control files).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from robot_rl.config import UserError
from robot_rl.hardware.plant import PlantClient


def firmware_dir() -> Path:
    """The firmware sources: `$ROBOT_RL_FIRMWARE_DIR`, else `<repo>/firmware`."""
    env = os.environ.get("ROBOT_RL_FIRMWARE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "firmware"


def host_firmware() -> Path:
    """The host build of the firmware, built (or brought up to date) by make; UserError naming the fix when
    the sources or a C compiler are missing."""
    src = firmware_dir()
    if not (src / "Makefile").is_file():
        raise UserError(f"no firmware sources in {src}: set ROBOT_RL_FIRMWARE_DIR to robot_rl's firmware/ directory")
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        raise UserError("building the host firmware needs make and a C compiler: apt-get install gcc make")
    done = subprocess.run(["make", "-s", "-C", str(src), "host"], capture_output=True, text=True, timeout=300)
    binary = src / "build" / "host" / "robot_fw"
    if done.returncode != 0 or not binary.is_file():
        raise UserError(f"the host firmware did not build (make -C {src} host): {done.stderr.strip()[-300:]}")
    return binary


try:
    _PRCTL = ctypes.CDLL(None).prctl  # resolved here: the child between fork and exec only calls it
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies (PR_SET_PDEATHSIG), so a
    killed training run leaves no firmware or plant behind."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))


class ChildProcess:
    """A child process (dying with this one) whose output lines a thread collects; the constructor returns
    once a line contains `ready`, and raises UserError with its last lines when it does not come."""

    def __init__(self, args: list[str], ready: str, timeout: float, env: dict | None = None) -> None:
        self.name = Path(args[0]).name if args[0] != sys.executable else args[2]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        threading.Thread(target=self._pump, daemon=True, name=f"rig-{self.name}").start()
        self.ready = self.wait_for(ready, timeout)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> str:
        """The first output line containing `text`, waiting up to `timeout` s for it."""

        def seen() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._seen:
            self._seen.wait_for(lambda: seen() is not None or self.proc.poll() is not None, timeout)
            line = seen()
        if line is None:
            self.stop()
            raise UserError(
                f"{self.name}: no '{text}' within {timeout:g} s (exit {self.proc.poll()}): "
                f"{' | '.join(self.lines[-5:])}"
            )
        return line

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip())
                del self.lines[:-500]
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class SimRig:
    """The plant and the firmware of one simulated arm (see the module docstring)."""

    def __init__(
        self,
        model_path: str | os.PathLike | None,
        servo_names: tuple[str, ...],
        seed: int = 0,
        tick_hz: int = 200,
        gripper_open: float = 1.5,
        jaw_length: float = 0.0,
        object_body: str = "cube",
        bus_timeout_us: int = 20000,
    ) -> None:
        """`servo_names`: the arm's joints and then "gripper", in bus order (servo ids 1..n). `gripper_open`:
        the gripper servo's value for a fully open jaw (0 = closed), `jaw_length` > 0 for a rotary jaw (the
        opening is its chord), else the value maps linearly. `seed`: the plant's hidden calibration.
        `bus_timeout_us`: how long the firmware waits for a servo's reply; a Python plant on a busy machine
        answers far later than a servo's microseconds, so the rig allows 20 ms (the firmware's own default, 3 ms,
        suits real servos). `model_path` None: no plant, the firmware's own servo-bus emulator (benchmarks of
        the link and the firmware alone)."""
        self.servo_names = tuple(servo_names)
        self.object_body = object_body
        self.workdir = Path(tempfile.mkdtemp(prefix="robot_rl-rig-"))
        self.link_path = self.workdir / "link"
        self.control_dir = self.workdir / "control"
        self.control_dir.mkdir()
        self._plant = self._firmware = None
        self.plant: PlantClient | None = None
        atexit.register(self.close)
        try:
            binary = host_firmware()
            env = dict(os.environ)
            env.setdefault("MUJOCO_GL", "egl")
            plant_args = [sys.executable, "-m", "robot_rl.hardware.plant", "--model", str(model_path)]
            plant_args += ["--bus", str(self.workdir / "bus"), "--side", str(self.workdir / "side")]
            plant_args += ["--seed", str(seed), "--object", object_body, "--gripper-open", str(gripper_open)]
            plant_args += ["--gripper-jaw-length", str(jaw_length)]
            bus = "emulator"
            if model_path is not None:
                self._plant = ChildProcess(plant_args, "plant ready", 60.0, env)
                bus = str(self.workdir / "bus")
            fw_args = [str(binary), "--link", str(self.link_path), "--bus", bus]
            fw_args += ["--joints", str(len(self.servo_names)), "--tick-hz", str(int(tick_hz))]
            fw_args += ["--control-dir", str(self.control_dir), "--bus-timeout-us", str(int(bus_timeout_us))]
            self._firmware = ChildProcess(fw_args, "robot_fw ready", 20.0)
            if model_path is None:
                return
            self.plant = PlantClient(self.workdir / "side")
            self._servos = self.plant.servos()
        except BaseException:
            self.close()
            raise
        if len(self._servos) != len(self.servo_names):
            self.close()
            raise UserError(
                f"the plant of {model_path} has {len(self._servos)} servos, the arm {len(self.servo_names)}"
            )

    def true_calibration(self) -> list[tuple[int, int, int]]:
        """The plant's hidden calibration, per servo in bus order: (servo_id, offset_ticks, direction) — what
        `robot-rl calibrate` measures on a real arm."""
        return [(int(s["servo_id"]), int(s["offset_ticks"]), int(s["direction"])) for s in self._servos]

    # ------------------------------------------------------------------ the bench around the arm
    def press_estop(self, pressed: bool = True) -> None:
        """Press (or release) the e-stop input wired to the firmware."""
        self._flag("estop", pressed)

    def unplug(self, unplugged: bool = True) -> None:
        """Pull (or put back) the host link's plug: the pseudo-terminal disappears and comes back."""
        self._flag("unplug", unplugged)

    def _flag(self, name: str, on: bool) -> None:
        path = self.control_dir / name
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ tracker, person and cameras
    def _check_object(self, name: str) -> None:
        if name != self.object_body:
            raise ValueError(f"the rig tracks {self.object_body!r}, not {name!r}")

    def object_pos(self, name: str) -> np.ndarray:
        self._check_object(name)
        return np.asarray(self.plant.object_pos(), dtype=np.float64)

    def object_quat(self, name: str) -> np.ndarray:
        self._check_object(name)
        return np.asarray(self.plant.object_quat(), dtype=np.float64)

    def set_object_pose(self, name: str, pos: np.ndarray, quat: np.ndarray | None = None) -> None:
        self._check_object(name)
        self.plant.set_object_pose(pos, (1.0, 0.0, 0.0, 0.0) if quat is None else quat)

    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.plant.camera_names())

    def render(self, camera: str, height: int, width: int) -> np.ndarray:
        return self.plant.render(camera, height, width)

    def close(self) -> None:
        """Stop the firmware and the plant, remove the work directory (idempotent)."""
        if self.plant is not None:
            self.plant.close()
            self.plant = None
        for proc in (self._firmware, self._plant):
            if proc is not None:
                proc.stop()
        self._firmware = self._plant = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> SimRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_link(self, timeout: float = 5.0) -> None:
        """Wait until the firmware's link exists (after a replug)."""
        deadline = time.monotonic() + timeout
        while not self.link_path.exists():
            if time.monotonic() > deadline:
                raise UserError(f"the rig's link {self.link_path} did not come back in {timeout:g} s")
            time.sleep(0.01)
