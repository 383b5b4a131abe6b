"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, before any test module imports mujoco

GL_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
r = mujoco.Renderer(m, 8, 8)
r.update_scene(mujoco.MjData(m))
r.render()
print("GL_OK")
"""


@pytest.fixture(scope="session")
def gl() -> None:
    """Skip the rendering tests where no OpenGL backend can render offscreen (MUJOCO_GL, default egl)."""
    res = subprocess.run(
        [sys.executable, "-c", GL_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl")),
    )
    if "GL_OK" not in res.stdout:
        pytest.skip(f"no OpenGL backend for offscreen rendering: {res.stderr.strip().splitlines()[-1:]}")


@pytest.fixture(scope="session")
def fw_binary():
    """The host build of the firmware (make -C firmware host); skipped where make or a C compiler is missing."""
    from robot_rl.config import UserError
    from robot_rl.hardware.rig import host_firmware

    try:
        return host_firmware()
    except UserError as err:
        pytest.skip(str(err))
