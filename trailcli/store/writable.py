"""Checking, before any work, that a command that writes can write to its data dir."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from trailcli.errors import TrailError

# errno values that mean "this path cannot be written here", as opposed to a fault of the data
NOT_WRITABLE = frozenset((errno.EACCES, errno.EPERM, errno.EROFS))


def not_writable_error(path: Path, reason: str, what: str = "the data dir") -> TrailError:
    return TrailError(
        f"Cannot write to {what} {path}: {reason}.",
        "make it writable for this user (or mount it read-write), or pass another --data-dir",
    )


def require_writable(data_dir: Path) -> None:
    """Raise TrailError (exit 1) unless `data_dir` exists or can be created and a file can be
    created in it; leaves nothing behind."""
    path = Path(data_dir)
    probe = path / f".trail-write-check-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise not_writable_error(path, exc.strerror or str(exc)) from None
