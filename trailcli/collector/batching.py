"""Group commit at the collector: concurrent appends of one kind share one WAL write and sync."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from trailcli.collector.keys import RecordWriter

Waiter = tuple[list[dict[str, Any]], "asyncio.Future[None]"]


class BatchingWriter:
    """Wraps the store writer: while one append of a kind is in flight, the next requests' records
    queue up and go together in the following append. Each caller still returns only once its own
    records are durable, and a batch that fails is retried record set by record set, so one bad
    request never fails the others.

    With a store that can write without waiting for the sync (`write` and `wait_durable`, as the
    WAL's LogWriter), batches are written on the loop as soon as they form (an append to the
    page cache, as Redis writes its append-only file) and a sync thread follows the writes,
    so a request waits for at most the sync under way and the next one, not for earlier batches'
    syncs in turn.
    """

    def __init__(self, inner: RecordWriter, max_records: int = 2000, in_flight: int = 2) -> None:
        self.inner = inner
        self.max_records = max_records
        self.in_flight = (
            in_flight  # appends of one kind at a time: the next writes while one fsyncs
        )
        self._pending: dict[str, list[Waiter]] = defaultdict(list)
        self._running: dict[str, set[asyncio.Task[None]]] = defaultdict(set)
        self.batches = 0
        self._pipelined = callable(getattr(inner, "write", None)) and callable(
            getattr(inner, "wait_durable", None)
        )
        # written batches waiting for the sync, oldest first: (WAL position, callers)
        self._unsynced: deque[tuple[int, list[Waiter]]] = deque()
        self._syncer: SyncThread | None = None
        self._caught_up: asyncio.Future[None] | None = None
        # the loop, looked up once (asyncio asks the kernel for the process id on every lookup)
        self._loop: asyncio.AbstractEventLoop | None = None

    def append_async(self, kind: str, records: list[dict[str, Any]]) -> asyncio.Future[None]:
        """Queue `records`; the future is done once they are durable (or has the exception the
        store raised for them). Must be called on the loop.

        A plain function, not a coroutine: the caller awaits the future itself, one coroutine
        frame less to suspend and resume per request.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = self._loop.create_future()
        if not records:
            future.set_result(None)
            return future
        self._pending[kind].append((records, future))
        running = self._running[kind]
        if len(running) < (1 if self._pipelined else self.in_flight):
            drain = self._write_ahead(kind) if self._pipelined else self._drain(kind)
            running.add(asyncio.create_task(drain))
        return future

    def append(self, kind: str, records: list[dict[str, Any]]) -> Any:
        """The store's blocking append, unbatched (for callers outside the event loop)."""
        return self.inner.append(kind, records)  # type: ignore[attr-defined]

    async def _drain(self, kind: str) -> None:
        task = asyncio.current_task()
        try:
            while self._pending[kind]:
                batch = self._take(kind)
                rows = [row for records, _ in batch for row in records]
                try:
                    await self.inner.append_async(kind, rows)
                except Exception as exc:
                    await self._one_by_one(kind, batch, exc)
                else:
                    _settle(batch, None)
                self.batches += 1
        finally:
            if task is not None:
                self._running[kind].discard(task)

    async def _write_ahead(self, kind: str) -> None:
        """Write the queued batches of `kind` one after another without waiting for their sync."""
        task = asyncio.current_task()
        inner: Any = self.inner
        try:
            while self._pending[kind]:
                batch = self._take(kind)
                rows = [row for records, _ in batch for row in records]
                try:
                    # on the loop: encoding and a page-cache write are cheaper than a thread
                    # hand-off and GIL contention; only the sync runs on a thread
                    position = inner.write(kind, rows)
                except Exception as exc:
                    await self._one_by_one(kind, batch, exc)
                else:
                    self._unsynced.append((position, batch))
                    self._sync_thread().follow(position, kind, len(rows))
                self.batches += 1
        finally:
            if task is not None:
                self._running[kind].discard(task)

    def _sync_thread(self) -> SyncThread:
        if self._syncer is None:
            assert self._loop is not None
            self._syncer = SyncThread(self.inner, self._loop, self._synced)
        return self._syncer

    def _synced(self, position: int, error: Exception | None) -> None:
        """On the loop: everything written up to `position` is durable (or failed with `error`)."""
        unsynced = self._unsynced
        while unsynced and unsynced[0][0] <= position:
            _settle(unsynced.popleft()[1], error)
        if not unsynced and self._caught_up is not None and not self._caught_up.done():
            self._caught_up.set_result(None)

    def _take(self, kind: str) -> list[Waiter]:
        pending = self._pending[kind]
        taken, size = 0, 0
        while taken < len(pending) and (
            taken == 0 or size + len(pending[taken][0]) <= self.max_records
        ):
            size += len(pending[taken][0])
            taken += 1
        batch, self._pending[kind] = pending[:taken], pending[taken:]
        return batch

    async def _one_by_one(self, kind: str, batch: list[Waiter], exc: Exception) -> None:
        if len(batch) == 1:
            _settle(batch, exc)
            return
        for records, future in batch:
            try:
                await self.inner.append_async(kind, records)
            except Exception as own:
                _settle([(records, future)], own)
            else:
                _settle([(records, future)], None)

    async def drain(self) -> None:
        """Wait until every queued append has been written and synced; stop the sync thread."""
        while tasks := [t for running in self._running.values() for t in running]:
            await asyncio.gather(*tasks, return_exceptions=True)
        while self._unsynced:
            self._caught_up = asyncio.get_running_loop().create_future()
            await self._caught_up
        if self._syncer is not None:
            syncer, self._syncer = self._syncer, None
            await asyncio.to_thread(syncer.stop)

    def close(self) -> Any:
        return self.inner.close()

    def stats(self) -> dict[str, Any]:
        return {**self.inner.stats(), "append_batches": self.batches}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _settle(batch: list[Waiter], exc: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)


class SyncThread:
    """Syncs the store on its own thread for as long as writes are ahead of the last sync, and
    hands each synced position to the loop.

    Under load it syncs back to back and the loop never has to wake it; it sleeps only once it
    has caught up. (A thread-pool hand-off per sync woke a sleeping thread every time, a system
    call that cost the event loop more than the sync itself.)
    """

    def __init__(
        self,
        store: Any,
        loop: asyncio.AbstractEventLoop,
        synced: Callable[[int, Exception | None], None],
    ) -> None:
        self._store = store
        self._loop = loop
        self._synced = synced
        self._cond = threading.Condition(threading.Lock())
        self._wanted = 0  # the highest position written
        self._counts: dict[str, int] = defaultdict(int)  # records written since the last sync
        self._sleeping = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="trail-wal-sync", daemon=True)
        self._thread.start()

    def follow(self, position: int, kind: str, records: int) -> None:
        """A batch of `records` of `kind` was written up to `position`: sync it."""
        with self._cond:
            self._wanted = max(self._wanted, position)
            self._counts[kind] += records
            if self._sleeping:
                self._cond.notify()

    def stop(self) -> None:
        """Sync what was followed, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        synced = 0
        while True:
            with self._cond:
                while self._wanted <= synced and not self._stopping:
                    self._sleeping = True
                    self._cond.wait()
                self._sleeping = False
                if self._wanted <= synced:
                    return
                target, counts = self._wanted, dict(self._counts)
                self._counts.clear()
            error: Exception | None = None
            try:
                self._store.wait_durable(target, counts)
            except Exception as exc:  # handed to the callers; later writes try again
                error = exc
            synced = target
            try:
                self._loop.call_soon_threadsafe(self._synced, target, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
