"""Writing files so that they appear whole or not at all, and one-line errors for file-system faults.

`write_atomic` writes a temp file beside the target (`<name>.tmp`), flushes it to disk and renames it
over the target: a `kill -9` leaves the old file or the new one, plus at most the temp file, which the
next owner of the directory removes. `fs_error` turns an OSError (disk full, read-only, permissions)
into a one-line `FileSystemError` naming the path and the fix.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from robot_rl.failpoints import failpoint

TEMP_SUFFIX = ".tmp"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


class FileSystemError(ValueError):
    """A file that cannot be written or read; the message names it and the fix."""


def free_mb(path: Path) -> float:
    """Free space (MB) on the file system holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 1e6


def fs_error(err: OSError, path: Path, doing: str = "writing") -> FileSystemError:
    """A one-line error for a failed file-system operation on `path`."""
    if err.errno in DISK_FULL:
        return FileSystemError(
            f"disk full {doing} {path} ({free_mb(path):.0f} MB free): free space and rerun "
            "to resume; finished episodes are in the log"
        )
    if err.errno in NOT_WRITABLE:
        return FileSystemError(f"cannot write {path} ({os.strerror(err.errno)}): use a writable directory")
    return FileSystemError(f"{doing} {path} failed ({os.strerror(err.errno) if err.errno else err}): check the disk")


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` through a flushed temp file and a rename; a failure leaves no temp file."""
    path = Path(path)
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    data = memoryview(data.encode() if isinstance(data, str) else data)
    try:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            failpoint(f"write:{path.name}")  # a kill half-way through the file
            f.write(data[len(data) // 2 :])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise fs_error(err, path) from None
