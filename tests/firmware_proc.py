"""Test helpers: the host-built firmware (`robot_fw`) and the MuJoCo plant as real processes, with the
options the tests need (emulator fault injection, any model), on robot_rl.hardware.rig's ChildProcess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from robot_rl.hardware.rig import ChildProcess

REPO = Path(__file__).resolve().parents[1]


class Firmware(ChildProcess):
    """`robot_fw` behind a pty at `workdir/link`, with its control directory `workdir/control`."""

    def __init__(self, binary: Path, workdir: Path, *extra: str, joints: int = 6, bus: str = "emulator") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.link = workdir / "link"
        self.control = workdir / "control"
        self.control.mkdir(exist_ok=True)
        args = [str(binary), "--link", str(self.link), "--bus", bus, "--joints", str(joints)]
        super().__init__([*args, "--control-dir", str(self.control), *extra], "robot_fw ready", 20.0)

    def _flag(self, name: str, on: bool) -> None:
        path = self.control / name
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def press_estop(self, on: bool = True) -> None:
        self._flag("estop", on)

    def unplug(self, on: bool = True) -> None:
        self._flag("unplug", on)


class PlantProc(ChildProcess):
    """`python -m robot_rl.hardware.plant` with its bus pty at `workdir/bus`, side channel `workdir/side`."""

    def __init__(self, workdir: Path, *extra: str, model: str = "panda_pick_cube.xml") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.bus = workdir / "bus"
        self.side = workdir / "side"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        env.setdefault("MUJOCO_GL", "egl")
        args = [sys.executable, "-m", "robot_rl.hardware.plant", "--model", model]
        super().__init__([*args, "--bus", str(self.bus), "--side", str(self.side), *extra], "plant ready", 60.0, env)
