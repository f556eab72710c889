"""Rewriting the files that hold matching rows, deleting the replaced files and log at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from erasure_support import files_holding

from trailcli.errors import CorruptDataError
from trailcli.store import erase, layout, maintenance, tables

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
Write = Callable[[str, list[dict[str, Any]]], None]


def events(visitors: int, days: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(visitors * days * 3):
        at = DAY0 + dt.timedelta(days=i % days, minutes=i)
        rows.append(
            {
                "event_id": f"e{i}",
                "visitor_token": f"visitor-{i % visitors:04d}",
                "visit_token": f"visit-{i % visitors:04d}-{i % days}",
                "name": "$view",
                "properties": {"page": f"/p/{i % 7}"},
                "time": at,
                "received_at": at,
            }
        )
    return rows


def stored(data_dir: Path) -> list[tuple[Any, ...]]:
    files = tables.file_list(data_dir, "events")
    con = duckdb.connect()
    return sorted(
        con.execute(
            "SELECT event_id, visitor_token FROM read_parquet($f, hive_partitioning = false)",
            {"f": files},
        ).fetchall()
    )


def test_drops_matching_rows_and_deletes_the_replaced_files_and_log(
    data_dir: Path, write_rows: Write
) -> None:
    rows = events(visitors=20, days=3)
    write_rows("events", rows[: len(rows) // 2])
    maintenance.compact(data_dir, older_than=DAY0 + dt.timedelta(days=9))  # clean files, tombstones
    write_rows("events", rows[len(rows) // 2 :])  # and dirty ones beside them
    before = stored(data_dir)
    assert files_holding(data_dir, ["visitor-0007"])  # also the removed, not yet vacuumed files

    done = erase.rewrite_files(
        data_dir, "events", "visitor_token = $v", {"v": "visitor-0007"}, operation="test"
    )

    assert stored(data_dir) == [r for r in before if r[1] != "visitor-0007"]
    assert done.rows_matched == sum(1 for r in before if r[1] == "visitor-0007")
    assert done.files_matched == done.files_written > 0
    assert done.dates == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert files_holding(data_dir, ["visitor-0007"]) == []
    assert done.log_entries_deleted > 0


def test_a_clean_file_stays_clean_and_a_dry_run_changes_nothing(
    data_dir: Path, write_rows: Write
) -> None:
    write_rows("events", events(visitors=5, days=2))
    maintenance.compact(data_dir, older_than=DAY0 + dt.timedelta(days=9))
    files = tables.file_list(data_dir, "events")

    dry = erase.rewrite_files(
        data_dir, "events", "visitor_token = $v", {"v": "visitor-0001"}, dry_run=True
    )
    assert (dry.rows_matched, dry.files_matched) == (6, 2)
    assert tables.file_list(data_dir, "events") == files

    erase.rewrite_files(data_dir, "events", "visitor_token = $v", {"v": "visitor-0001"})
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01", "2026-03-02"}
    assert all(layout.is_clean_file(f) for f in tables.file_list(data_dir, "events"))


def test_a_file_whose_rows_all_match_is_removed_without_a_replacement(
    data_dir: Path, write_rows: Write
) -> None:
    write_rows(
        "events", [r for r in events(visitors=3, days=1) if r["visitor_token"] == "visitor-0002"]
    )
    write_rows(
        "events", [r for r in events(visitors=3, days=1) if r["visitor_token"] != "visitor-0002"]
    )

    done = erase.rewrite_files(data_dir, "events", "visitor_token = $v", {"v": "visitor-0002"})

    assert (done.files_matched, done.files_written) == (1, 0)
    assert {r[1] for r in stored(data_dir)} == {"visitor-0000", "visitor-0001"}


def test_replace_keeps_the_rows_with_new_values(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", events(visitors=3, days=1))

    erase.rewrite_files(
        data_dir,
        "events",
        "visitor_token = $v",
        {"v": "visitor-0001"},
        replace={"visitor_token": "'masked'"},
    )

    assert {r[1] for r in stored(data_dir)} == {"visitor-0000", "masked", "visitor-0002"}
    assert len(stored(data_dir)) == 9


def test_an_unreadable_file_is_named_and_nothing_changes(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", events(visitors=3, days=1))
    files = tables.file_list(data_dir, "events")
    Path(files[0]).write_bytes(b"not parquet")

    with pytest.raises(CorruptDataError):
        erase.rewrite_files(data_dir, "events", "visitor_token = $v", {"v": "visitor-0001"})
    assert tables.file_list(data_dir, "events") == files


def test_a_missing_table_is_nothing_to_do(data_dir: Path) -> None:
    done = erase.rewrite_files(data_dir, "events", "visitor_token = $v", {"v": "x"})
    assert done.rows_matched == 0


def test_an_erasure_waits_for_a_writer_holding_the_lock(data_dir: Path, write_rows: Write) -> None:
    import threading
    import time

    from trailcli.store import forget

    write_rows("events", events(visitors=3, days=1))
    said: list[str] = []
    with erase.erasure_lock(data_dir, shared=True):  # as a WAL commit or compaction does
        worker = threading.Thread(
            target=forget.forget,
            args=(data_dir, [forget.Selector("visitor", "visitor-0001")]),
            kwargs={"progress": said.append},
        )
        worker.start()
        for _ in range(300):
            if any("waiting" in m for m in said):
                break
            time.sleep(0.05)
        assert any("waiting" in m for m in said)
        assert "visitor-0001" in {r[1] for r in stored(data_dir)}  # nothing rewritten meanwhile
    worker.join(60)
    assert "visitor-0001" not in {r[1] for r in stored(data_dir)}
