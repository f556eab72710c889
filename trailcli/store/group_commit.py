"""Group commit for the WAL: one sync thread, and the event loop's appends written a turn at a time.

Writers put their records in the WAL's page cache (`LogWriter.write`, cheap) and ask for a
sync up to the position they reached; one thread syncs for everybody, back to back while there
is demand, so one sync covers every write made while the previous one ran. On an event loop the
appends of one turn of the loop become one frame per kind, and each caller's future is done once
the sync thread has passed that frame; then the listeners hear which records are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from trailcli.errors import UsageError

log = logging.getLogger("trail.store.wal")

Records = list[dict[str, Any]]
Waiter = tuple[Records, "asyncio.Future[None]"]
# called on the sync thread with the position synced up to, or the error the sync raised
SyncedCallback = Callable[[int, Exception | None], None]


class DurableListener(Protocol):
    """Hears of records once they are durable (called on the event loop; must not block)."""

    def on_durable(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None: ...


class Log(Protocol):
    """What the loop's group commit needs of the WAL (`trailcli.store.wal.LogWriter`)."""

    def write(self, kind: str, records: Records) -> int: ...

    def request_sync(self, position: int) -> None: ...


class SyncThread:
    """Syncs the log on its own thread for as long as writes wait for it, and reports each
    synced position.

    Under load it syncs back to back and nobody has to wake it; it sleeps only once it has
    caught up. (A thread-pool hand-off per sync woke a sleeping thread every time, a system
    call that cost the event loop more than the sync itself.)
    """

    def __init__(
        self,
        sync: Callable[[int], int],
        synced: SyncedCallback,
        name: str = "trail-wal-sync",
    ) -> None:
        self._sync = sync  # syncs at least up to a position; returns the position synced
        self._synced = synced
        self._cond = threading.Condition(threading.Lock())
        self._wanted = 0  # the highest position asked for
        self._sleeping = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def follow(self, position: int) -> None:
        """Sync up to `position`."""
        with self._cond:
            self._wanted = max(self._wanted, position)
            if self._sleeping:
                self._cond.notify()

    def stop(self) -> None:
        """Sync what was asked for, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        done = 0
        while True:
            with self._cond:
                while self._wanted <= done and not self._stopping:
                    self._sleeping = True
                    self._cond.wait()
                self._sleeping = False
                if self._wanted <= done:
                    return
                target = self._wanted
            error: Exception | None = None
            try:
                synced = self._sync(target)
            except Exception as exc:  # handed to the waiting callers
                error, synced = exc, target
            done = max(done, target)
            self._synced(synced, error)


class LoopCommits:
    """The appends made on one event loop: those of a turn of the loop are written together at
    its end, one frame per kind (at most `max_records` records each), and each caller's future
    is done once the sync thread has synced past its frame.

    A frame the WAL refuses for a bad record (UsageError) is written again caller by caller, so
    one bad request never fails the others; any other failure (a full disk) fails the frame's
    callers at once.
    """

    def __init__(
        self,
        wal: Log,
        loop: asyncio.AbstractEventLoop,
        listeners: Sequence[DurableListener],
        max_records: int = 2000,
    ) -> None:
        self._wal = wal
        self._loop = loop
        self._listeners = listeners
        self.max_records = max_records
        self._pending: list[tuple[str, Waiter]] = []
        # frames written and not yet synced, oldest first: (WAL position, kind, records, callers)
        self._unsynced: deque[tuple[int, str, Records, list[Waiter]]] = deque()
        self._caught_up: asyncio.Future[None] | None = None
        self.frames = 0

    def append(self, kind: str, records: Records) -> asyncio.Future[None]:
        """Queue `records`; the future is done once they are durable (or has the exception the
        WAL raised for them). Must be called on the loop."""
        future: asyncio.Future[None] = self._loop.create_future()
        if not records:
            future.set_result(None)
            return future
        if not self._pending:
            self._loop.call_soon(self._write_pending)
        self._pending.append((kind, (records, future)))
        return future

    def synced_threadsafe(self, position: int, error: Exception | None) -> None:
        """From the sync thread: hand the synced position to the loop."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._synced, position, error)

    async def drain(self) -> None:
        """Wait until every queued append is written and synced (or failed)."""
        while self._pending or self._unsynced:
            self._caught_up = self._loop.create_future()
            await self._caught_up

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        by_kind: dict[str, list[Waiter]] = {}
        for kind, waiter in pending:
            by_kind.setdefault(kind, []).append(waiter)
        for kind, waiters in by_kind.items():
            for frame in self._frames(waiters):
                self._write(kind, frame)
        self._check_caught_up()

    def _frames(self, waiters: list[Waiter]) -> list[list[Waiter]]:
        """The callers grouped into frames of at most `max_records` records (a larger set of
        one caller goes alone)."""
        frames: list[list[Waiter]] = []
        size = 0
        for waiter in waiters:
            n = len(waiter[0])
            if not frames or size + n > self.max_records:
                frames.append([])
                size = 0
            frames[-1].append(waiter)
            size += n
        return frames

    def _write(self, kind: str, frame: list[Waiter]) -> None:
        # on the loop: encoding and a page-cache write are cheaper than a thread hand-off and
        # GIL contention; only the sync runs on a thread
        rows = frame[0][0] if len(frame) == 1 else [r for records, _ in frame for r in records]
        try:
            position = self._wal.write(kind, rows)
        except Exception as exc:
            if len(frame) == 1 or not isinstance(exc, UsageError):
                _settle(frame, exc)
            else:
                for waiter in frame:
                    self._write(kind, [waiter])
            return
        self.frames += 1
        self._unsynced.append((position, kind, rows, frame))
        self._wal.request_sync(position)

    def _synced(self, position: int, error: Exception | None) -> None:
        """On the loop: everything written up to `position` is durable (or failed with `error`)."""
        unsynced = self._unsynced
        while unsynced and unsynced[0][0] <= position:
            _, kind, rows, frame = unsynced.popleft()
            _settle(frame, error)
            if error is None:
                self._tell(kind, rows)
        self._check_caught_up()

    def _tell(self, kind: str, rows: Records) -> None:
        for listener in self._listeners:
            try:
                listener.on_durable(kind, rows)
            except Exception:  # a listener's fault never fails a write
                log.exception("a listener of durable %s records failed", kind)

    def _check_caught_up(self) -> None:
        caught_up = self._caught_up
        idle = not self._unsynced and not self._pending
        if idle and caught_up is not None and not caught_up.done():
            caught_up.set_result(None)


def _settle(frame: list[Waiter], exc: Exception | None) -> None:
    for _, future in frame:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
