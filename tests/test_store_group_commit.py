"""Group commit on the event loop: one turn's appends share a WAL frame and a sync; a bad request fails only itself."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from collector_support import stored

from trailcli.errors import TrailError
from trailcli.store import wal
from trailcli.store.group_commit import LoopCommits
from trailcli.store.wal import LogWriter


def event(i: int, time: object = None) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"event_id": f"e{i}", "visit_token": "v", "name": "x", "properties": "{}",
            "time": now if time is None else time, "received_at": now}  # fmt: skip


async def test_concurrent_appends_are_batched_and_all_durable(data_dir: Path) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    await asyncio.gather(*(store.append_async("events", [event(i)]) for i in range(200)))
    assert store._loop_commits is not None and store._loop_commits.frames < 200
    assert store.stats()["fsyncs"] < 200
    await store.drain()
    store.close()
    assert sorted(r["event_id"] for r in stored(data_dir, "events")) == sorted(
        f"e{i}" for i in range(200)
    )


async def test_a_bad_record_fails_only_its_own_caller(data_dir: Path) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    results = await asyncio.gather(
        *(store.append_async("events", [event(i)]) for i in range(5)),
        store.append_async("events", [event(99, time="not a time")]),
        *(store.append_async("events", [event(i)]) for i in range(5, 10)),
        return_exceptions=True,
    )
    assert [isinstance(r, TrailError) for r in results] == [False] * 5 + [True] + [False] * 5
    store.close()
    assert len(stored(data_dir, "events")) == 10


def test_max_records_bounds_a_frame() -> None:
    loop = asyncio.new_event_loop()
    try:
        commits = LoopCommits(wal=None, loop=loop, listeners=[], max_records=3)  # type: ignore[arg-type]
        sets = [[{"a": 1}, {"a": 2}], [{"a": 3}], [{"a": 4}], [{"a": 5}] * 5, [{"a": 6}]]
        waiters = [(records, loop.create_future()) for records in sets]
        frames = commits._frames(waiters)
        assert [[len(r) for r, _ in frame] for frame in frames] == [[2, 1], [1], [5], [1]]
    finally:
        loop.close()


async def test_empty_append_is_a_no_op(data_dir: Path) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    await store.append_async("events", [])
    assert store.stats()["wal_bytes"] == 0 and store._syncer is None
    store.close()


async def test_listeners_hear_of_durable_records_only(data_dir: Path) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    heard: list[tuple[str, list[str]]] = []

    class Listener:
        def on_durable(self, kind: str, records: Any) -> None:
            assert store.stats()["records_written"][kind] >= len(records)  # synced before told
            heard.append((kind, [r.get("event_id") or r.get("visit_token") for r in records]))

    class Failing:
        def on_durable(self, kind: str, records: Any) -> None:
            raise RuntimeError("a listener's own fault")

    store.subscribe(Failing())
    store.subscribe(Listener())
    results = await asyncio.gather(
        store.append_async("visits", [{"visit_token": "v1", "started_at": datetime.now(UTC)}]),
        store.append_async("events", [event(1)]),
        store.append_async("events", [event(2, time="not a time")]),
        return_exceptions=True,
    )
    assert [isinstance(r, TrailError) for r in results] == [False, False, True]
    assert heard == [("visits", ["v1"]), ("events", ["e1"])]
    store.close()


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
    first = asyncio.ensure_future(store.append_async("events", [event(0)]))
    await _until(lambda: store.stats()["wal_bytes"] > 0)
    rest = []
    for wave in (range(1, 4), range(4, 7), range(7, 10)):  # each written ahead of the sync
        size = store.stats()["wal_bytes"]
        rest += [asyncio.ensure_future(store.append_async("events", [event(i)])) for i in wave]
        await _until(functools.partial(_grew, store, size))
    assert not first.done() and not any(f.done() for f in rest)  # nobody acknowledged early
    assert store.stats()["records_written"]["events"] == 0
    release.set()
    await asyncio.gather(first, *rest)
    assert store.stats()["records_written"]["events"] == 10
    await store.drain()
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
    results = await asyncio.gather(
        *(store.append_async("events", [event(i)]) for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(r, TrailError) for r in results)
    assert store.stats()["records_written"]["events"] == 0
    monkeypatch.undo()
    store.close()


async def test_one_sync_thread_serves_the_loop_and_threads_and_stops_on_close(
    data_dir: Path,
) -> None:
    store = LogWriter.open(data_dir, "n1", flush_interval=60)
    await store.append_async("events", [event(0)])
    assert store._syncer is not None
    thread = store._syncer._thread
    await asyncio.to_thread(store.append, "events", [event(1)])  # a blocking append, same thread
    assert store._syncer._thread is thread and thread.is_alive()
    assert [t.name for t in threading.enumerate()].count(thread.name) == 1
    assert store.stats()["records_written"]["events"] == 2
    await store.drain()
    store.close()
    assert not thread.is_alive()
    assert sorted(r["event_id"] for r in stored(data_dir, "events")) == ["e0", "e1"]
