"""`trail compact`: deduplicating rewrites of closed partitions, clean marks, vacuum, bin-packing."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trailcli.errors import CorruptDataError, NoDataError, TrailError, UsageError
from trailcli.store import layout, maintenance, tables, views
from trailcli.store.schema import KINDS
from trailcli.store.wal import LogWriter

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)  # every generated day is closed by then
Write = Callable[[str, list[dict[str, Any]]], None]


def generated_events(seed: int, n: int, days: int, dup_rate: float) -> list[dict[str, Any]]:
    """Events over `days` days; a share of them re-sent later (same id and time, later receipt)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        at = DAY0 + dt.timedelta(seconds=rng.randrange(days * 86400))
        rows.append(
            {
                "event_id": f"e{i}",
                "visitor_token": f"vis{rng.randrange(n // 5 + 1)}",
                "visit_token": f"v{i % 97}",
                "name": rng.choice(["$view", "add_to_cart", "purchase"]),
                "properties": {"i": i},
                "time": at,
                "received_at": at + dt.timedelta(seconds=rng.randrange(5)),
            }
        )
    resent = [
        {**row, "received_at": row["received_at"] + dt.timedelta(minutes=rng.randrange(1, 90))}
        for row in rows
        if rng.random() < dup_rate
    ]
    return rows + resent


def expected_events(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dt.datetime]:
    """Reference: the earliest received_at of each (date, event_id)."""
    best: dict[tuple[str, str], dt.datetime] = {}
    for row in rows:
        key = (row["time"].date().isoformat(), row["event_id"])
        if key not in best or row["received_at"] < best[key]:
            best[key] = row["received_at"]
    return best


def write_in_batches(write: Write, kind: str, rows: list[dict[str, Any]], batches: int) -> None:
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    for b in range(batches):
        write(kind, shuffled[b::batches])


def read_events(data_dir: Path) -> dict[tuple[str, str], dt.datetime]:
    con = views.connect(data_dir, need=("events",))
    rows = con.execute("SELECT date, event_id, received_at FROM events").fetchall()
    assert len(rows) == len({(d, e) for d, e, _ in rows}), "a key is read twice"
    return {(d, e): r for d, e, r in rows}


def table_version(data_dir: Path, kind: str) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(layout.table_path(data_dir, kind))).version()


def test_compaction_drops_duplicates_keeps_the_earliest_and_reduces_files(
    data_dir: Path, write_rows: Write
) -> None:
    rows = generated_events(seed=1, n=3000, days=4, dup_rate=0.1)
    write_in_batches(write_rows, "events", rows, batches=6)
    expected = expected_events(rows)
    files_before = len(tables.file_list(data_dir, "events"))
    assert read_events(data_dir) == expected  # the views deduplicate dirty partitions

    summary = maintenance.compact(data_dir, older_than=LATER)

    assert read_events(data_dir) == expected
    assert summary.partitions_compacted == 4
    assert summary.rows_before == len(rows)
    assert summary.rows_after == len(expected)
    assert summary.duplicates_dropped == len(rows) - len(expected)
    files_after = tables.file_list(data_dir, "events")
    assert len(files_after) == 4 < files_before
    assert maintenance.clean_dates(data_dir, "events") == {
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
        "2026-03-04",
    }
    import duckdb

    stored = duckdb.sql(
        "SELECT count(*), count(DISTINCT event_id) FROM read_parquet($f)",
        params={"f": files_after},
    ).fetchall()[0]
    assert stored == (len(expected), len(expected))  # the files themselves hold each key once


def test_compacted_files_are_sorted_by_visitor_then_time(data_dir: Path, write_rows: Write) -> None:
    import pyarrow.parquet as pq

    write_in_batches(write_rows, "events", generated_events(2, 2000, 1, 0.0), batches=3)
    maintenance.compact(data_dir, older_than=LATER)
    (path,) = tables.file_list(data_dir, "events")
    table = pq.read_table(path, columns=["visitor_token", "time"])
    pairs = list(zip(table["visitor_token"].to_pylist(), table["time"].to_pylist(), strict=True))
    assert pairs == sorted(pairs)
    assert "date" not in pq.read_schema(path).names  # the partition value lives in the path


def test_compacted_presence_is_sorted_by_hour_then_visitor_in_small_row_groups(
    data_dir: Path, write_rows: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(maintenance, "PRESENCE_ROW_GROUP_ROWS", 1000)

    rng = random.Random(4)
    rows = [
        {
            "node_id": f"n{i % 3}",
            "seq": i,
            "time": DAY0 + dt.timedelta(seconds=rng.randrange(86_400)),
            "client_id": f"c{i % 50}",
            "transition": "subscribe",
            "visitor_token": f"v{rng.randrange(40)}",
        }
        for i in range(3000)
    ]
    write_in_batches(write_rows, "presence", rows, batches=3)
    maintenance.compact(data_dir, older_than=LATER)
    (path,) = tables.file_list(data_dir, "presence")
    table = pq.read_table(path, columns=["time", "visitor_token"])
    times, visitors = table["time"].to_pylist(), table["visitor_token"].to_pylist()
    order = [
        (at.replace(minute=0, second=0, microsecond=0), visitor, at)
        for at, visitor in zip(times, visitors, strict=True)
    ]
    assert order == sorted(order) and len(order) == 3000  # an instant's hours: a run of groups
    assert pq.ParquetFile(path).metadata.num_row_groups > 1  # presence's own group size


@pytest.mark.parametrize(
    ("kind", "first", "later", "winner"),
    [
        (
            "visits",
            {"visit_token": "v1", "started_at": DAY0, "landing_page": "/first"},
            {
                "visit_token": "v1",
                "started_at": DAY0 + dt.timedelta(minutes=5),
                "landing_page": "/x",
            },
            ("landing_page", "/first"),
        ),
        (
            "presence",
            {"node_id": "n", "seq": 1, "time": DAY0, "detected_at": DAY0, "reason": "first"},
            {
                "node_id": "n",
                "seq": 1,
                "time": DAY0,
                "detected_at": DAY0 + dt.timedelta(seconds=3),
                "reason": "later",
            },
            ("reason", "first"),
        ),
        (
            "identities",
            {"visit_token": "v1", "time": DAY0, "user_id": "u", "source": "api"},
            {"visit_token": "v1", "time": DAY0, "user_id": "u", "source": "api"},
            ("source", "api"),
        ),
    ],
)
def test_each_kind_keeps_one_row_per_key(
    data_dir: Path,
    write_rows: Write,
    kind: str,
    first: dict[str, Any],
    later: dict[str, Any],
    winner: tuple[str, str],
) -> None:
    write_rows(kind, [later])
    write_rows(kind, [first])
    other = {**first, KINDS[kind].key[0]: "other"}  # another key: kept beside the winner
    write_rows(kind, [other])
    maintenance.compact(data_dir, older_than=LATER)
    column, value = winner
    con = views.connect(data_dir)
    rows = con.execute(f"SELECT {column} FROM raw_{kind} ORDER BY {column}").fetchall()
    assert len(rows) == 2
    assert (value,) in rows


def test_a_second_run_changes_nothing(data_dir: Path, write_rows: Write) -> None:
    write_in_batches(write_rows, "events", generated_events(3, 500, 2, 0.1), batches=3)
    write_rows("visits", [{"visit_token": "v", "started_at": DAY0}])
    maintenance.compact(data_dir, older_than=LATER)
    versions = {k: table_version(data_dir, k) for k in ("events", "visits")}
    files = tables.file_list(data_dir, "events")

    again = maintenance.compact(data_dir, older_than=LATER)

    assert again.partitions_compacted == 0
    assert again.partitions_skipped == 3
    assert {k: table_version(data_dir, k) for k in ("events", "visits")} == versions
    assert tables.file_list(data_dir, "events") == files


def test_open_days_are_left_alone(data_dir: Path, write_rows: Write) -> None:
    rows = generated_events(4, 600, 3, 0.2)
    write_in_batches(write_rows, "events", rows, batches=2)
    summary = maintenance.compact(data_dir, older_than=DAY0 + dt.timedelta(days=2, hours=5))
    assert summary.partitions_compacted == 2
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01", "2026-03-02"}
    assert read_events(data_dir) == expected_events(rows)


def test_an_append_to_a_clean_partition_makes_it_dirty_again(
    data_dir: Path, write_rows: Write
) -> None:
    rows = generated_events(5, 300, 1, 0.0)
    write_rows("events", rows)
    maintenance.compact(data_dir, older_than=LATER)
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01"}

    late = {**rows[0], "received_at": rows[0]["received_at"] + dt.timedelta(hours=1)}
    write_rows("events", [late])  # a re-sent event lands in the clean day

    assert maintenance.clean_dates(data_dir, "events") == set()
    assert read_events(data_dir) == expected_events(rows)
    summary = maintenance.compact(data_dir, older_than=LATER)
    assert summary.partitions_compacted == 1
    assert summary.duplicates_dropped == 1
    assert read_events(data_dir) == expected_events(rows)


def test_a_reader_during_compaction_sees_every_row_exactly_once(
    data_dir: Path, write_rows: Write
) -> None:
    rows = generated_events(6, 4000, 8, 0.15)
    write_in_batches(write_rows, "events", rows, batches=4)
    expected = len(expected_events(rows))
    counts: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    read_done = threading.Semaphore(0)

    def reader() -> None:
        try:
            while not stop.is_set():
                con = views.connect(data_dir, need=("events",))
                row = con.execute("SELECT count(*), count(DISTINCT (date, event_id)) FROM events")
                counts.append(row.fetchone())  # type: ignore[arg-type]
                con.close()
                read_done.release()
        except BaseException as exc:
            errors.append(exc)
            read_done.release()

    def after_a_read(_line: str) -> None:
        """Before each partition: wait for a read that ends after the previous commit."""
        while read_done.acquire(blocking=False):
            pass
        read_done.acquire(timeout=30)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        summary = maintenance.compact(data_dir, older_than=LATER, progress=after_a_read)
        after_a_read("and one read after the last commit")
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert summary.partitions_compacted == 8
    assert len(counts) >= 9, "the reader did not overlap the compaction"
    assert set(counts) == {(expected, expected)}


def test_an_append_landing_during_compaction_is_kept(data_dir: Path, write_rows: Write) -> None:
    rows = generated_events(16, 300, 1, 0.1)
    write_in_batches(write_rows, "events", rows, batches=3)
    late = {**rows[0], "event_id": "late", "received_at": LATER}

    def append_meanwhile(_line: str) -> None:  # after compaction took its file list
        write_rows("events", [late])

    maintenance.compact(data_dir, older_than=LATER, progress=append_meanwhile)

    assert read_events(data_dir) == expected_events([*rows, late])
    assert maintenance.clean_dates(data_dir, "events") == set()  # dirty again: the late file
    maintenance.compact(data_dir, older_than=LATER)
    assert read_events(data_dir) == expected_events([*rows, late])
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01"}


def test_vacuum_deletes_replaced_files_only_past_the_retention(
    data_dir: Path, write_rows: Write
) -> None:
    write_in_batches(write_rows, "events", generated_events(8, 200, 1, 0.0), batches=3)
    old_files = tables.file_list(data_dir, "events")
    summary = maintenance.compact(data_dir, older_than=LATER)
    assert summary.files_vacuumed == 0
    assert all(Path(f).exists() for f in old_files)  # kept for readers holding the old list

    summary = maintenance.compact(data_dir, older_than=LATER, retention=dt.timedelta(0))
    assert summary.files_vacuumed == len(old_files)
    assert not any(Path(f).exists() for f in old_files)
    assert len(read_events(data_dir)) == 200


def test_vacuum_deletes_old_files_no_commit_references(data_dir: Path, write_rows: Write) -> None:
    import os
    import time

    write_rows("events", generated_events(17, 20, 1, 0.0))
    partition = Path(tables.file_list(data_dir, "events")[0]).parent
    stale = partition / "part-00000-crashed-writer-c000.zstd.parquet"  # written, never committed
    fresh = partition / "part-00000-in-flight-c000.zstd.parquet"  # a commit may be on its way
    for path in (stale, fresh):
        path.write_bytes(b"PAR1")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)

    summary = maintenance.compact(data_dir, older_than=LATER)

    assert summary.files_vacuumed == 1
    assert not stale.exists()
    assert fresh.exists()
    assert len(read_events(data_dir)) == 20


def test_kinds_limits_what_is_compacted(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", generated_events(9, 50, 1, 0.0))
    write_rows("visits", [{"visit_token": "v", "started_at": DAY0}])
    summary = maintenance.compact(data_dir, older_than=LATER, kinds=["visits"])
    assert summary.kinds == ["visits"]
    assert maintenance.clean_dates(data_dir, "visits") == {"2026-03-01"}
    assert maintenance.clean_dates(data_dir, "events") == set()


def test_progress_reports_each_partition(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", generated_events(10, 100, 2, 0.0))
    lines: list[str] = []
    maintenance.compact(data_dir, older_than=LATER, progress=lines.append)
    assert [line.split(":")[0] for line in lines] == ["events 2026-03-01", "events 2026-03-02"]


def test_missing_tables_and_bad_arguments(data_dir: Path, write_rows: Write) -> None:
    with pytest.raises(NoDataError, match="No trail tables"):
        maintenance.compact(data_dir)
    write_rows("events", generated_events(11, 10, 1, 0.0))
    with pytest.raises(NoDataError):
        maintenance.compact(data_dir, kinds=["visits"])
    with pytest.raises(UsageError, match="Unknown log kind"):
        maintenance.compact(data_dir, kinds=["clicks"])
    with pytest.raises(UsageError, match="negative"):
        maintenance.compact(data_dir, retention=dt.timedelta(hours=-1))


def test_a_corrupt_file_is_named_and_the_partition_left_as_it_was(
    data_dir: Path, write_rows: Write
) -> None:
    write_rows("events", generated_events(12, 100, 1, 0.0))
    write_rows("events", generated_events(13, 100, 1, 0.0))
    victim = tables.file_list(data_dir, "events")[0]
    Path(victim).write_bytes(b"PAR1 this is not parquet PAR1")
    version = table_version(data_dir, "events")

    with pytest.raises(CorruptDataError, match=Path(victim).name):
        maintenance.compact(data_dir, older_than=LATER)

    assert table_version(data_dir, "events") == version
    assert tables.file_list(data_dir, "events")[0] == victim
    partition = Path(victim).parent
    assert not list(partition.glob(layout.CLEAN_PREFIX + "*"))  # no half-written file left


def test_only_one_compaction_runs_at_a_time(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", generated_events(14, 10, 1, 0.0))
    with maintenance.compaction_lock(data_dir), pytest.raises(TrailError, match="Another"):
        maintenance.compact(data_dir, older_than=LATER)


def test_bin_pack_today_merges_small_files_beside_a_live_writer(data_dir: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    writer = LogWriter.open(data_dir, "n1", flush_interval=3600)
    ids = [f"e{i}" for i in range(400)]
    for chunk in range(8):
        writer.append("events", [_event(i, now) for i in ids[chunk * 50 : (chunk + 1) * 50]])
        writer.flush()
    files_before = len(tables.file_list(data_dir, "events"))
    more = [f"late{i}" for i in range(200)]

    def append_more() -> None:
        for i in range(0, 200, 20):
            writer.append("events", [_event(x, now) for x in more[i : i + 20]])
            writer.flush()

    thread = threading.Thread(target=append_more)
    thread.start()
    metrics = maintenance.bin_pack_today(data_dir, now=now)
    thread.join()
    writer.close()

    assert metrics["events"]["numFilesRemoved"] >= 2
    assert len(tables.file_list(data_dir, "events")) < files_before + 10
    assert sorted(read_events(data_dir)) == sorted((now.date().isoformat(), e) for e in ids + more)
    assert maintenance.clean_dates(data_dir, "events") == set()  # bin-packing never dedups


def _event(event_id: str, at: dt.datetime) -> dict[str, Any]:
    return {"event_id": event_id, "name": "x", "time": at, "received_at": at}


# -- the command ------------------------------------------------------------------------------


def test_cli_compacts_and_summarises_on_stderr(
    data_dir: Path, write_rows: Write, run_cli: Callable[..., Any]
) -> None:
    rows = generated_events(15, 300, 2, 0.1)
    write_in_batches(write_rows, "events", rows, batches=3)
    result = run_cli("compact", "--data-dir", data_dir, "--older-than", "2026-04-01")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "events 2026-03-01" in result.stderr
    assert f"{len(expected_events(rows))} rows" in result.stderr
    assert "duplicate(s) dropped" in result.stderr
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01", "2026-03-02"}


def test_cli_default_leaves_today_alone(
    data_dir: Path, run_cli: Callable[..., Any], write_rows: Write
) -> None:
    now = dt.datetime.now(dt.UTC)
    write_rows("events", [_event("a", now), _event("b", now)])
    result = run_cli("compact", "--data-dir", data_dir, "--kind", "events")
    assert result.exit_code == 0
    assert "compacted 0 partition(s)" in result.stderr
    assert maintenance.clean_dates(data_dir, "events") == set()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--retention", "soon"], 2, "Cannot read the duration"),
        (["--older-than", "last tuesday"], 2, "Cannot read the time"),
        (["--kind", "clicks"], 2, "Unknown log kind"),
    ],
)
def test_cli_bad_options(
    data_dir: Path,
    run_cli: Callable[..., Any],
    write_rows: Write,
    args: list[str],
    code: int,
    message: str,
) -> None:
    write_rows("events", [_event("a", DAY0)])
    result = run_cli("compact", "--data-dir", data_dir, *args)
    assert result.exit_code == code
    assert message in result.stderr


def test_cli_without_tables_exits_3(data_dir: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("compact", "--data-dir", data_dir)
    assert result.exit_code == 3
    assert str(data_dir / "events") in result.stderr


def test_trail_compact_builds_the_presence_snapshots(
    data_dir: Path, write_rows: Write, run_cli: Callable[..., Any]
) -> None:
    def row(seq: int, at: dt.datetime, transition: str, client: str | None) -> dict[str, Any]:
        return {
            "time": at,
            "seq": seq,
            "node_id": "n1",
            "client_id": client,
            "transition": transition,
            "reason": "handshake" if transition == "online" else None,
            "visitor_token": "vis1" if client else None,
            "detected_at": at,
        }

    write_rows(
        "presence",
        [
            row(1, DAY0 + dt.timedelta(hours=23), "heartbeat", None),
            row(2, DAY0 + dt.timedelta(hours=23, minutes=1), "online", "c1"),
            row(3, DAY0 + dt.timedelta(days=1, hours=1), "heartbeat", None),
        ],
    )
    result = run_cli("compact", "--data-dir", data_dir, "--older-than", LATER.isoformat())
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("presence snapshot 2026-03-02") for line in lines), lines
    assert any(layout.snapshot_dir(data_dir).iterdir())
