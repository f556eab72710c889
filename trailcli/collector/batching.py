"""Group commit at the collector: concurrent appends of one kind share one WAL write and sync."""

from __future__ import annotations

import asyncio
from collections import defaultdict
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
    page cache, as Redis writes its append-only file) and one waiter follows the syncs,
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
        # written batches waiting for the sync: (WAL position, kind, record count, callers)
        self._unsynced: list[tuple[int, str, int, list[Waiter]]] = []
        self._syncer: asyncio.Task[None] | None = None

    async def append_async(self, kind: str, records: list[dict[str, Any]]) -> None:
        """Return once `records` are durable (or raise what the store raised for them)."""
        if not records:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[kind].append((records, future))
        running = self._running[kind]
        if len(running) < (1 if self._pipelined else self.in_flight):
            drain = self._write_ahead(kind) if self._pipelined else self._drain(kind)
            running.add(asyncio.create_task(drain))
        await future

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
                    self._unsynced.append((position, kind, len(rows), batch))
                    if self._syncer is None or self._syncer.done():
                        self._syncer = asyncio.create_task(self._follow_syncs())
                self.batches += 1
        finally:
            if task is not None:
                self._running[kind].discard(task)

    async def _follow_syncs(self) -> None:
        """Wait for the sync of everything written so far, settle those callers, repeat."""
        loop = asyncio.get_running_loop()
        inner: Any = self.inner
        while self._unsynced:
            done, self._unsynced = self._unsynced, []
            counts: dict[str, int] = defaultdict(int)
            for _, kind, count, _ in done:
                counts[kind] += count
            position = max(p for p, _, _, _ in done)
            try:
                await loop.run_in_executor(None, inner.wait_durable, position, dict(counts))
            except Exception as exc:
                for *_, batch in done:
                    _settle(batch, exc)
            else:
                for *_, batch in done:
                    _settle(batch, None)

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
        """Wait until every queued append has been written and synced."""
        while tasks := [
            *(t for running in self._running.values() for t in running),
            *([self._syncer] if self._syncer is not None and not self._syncer.done() else []),
        ]:
            await asyncio.gather(*tasks, return_exceptions=True)

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
