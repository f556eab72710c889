"""Collector-side group commit: concurrent appends share WAL appends; a bad batch fails only its caller."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from collector_support import stored

from trailcli.collector.batching import BatchingWriter
from trailcli.errors import TrailError
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
