"""A full disk: telling it from other write failures, the writer's "refuse until drained" state,
and log lines that come at most once a period (with a count) instead of once per failure."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trailcli.errors import DiskFull

DISK_FULL_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT))
# how the Rust writers of the Delta tables word it (their errors carry no errno)
_DISK_FULL_TEXT = (
    "no space left on device",
    "disk quota exceeded",
    "os error 28)",
    "os error 122)",
)
LOG_EVERY = 10.0  # seconds between two log lines about one recurring failure


def is_disk_full(exc: BaseException | None) -> bool:
    """True when `exc`, or an exception it was raised from, says the device has no space left."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        text = str(exc).lower()
        if any(words in text for words in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def full_reason(exc: BaseException) -> str:
    """How a disk-full error words it, in a few words ("No space left on device")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current.strerror or os.strerror(current.errno or errno.ENOSPC)
        if "quota" in str(current).lower():
            return os.strerror(errno.EDQUOT)
        current = current.__cause__ or current.__context__
    return os.strerror(errno.ENOSPC)


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding `path` (None when
    it cannot be asked)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class QuietLog:
    """For a failure that recurs (each refused write, each failed retry): a log line is due at
    the first occurrence and then at most once per `period`, with the number of occurrences
    since the previous line."""

    def __init__(self, period: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._unreported = 0

    def due(self) -> int | None:
        """Note one occurrence; the occurrences to report (this one included) when a line is due
        now, else None."""
        with self._lock:
            self._unreported += 1
            now = self._clock()
            if self._last is not None and now - self._last < self.period:
                return None
            self._last, count, self._unreported = now, self._unreported, 0
            return count

    def mark(self) -> None:
        """A line about it was just written elsewhere: the next is due a period from now."""
        with self._lock:
            self._last = self._clock()

    def reset(self) -> int:
        """Start afresh (the next occurrence is logged at once); the occurrences never reported."""
        with self._lock:
            count, self._unreported, self._last = self._unreported, 0, None
            return count


class DiskState:
    """Whether a writer's disk is full, as its writes found it.

    `ok` until a write fails for lack of space (`note_full`); then `full`, and every write is
    refused (`refuse`, which counts it) until `note_drained`: the writer calls it once what the
    log held is committed and the disk has room again, so that accepted writes never fill the
    freed space before the commits have caught up.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None  # when the current episode began
        self.reason = ""
        self.episodes = 0
        self.refused = 0  # writes refused in the current episode
        self.refused_total = 0

    @property
    def full(self) -> bool:
        return self.since is not None

    def note_full(self, reason: str) -> bool:
        """A write found the disk full; True when this begins an episode."""
        with self._lock:
            if self.since is not None:
                return False
            self.since, self.reason, self.refused = self._clock(), reason, 0
            self.episodes += 1
            return True

    def refuse(self) -> None:
        """Count a write refused while full."""
        with self._lock:
            self.refused += 1
            self.refused_total += 1

    def full_for(self) -> float:
        """Seconds since the episode began (0 when not full)."""
        since = self.since
        return 0.0 if since is None else self._clock() - since

    def note_drained(self) -> tuple[float, int] | None:
        """End the episode: (its duration in seconds, writes refused in it); None when not full."""
        with self._lock:
            if self.since is None:
                return None
            took, refused = self._clock() - self.since, self.refused
            self.since, self.reason = None, ""
            return took, refused
