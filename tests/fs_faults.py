"""File-system faults for the tests and bench/faults.py: a small tmpfs, to fill up or make read-only."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of `size` (e.g. "3m") mounted at `path` while the block runs. Mounting needs root and the
    permission to mount; where it is missing the calling test is skipped (pytest.skip)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    """Change a tmpfs's mount options, e.g. "ro" or "size=64m"."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)
