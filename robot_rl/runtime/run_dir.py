"""Guard rails of a run directory: one owner at a time, and nothing changed before that owner has
validated everything.

A command that writes into a run directory (`train`, `eval`, the ROS learner) first checks that the
directory can be used (`open_run_dir`), then takes its lock (`RunLock`: an `flock` on `<run_dir>/run.lock`,
released by the OS when the process dies), then validates its inputs (config, checkpoint, episode log,
demos), and only then writes, each file through `robot_rl.data.files.write_atomic`. The temp files a
kill can leave are removed by the next owner (`remove_stale_temps`).
"""

from __future__ import annotations

import os
from pathlib import Path

from robot_rl.data.files import TEMP_SUFFIX, FileSystemError, fs_error

try:  # advisory lock; Unix only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = "run.lock"


def open_run_dir(path: str | os.PathLike) -> Path:
    """`path` as a usable run directory (created when missing); one-line errors otherwise."""
    run_dir = Path(path)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileSystemError(f"run_dir={run_dir} is a file, not a directory: pass a directory path")
    if not run_dir.exists():
        try:
            run_dir.mkdir(parents=True)
        except NotADirectoryError:
            raise FileSystemError(
                f"run_dir={run_dir} is inside a file, not a directory: pass a directory path"
            ) from None
        except OSError as err:
            raise fs_error(err, run_dir, "creating") from None
    return run_dir


class RunLock:
    """Exclusive ownership of a run directory while the `with` block runs (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file = None

    def __enter__(self) -> RunLock:
        try:
            self._file = open(self.path, "a+")
        except OSError as err:
            raise fs_error(err, self.path.parent, "locking") from None
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._file.seek(0)
                holder = self._file.read().strip() or "?"
                self._file.close()
                self._file = None
                raise FileSystemError(
                    f"run_dir {self.path.parent} is in use by another process (pid {holder}): "
                    "stop it or use another run_dir"
                ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None


def remove_stale_temps(run_dir: Path) -> list[str]:
    """Delete the temp files a killed owner left (`*.tmp` at the top of `run_dir`); returns their names."""
    removed = []
    for tmp in Path(run_dir).glob(f"*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp.name)
    return removed
