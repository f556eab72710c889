"""Collector-side group commit: concurrent appends share WAL appends; a bad batch fails only its caller."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from collector_support import stored

from trailcli.collector.batching import BatchingWriter
from trailcli.errors import TrailError
from trailcli.store import wal
from trailcli.store.wal import LogWriter


def event(i: int, time: object = None) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"event_id": f"e{i}", "visit_token": "v", "name": "x", "properties": "{}",
            "time": now if time is None else time, "received_at": now}  # fmt: skip


async def test_concurrent_appends_are_batched_and_all_durable(data_dir: Path) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    writer = BatchingWriter(store)
    await asyncio.gather(*(writer.append_async("events", [event(i)]) for i in range(200)))
    assert writer.batches < 200
    assert writer.stats()["append_batches"] == writer.batches
    await writer.drain()
    store.close()
    assert sorted(r["event_id"] for r in stored(data_dir, "events")) == sorted(
        f"e{i}" for i in range(200)
    )


async def test_a_bad_record_fails_only_its_own_caller(data_dir: Path) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    writer = BatchingWriter(store)
    results = await asyncio.gather(
        *(writer.append_async("events", [event(i)]) for i in range(5)),
        writer.append_async("events", [event(99, time="not a time")]),
        *(writer.append_async("events", [event(i)]) for i in range(5, 10)),
        return_exceptions=True,
    )
    assert [isinstance(r, TrailError) for r in results] == [False] * 5 + [True] + [False] * 5
    store.close()
    assert len(stored(data_dir, "events")) == 10


def test_max_records_bounds_a_batch() -> None:
    writer = BatchingWriter(inner=None, max_records=3)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        futures = [loop.create_future() for _ in range(4)]
        writer._pending["events"] = [([{"a": 1}, {"a": 2}], futures[0]), ([{"a": 3}], futures[1]),
                                     ([{"a": 4}], futures[2]), ([{"a": 5}] * 5, futures[3])]  # fmt: skip
        assert [len(r) for r, _ in writer._take("events")] == [2, 1]
        assert [len(r) for r, _ in writer._take("events")] == [1]
        assert [len(r) for r, _ in writer._take("events")] == [5]  # one oversized set goes alone
    finally:
        loop.close()


@pytest.mark.parametrize("records", [[]])
async def test_empty_append_is_a_no_op(records: list[dict[str, object]]) -> None:
    writer = BatchingWriter(inner=None)  # type: ignore[arg-type]
    await writer.append_async("events", records)
    assert writer.batches == 0


def _grew(store: LogWriter, size: int) -> bool:
    return bool(store.stats()["wal_bytes"] > size)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_batches_are_written_while_a_sync_is_under_way(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    release = threading.Event()
    real_sync = wal._sync_data

    def slow_sync(fd: int) -> None:
        release.wait(10)
        real_sync(fd)

    monkeypatch.setattr(wal, "_sync_data", slow_sync)
    writer = BatchingWriter(store)
    first = asyncio.ensure_future(writer.append_async("events", [event(0)]))
    await _until(lambda: store.stats()["wal_bytes"] > 0)
    rest = []
    for wave in (range(1, 4), range(4, 7), range(7, 10)):  # each written ahead of the sync
        size = store.stats()["wal_bytes"]
        rest += [asyncio.ensure_future(writer.append_async("events", [event(i)])) for i in wave]
        await _until(functools.partial(_grew, store, size))
    assert not first.done() and not any(f.done() for f in rest)  # nobody acknowledged early
    assert store.stats()["records_written"]["events"] == 0
    release.set()
    await asyncio.gather(first, *rest)
    assert store.stats()["records_written"]["events"] == 10
    await writer.drain()
    store.close()
    assert sorted(r["event_id"] for r in stored(data_dir, "events")) == sorted(
        f"e{i}" for i in range(10)
    )


async def test_a_failed_sync_fails_every_waiting_caller(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal, "_sync_data", failing_sync)
    writer = BatchingWriter(store)
    results = await asyncio.gather(
        *(writer.append_async("events", [event(i)]) for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(r, TrailError) for r in results)
    assert store.stats()["records_written"]["events"] == 0
    monkeypatch.undo()
    store.close()


async def test_the_sync_thread_stops_on_drain_and_comes_back_for_later_appends(
    data_dir: Path,
) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    writer = BatchingWriter(store)
    await writer.append_async("events", [event(0)])
    assert writer._syncer is not None
    thread = writer._syncer._thread
    assert thread.is_alive()
    await writer.drain()
    assert not thread.is_alive()
    await writer.append_async("events", [event(1)])
    assert store.stats()["records_written"]["events"] == 2
    await writer.drain()
    store.close()
    assert sorted(r["event_id"] for r in stored(data_dir, "events")) == ["e0", "e1"]
