"""Group commit at the collector: concurrent appends of one kind share one WAL append and fsync."""

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

    async def append_async(self, kind: str, records: list[dict[str, Any]]) -> None:
        """Return once `records` are durable (or raise what the store raised for them)."""
        if not records:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[kind].append((records, future))
        running = self._running[kind]
        if len(running) < self.in_flight:
            running.add(asyncio.create_task(self._drain(kind)))
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
        """Wait until every queued append has been written."""
        while tasks := [t for running in self._running.values() for t in running]:
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
