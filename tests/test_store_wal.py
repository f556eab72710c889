"""The node's WAL: group commit, the lock, exactly-once recovery, and a SIGKILL crash test."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailcli.errors import DiskFull, TrailError, UsageError
from trailcli.store import layout, tables, views, wal, wal_scan
from trailcli.store.schema import KINDS
from trailcli.store.wal import LogWriter

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def event(event_id: str, at: dt.datetime = T0) -> dict[str, object]:
    return {
        "event_id": event_id,
        "visit_token": "v-" + event_id,
        "name": "$view",
        "properties": {"page": "/p", "n": 1},
        "time": at,
        "received_at": at,
    }


def stored_keys(data_dir: Path, kind: str, column: str) -> list[str]:
    """Every value of `column` as stored, duplicates included (read beside the deduplicating views)."""
    import duckdb

    files = tables.file_list(data_dir, kind)
    if not files:
        return []
    query = f"SELECT {column} FROM read_parquet($f)"
    return [r[0] for r in duckdb.sql(query, params={"f": files}).fetchall()]


def event_ids(data_dir: Path) -> list[str]:
    return stored_keys(data_dir, "events", "event_id")


def open_writer(data_dir: Path, **kw: float) -> LogWriter:
    kw.setdefault("flush_interval", 3600)
    return LogWriter.open(data_dir, "n1", **kw)  # type: ignore[arg-type]


def test_append_then_close_commits_every_record_with_its_types(data_dir: Path) -> None:
    with open_writer(data_dir) as writer:
        writer.append("events", [event("a"), event("b", T0 + dt.timedelta(days=1))])
        writer.append("visits", [{"visit_token": "v-a", "started_at": T0, "screen_width": 1280}])
        assert writer.stats()["records_written"]["events"] == 2
        assert writer.stats()["wal_bytes"] > 0
    con = views.connect(data_dir)
    rows = con.execute("SELECT event_id, date, properties FROM events ORDER BY 1").fetchall()
    assert rows == [
        ("a", "2026-03-01", '{"page":"/p","n":1}'),
        ("b", "2026-03-02", '{"page":"/p","n":1}'),
    ]
    assert con.execute("SELECT screen_width FROM visits").fetchall() == [(1280,)]
    assert wal.segment_numbers(layout.wal_dir(data_dir, "n1")) == []


def test_concurrent_appends_share_fsyncs(data_dir: Path) -> None:
    threads, per_thread = 32, 20
    with open_writer(data_dir) as writer:

        def work(t: int) -> None:
            for i in range(per_thread):
                writer.append("events", [event(f"{t}-{i}")])

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        fsyncs = writer.stats()["fsyncs"]
    appends = threads * per_thread
    assert fsyncs < appends / 2, f"{fsyncs} fsyncs for {appends} appends"
    assert sorted(event_ids(data_dir)) == sorted(
        f"{t}-{i}" for t in range(threads) for i in range(per_thread)
    )


async def test_append_async_shares_fsyncs_and_leaves_the_loop_free(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir)
    real_sync = wal._sync_data

    def slow_sync(fd: int) -> None:  # a slow disk: the loop must keep turning meanwhile
        time.sleep(0.05)
        real_sync(fd)

    monkeypatch.setattr(wal, "_sync_data", slow_sync)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    tick_task = asyncio.create_task(ticker())
    await asyncio.gather(*(writer.append_async("events", [event(f"e{i}")]) for i in range(64)))
    done.set()
    await tick_task
    fsyncs = writer.stats()["fsyncs"]
    writer.close()
    assert ticks > 5
    assert fsyncs < 64
    assert len(event_ids(data_dir)) == 64


def test_write_then_wait_durable_counts_records_only_once_synced(data_dir: Path) -> None:
    with open_writer(data_dir) as writer:
        first = writer.write("events", [event("e1"), event("e2")])
        second = writer.write("events", [event("e3")])
        assert 0 < first < second
        assert writer.stats()["records_written"]["events"] == 0
        writer.wait_durable(second)
        assert writer.stats()["records_written"]["events"] == 3
        assert writer.stats()["fsyncs"] == 1  # one sync covers both writes
        size = writer.stats()["wal_bytes"]
        with pytest.raises(UsageError):
            writer.write("events", [event("e4"), {**event("e5"), "time": "not a time"}])
        assert writer.stats()["wal_bytes"] == size  # a refused batch writes nothing
    assert sorted(event_ids(data_dir)) == ["e1", "e2", "e3"]


def test_flush_rows_commits_before_the_interval(data_dir: Path) -> None:
    with open_writer(data_dir, flush_rows=10) as writer:
        writer.append("events", [event(f"e{i}") for i in range(10)])
        deadline = time.monotonic() + 10
        while writer.stats()["commits"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.stats()["commits"] == 1
        assert len(event_ids(data_dir)) == 10


def test_flush_interval_commits_in_the_background(data_dir: Path) -> None:
    with open_writer(data_dir, flush_interval=0.1) as writer:
        writer.append("events", [event("a")])
        deadline = time.monotonic() + 10
        while not event_ids(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert event_ids(data_dir) == ["a"]
        assert writer.stats()["wal_bytes"] == 0


def test_a_second_writer_for_the_node_is_refused(data_dir: Path) -> None:
    first = open_writer(data_dir)
    with pytest.raises(TrailError, match="in use by another writer") as err:
        open_writer(data_dir)
    assert err.value.hint and "--node-id" in err.value.hint
    other = LogWriter.open(data_dir, "n2")  # another node has its own WAL
    other.close()
    first.close()
    open_writer(data_dir).close()  # the lock is released on close


def test_append_after_close_is_refused(data_dir: Path) -> None:
    writer = open_writer(data_dir)
    writer.close()
    with pytest.raises(TrailError, match="closed"):
        writer.append("events", [event("a")])


@pytest.mark.parametrize(
    ("kind", "records", "message"),
    [
        ("clicks", [{"a": 1}], "Unknown log kind"),
        ("events", [{"event_id": "x", "time": "yesterday-ish"}], "Cannot store"),
        ("events", [{"event_id": "x", "time": T0, "properties": {"t": T0}}], "Cannot store"),
        (
            "visits",
            [{"visit_token": "v", "started_at": T0, "screen_width": "wide"}],
            "screen_width",
        ),
        ("visits", [{"visit_token": "v", "started_at": T0, "screen_width": 2**40}], "screen_width"),
        ("events", [{"event_id": "x", "received_at": T0}], "time is required"),
        ("events", ["not a dict"], "not an object"),
    ],
)
def test_bad_records_are_refused_and_lose_nothing(
    data_dir: Path, kind: str, records: list, message: str
) -> None:
    with open_writer(data_dir) as writer:
        writer.append("events", [event("kept")])
        with pytest.raises(UsageError, match=message):
            writer.append(kind, records)
        writer.append("events", [event("after")])
    assert sorted(event_ids(data_dir)) == ["after", "kept"]


def test_a_failed_write_leaves_no_partial_frame(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 200:
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    writer = open_writer(data_dir)
    writer.append("events", [event("before")])
    monkeypatch.setattr(wal.os, "write", half_then_full)
    with pytest.raises(DiskFull, match="is full; nothing was stored"):
        writer.append("events", [event("lost", T0)] * 3)
    monkeypatch.undo()
    with pytest.raises(DiskFull):  # refused until the WAL is committed
        writer.append("events", [event("refused")])
    writer.flush()
    writer.append("events", [event("after")])
    writer.close()
    assert sorted(event_ids(data_dir)) == ["after", "before"]


def test_a_failed_fsync_stops_acknowledging(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir)
    writer.append("events", [event("acked")])

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal.os, "fsync", failing_fsync)
    monkeypatch.setattr(wal.os, "fdatasync", failing_fsync, raising=False)  # appends sync data
    with pytest.raises(TrailError, match="failed to sync"):
        writer.append("events", [event("unsure")])
    monkeypatch.undo()
    with pytest.raises(TrailError, match="no further records") as err:
        writer.append("events", [event("refused")])
    assert err.value.hint and "restart" in err.value.hint
    writer.close()  # what the WAL holds is still committed
    assert "acked" in event_ids(data_dir)
    assert "refused" not in event_ids(data_dir)


def test_invalid_flush_settings_are_refused(data_dir: Path) -> None:
    with pytest.raises(UsageError):
        LogWriter.open(data_dir, "n1", flush_interval=0)
    with pytest.raises(UsageError, match="node id"):
        LogWriter.open(data_dir, "../escape")


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5))])),
    st.datetimes(),
    st.dates(),
    st.sampled_from(["2026-03-01T10:00:00+00:00", "2026-03-01", "1e400", "-15m"]),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    values=st.dictionaries(
        st.sampled_from(sorted({c for k in KINDS.values() for c in k.schema.names})), ANY_VALUE
    ),
)
def test_what_append_accepts_the_tables_can_store(kind: str, values: dict) -> None:
    try:
        tables.check_records(kind, [values])
    except ValueError:
        return
    direct = tables.to_arrow(kind, [values])
    table, rejected = wal.segment_table(kind, replayed(kind, [values]))
    assert rejected == []
    assert table is not None and table.equals(direct)


def replayed(kind: str, records: list[dict]) -> bytes:
    """The kind's records as a commit reads them back from a segment file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "000000000001.wal"
        path.write_bytes(wal.MAGIC + wal.encode_frame(kind, records))
        return wal.read_segment(path).ndjson(kind)


def test_the_collectors_records_take_arrows_json_reader() -> None:
    # the usual records are parsed by Arrow in one go, giving what the record-by-record path gives
    records = {  # JSON columns arrive as text, as the collector writes them
        "events": [
            {**event("a"), "properties": '{"page":"/p"}'},
            {**event("b"), "properties": '{"n":1.5}', "user_id": "u1"},
        ],
        "visits": [
            {"visit_token": "v", "started_at": T0, "screen_width": 1280, "latitude": 52.5},
            {"visit_token": "w", "started_at": T0.replace(microsecond=9), "extra": '{"a":[1]}'},
        ],
    }
    for kind, rows in records.items():
        fast = tables.from_ndjson(kind, replayed(kind, rows))
        assert fast.equals(tables.to_arrow(kind, rows))
        assert fast.num_rows == len(rows)


def test_records_arrow_refuses_are_converted_one_by_one() -> None:
    rows = [event("a"), {**event("b"), "time": 1772366400, "properties": {"nested": [1, 2]}}]
    with pytest.raises(ValueError):
        tables.from_ndjson("events", replayed("events", rows))
    table, rejected = wal.segment_table("events", replayed("events", rows))
    assert rejected == []
    assert table is not None and table.equals(tables.to_arrow("events", rows))
    assert table.column("properties").to_pylist()[1] == '{"nested":[1,2]}'


def test_two_nodes_commit_to_the_same_tables_concurrently(data_dir: Path) -> None:
    writers = [LogWriter.open(data_dir, f"node{n}", flush_interval=0.05) for n in (1, 2)]

    def work(n: int) -> None:
        for i in range(150):
            writers[n].append("events", [event(f"node{n}-{i}")])

    threads = [threading.Thread(target=work, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        assert w.stats()["last_error"] is None
        w.close()
    assert sorted(event_ids(data_dir)) == sorted(f"node{n}-{i}" for n in (0, 1) for i in range(150))
    for n in (1, 2):
        assert (tables.transaction_version(data_dir, "events", f"node{n}") or 0) >= 1


def test_a_segment_committed_but_not_deleted_is_not_applied_again(data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    writer = open_writer(data_dir)
    writer.append("events", [event("a"), event("b")])
    writer.append("visits", [{"visit_token": "v-a", "started_at": T0}])
    (number,) = wal.segment_numbers(wal_dir)
    saved = wal_dir.parent / "saved.wal"
    shutil.copy(wal.segment_path(wal_dir, number), saved)
    writer.close()  # commits and deletes the segment
    shutil.copy(saved, wal.segment_path(wal_dir, number))  # as if the deletion never happened

    with open_writer(data_dir) as again:
        assert again.stats()["commits"] == 0
        again.append("events", [event("c")])
    assert sorted(event_ids(data_dir)) == ["a", "b", "c"]
    assert wal.segment_numbers(wal_dir) == []


def test_a_segment_committed_to_one_table_only_completes_the_others(data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    writer = open_writer(data_dir)
    writer.append("events", [event("a")])
    writer.append("visits", [{"visit_token": "v-a", "started_at": T0}])
    (number,) = wal.segment_numbers(wal_dir)
    saved = wal_dir.parent / "saved.wal"
    shutil.copy(wal.segment_path(wal_dir, number), saved)
    writer.close()
    # a crash after the events commit and before the visits commit: undo the visits table
    shutil.rmtree(layout.table_path(data_dir, "visits"))
    shutil.copy(saved, wal.segment_path(wal_dir, number))

    open_writer(data_dir).close()
    con = views.connect(data_dir)
    assert con.execute("SELECT count(*) FROM visits").fetchone() == (1,)
    assert event_ids(data_dir) == ["a"]


def test_torn_tail_is_dropped_and_intact_frames_are_committed(data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    wal_dir.mkdir(parents=True)
    good = wal.MAGIC + wal.encode_frame("events", [event("a")])
    good += wal.encode_frame("events", [event("b")])
    torn = wal.encode_frame("events", [event("c")])[:-7]
    wal.segment_path(wal_dir, 1).write_bytes(good + torn)
    corrupt = bytearray(wal.MAGIC + wal.encode_frame("events", [event("d")]))
    corrupt[-3] ^= 0xFF  # a bit flip: the CRC no longer matches
    wal.segment_path(wal_dir, 2).write_bytes(bytes(corrupt))
    wal.segment_path(wal_dir, 3).write_bytes(wal.MAGIC[:4])  # created, header torn
    wal.segment_path(wal_dir, 4).write_bytes(wal.MAGIC + bytes(64))  # zero-filled tail

    with open_writer(data_dir) as writer:
        writer.append("events", [event("e")])
    assert sorted(event_ids(data_dir)) == ["a", "b", "e"]
    assert wal.segment_numbers(wal_dir) == []
    # a whole frame that fails its check is damage, not a torn write: that file is kept
    assert [p.name for p in (wal_dir / "damaged").iterdir()] == [wal.segment_path(wal_dir, 2).name]


def test_a_record_the_table_cannot_hold_is_set_aside_not_blocking(data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    wal_dir.mkdir(parents=True)
    bad = {"event_id": "bad", "time": "not a time"}
    frames = wal.encode_frame("events", [event("a"), bad]) + wal.encode_frame(
        "events", [event("b")]
    )
    wal.segment_path(wal_dir, 1).write_bytes(wal.MAGIC + frames)

    open_writer(data_dir).close()

    assert sorted(event_ids(data_dir)) == ["a", "b"]
    rejected = (wal_dir / "rejected-000000000001-events.ndjson").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in rejected] == ["bad"]
    assert wal.segment_numbers(wal_dir) == []


def test_segment_numbers_continue_after_the_last_committed_one(data_dir: Path) -> None:
    for name in ("a", "b"):
        with open_writer(data_dir) as writer:
            writer.append("events", [event(name)])
    assert tables.transaction_version(data_dir, "events", "n1") == 2
    assert sorted(event_ids(data_dir)) == ["a", "b"]


def test_tables_made_without_the_log_settings_get_them(data_dir: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    path = str(layout.table_path(data_dir, "events"))
    write_deltalake(path, tables.to_arrow("events", [event("old")]), partition_by=["date"])
    assert "delta.checkpointInterval" not in DeltaTable(path).metadata().configuration

    open_writer(data_dir).close()

    config = DeltaTable(path).metadata().configuration
    assert {k: config.get(k) for k in tables.TABLE_CONFIG} == tables.TABLE_CONFIG
    version = DeltaTable(path).version()
    open_writer(data_dir).close()
    assert DeltaTable(path).version() == version  # already set: no further commit


def test_many_commits_keep_the_delta_log_checkpointed(data_dir: Path) -> None:
    with open_writer(data_dir) as writer:
        for i in range(60):
            writer.append("events", [event(f"e{i}")])
            writer.flush()
        assert writer.stats()["commits"] == 60
    log_dir = layout.table_path(data_dir, "events") / "_delta_log"
    assert list(log_dir.glob("*.checkpoint.parquet"))
    assert (log_dir / "_last_checkpoint").exists()
    assert len(event_ids(data_dir)) == 60


CHILD = textwrap.dedent(
    """
    import datetime as dt, os, sys, threading
    from trailcli.store.wal import LogWriter

    data_dir, worker_count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    writer = LogWriter.open(data_dir, "crashy", flush_interval=0.05, flush_rows=500)
    os.write(1, b"ready\\n")
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    def work(w):
        i = 0
        while True:
            ids = [f"{prefix}-{w}-{i}-{j}" for j in range(1 + i % 3)]
            writer.append("events", [
                {"event_id": e, "name": "x", "time": now, "received_at": now} for e in ids
            ])
            writer.append("visits", [{"visit_token": ids[0], "started_at": now}])
            os.write(1, ("\\n".join(ids) + "\\n").encode())
            i += 1

    for w in range(worker_count):
        threading.Thread(target=work, args=(w,), daemon=True).start()
    threading.Event().wait()
    """
)


def run_and_kill(
    data_dir: Path, prefix: str, workers: int, delay: float, after_ready: bool
) -> set[str]:
    """Start an appending child and SIGKILL it `delay` seconds after it is ready (or after it
    started, which may land in its own recovery); the ids it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(workers), prefix],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert child.stdout is not None
    if after_ready:
        assert child.stdout.readline() == b"ready\n"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    out = child.stdout.read()
    child.wait()
    lines = out.split(b"\n")[:-1]  # the piece after the last newline may be partial
    return {line.decode() for line in lines} - {"ready"}


def check_exactly_once(data_dir: Path, acknowledged: set[str], seed: int) -> None:
    stored = event_ids(data_dir)
    assert len(stored) == len(set(stored)), f"a record was committed twice (seed {seed})"
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged records lost (seed {seed})"
    visits = stored_keys(data_dir, "visits", "visit_token")
    assert len(visits) == len(set(visits)), f"a visit was committed twice (seed {seed})"
    assert {i for i in acknowledged if i.endswith("-0")} <= set(visits)


def test_sigkill_at_random_moments_loses_and_repeats_nothing(data_dir: Path) -> None:
    """Children append from 1-4 threads and are killed at random; some rounds leave their WAL
    to the next child, whose own recovery may be killed too."""
    seed = int(os.environ.get("TRAIL_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    for round_no in range(6):
        after_ready = round_no % 3 != 2
        delay = rng.uniform(0.2, 1.5) if after_ready else rng.uniform(0.3, 1.5)
        acknowledged |= run_and_kill(data_dir, f"r{round_no}", 1 + round_no % 4, delay, after_ready)
        if round_no % 2:
            LogWriter.open(data_dir, "crashy").close()  # recovery in this process
            check_exactly_once(data_dir, acknowledged, seed)
    LogWriter.open(data_dir, "crashy").close()
    check_exactly_once(data_dir, acknowledged, seed)
    assert len(acknowledged) > 20, "the children acknowledged too little to test anything"
    assert wal.segment_numbers(layout.wal_dir(data_dir, "crashy")) == []


def test_frames_round_trip_times_and_odd_text() -> None:
    # orjson writes most records; the standard encoder takes what orjson refuses (a lone surrogate)
    for text in ("plain", "caf\u00e9 \x00\n", "lone \ud800", "line\nbreak"):
        records = [
            {"time": T0, "received_at": T0.replace(microsecond=7), "name": text},
            {"time": T0, "name": "second"},
        ]
        lines = replayed("events", records).split(b"\n")
        assert len(lines) == 2  # one line per record: no raw newline inside one
        first = wal.decode_record(lines[0])
        assert first == json.loads(lines[0])
        assert first["name"] == text
        assert first["time"] == T0.isoformat()
        assert first["received_at"] == "2026-03-01T12:00:00.000007+00:00"


def test_segments_of_the_previous_format_are_still_committed(data_dir: Path) -> None:
    # TRAILWAL1 frames hold one JSON object {"k": kind, "r": [records]}: a WAL left by an older
    # collector is committed by a newer one
    wal_dir = layout.wal_dir(data_dir, "n1")
    wal_dir.mkdir(parents=True)
    frames = b""
    for ids in (["a", "b"], ["c"]):
        body = json.dumps({"k": "events", "r": [event(i) for i in ids]}, default=str).encode()
        frames += struct.pack("<II", len(body), zlib.crc32(body)) + body
    wal.segment_path(wal_dir, 1).write_bytes(wal.LEGACY_MAGIC + frames)

    open_writer(data_dir).close()

    assert sorted(event_ids(data_dir)) == ["a", "b", "c"]
    assert wal.segment_numbers(wal_dir) == []


# --- damaged segments: every intact frame is recovered, the file is kept -------------------------


def acknowledged_segment(wal_dir: Path, count: int, number: int = 1) -> tuple[Path, list[int]]:
    """A segment of `count` one-event frames (one per acknowledged append); returns its path and
    the byte offset where each frame starts."""
    wal_dir.mkdir(parents=True, exist_ok=True)
    data, starts = bytearray(wal.MAGIC), []
    for i in range(count):
        starts.append(len(data))
        data += wal.encode_frame("events", [event(f"e{i:04d}")])
    path = wal.segment_path(wal_dir, number)
    path.write_bytes(bytes(data))
    return path, starts


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_a_flipped_byte_mid_segment_loses_only_its_frame_and_keeps_the_file(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    path, starts = acknowledged_segment(wal_dir, 2000)
    flip(path, starts[990] + 40)  # inside the payload of frame 990

    with caplog.at_level("WARNING", logger="trail.store.wal"):
        open_writer(data_dir).close()

    stored = sorted(event_ids(data_dir))
    assert len(stored) == 1999 and "e0990" not in stored
    assert wal.segment_numbers(wal_dir) == []
    kept = wal_dir / "damaged" / path.name
    assert kept.exists()
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    text = error.getMessage()
    assert str(path) in text and str(kept) in text
    assert f"bytes {starts[990]}-{starts[991]}" in text
    assert "recovered 1999 intact frame(s)" in text and "lost about 1 frame(s)" in text
    assert not [r for r in caplog.records if "torn tail" in r.getMessage()]


def test_a_damaged_segment_header_loses_no_frame(data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    path, _ = acknowledged_segment(wal_dir, 2000)
    flip(path, 3)

    open_writer(data_dir).close()

    assert len(set(event_ids(data_dir))) == 2000
    assert (wal_dir / "damaged" / path.name).exists()


def test_a_damaged_frame_length_still_yields_its_frame(data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    path, starts = acknowledged_segment(wal_dir, 50)
    flip(path, starts[20] + 1)  # the length field of frame 20; its CRC and payload are intact
    flip(path, starts[49] + 2)  # and of the last frame

    open_writer(data_dir).close()

    assert len(set(event_ids(data_dir))) == 50
    assert (wal_dir / "damaged" / path.name).exists()


def test_damage_then_a_torn_tail_are_told_apart() -> None:
    good = [wal.encode_frame("events", [event(f"e{i}")]) for i in range(5)]
    bad = bytearray(good[2])
    bad[-5] ^= 0x01
    torn = wal.encode_frame("events", [event("t")])[:-9]
    scan = wal_scan.scan_segment(wal.MAGIC + good[0] + good[1] + bytes(bad) + good[3] + torn)
    assert len(scan.frames) == 3 and scan.recovered_after_damage == 1
    start = len(wal.MAGIC) + len(good[0]) + len(good[1])
    assert [(d.start, d.end, d.lost_frames) for d in scan.damage] == [(start, start + len(bad), 1)]
    assert scan.torn_bytes == len(torn)


@pytest.mark.parametrize(
    ("tail", "torn"),
    [
        (lambda f: f[:-7], True),  # the last write stopped part-way
        (lambda f: f[:5], True),  # not even a whole frame header
        (lambda f: f[:30] + bytes(len(f) - 30), True),  # zero-filled blocks of an unfinished write
        (lambda f: f[:-3] + bytes([f[-3] ^ 1]) + f[-2:], False),  # a complete frame, a bit flipped
    ],
)
def test_only_an_unfinished_last_write_counts_as_torn(tail: object, torn: bool) -> None:
    frame = wal.encode_frame("events", [event("x")])
    scan = wal_scan.scan_segment(wal.MAGIC + wal.encode_frame("events", [event("a")]) + tail(frame))  # type: ignore[operator]
    assert len(scan.frames) == 1
    assert scan.damaged is not torn
    assert (scan.torn_bytes > 0) is torn


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_damaged_range_loses_only_the_frames_it_touches(data: st.DataObject) -> None:
    frames = [wal.encode_frame("events", [event(f"e{i}")]) for i in range(12)]
    blob = bytearray(wal.MAGIC + b"".join(frames))
    start = data.draw(st.integers(len(wal.MAGIC), len(blob) - 1))
    length = data.draw(st.integers(1, 40))
    end = min(len(blob), start + length)
    for i in range(start, end):
        blob[i] = data.draw(st.integers(0, 255))
    scan = wal_scan.scan_segment(bytes(blob))
    offsets = [len(wal.MAGIC) + sum(map(len, frames[:i])) for i in range(len(frames))]
    untouched = [
        f[8:] for f, at in zip(frames, offsets, strict=True) if at + len(f) <= start or at >= end
    ]
    assert all(payload in scan.frames for payload in untouched)
