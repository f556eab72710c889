"""The erasure list: keyed hashes, the same rule in Python and in SQL, and the writers that honour it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from trailcli.store import erasure, layout, maintenance, tables
from trailcli.store.wal import LogWriter

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
Write = Callable[[str, list[dict[str, Any]]], None]
VALUES = ["visitor-1", "", "ümlaut ✓", "it's", "a:b", "x" * 300]


def event(i: int, visitor: str, visit: str = "v", user: str | None = None) -> dict[str, Any]:
    at = DAY0 + dt.timedelta(minutes=i)
    return {"event_id": f"e{i}", "visitor_token": visitor, "visit_token": visit, "user_id": user,
            "name": "$view", "time": at, "received_at": at}  # fmt: skip


@pytest.mark.parametrize("value", VALUES)
def test_the_keyed_hash_is_the_same_in_python_and_sql(value: str) -> None:
    erased = erasure.Erased(
        "c0ffee", {"visitor_token": frozenset({erasure.keyed_hash("c0ffee", value)})}
    )
    params: dict[str, Any] = {}
    keep = erased.sql_filter(params, ["visitor_token"])
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT visitor_token FROM (SELECT unnest($values) AS visitor_token) WHERE {keep}",
        {**params, "values": VALUES},
    ).fetchall()
    assert sorted(v for (v,) in rows) == sorted(v for v in VALUES if v != value)
    assert erased.record_erased({"visitor_token": value})
    assert not erased.record_erased({"visitor_token": value + " "})


def test_the_list_holds_hashes_only_and_reads_back(data_dir: Path) -> None:
    assert not erasure.load(data_dir)
    assert erasure.add(data_dir, {"visitor_token": ["tok-1"], "user_id": ["42"]}) == 2
    assert erasure.add(data_dir, {"visitor_token": ["tok-1"]}) == 0  # already there
    text = (layout.erasure_dir(data_dir) / erasure.LIST_FILE).read_text()
    assert "tok-1" not in text and '"42"' not in text
    erased = erasure.load(data_dir)
    assert erased.record_erased({"visitor_token": "tok-1"})
    assert erased.record_erased({"visitor_token": "other", "user_id": "42"})
    assert not erased.record_erased({"visitor_token": "other", "visit_token": "tok-1"})
    salt = (layout.erasure_dir(data_dir) / erasure.SALT_FILE).stat()
    assert salt.st_mode & 0o077 == 0


def test_a_torn_last_line_is_skipped(data_dir: Path) -> None:
    erasure.add(data_dir, {"visit_token": ["a"]})
    with (layout.erasure_dir(data_dir) / erasure.LIST_FILE).open("a") as f:
        f.write('{"column": "visit_tok')
    assert erasure.load(data_dir).record_erased({"visit_token": "a"})


def test_drop_from_an_arrow_table(data_dir: Path) -> None:
    erasure.add(data_dir, {"visitor_token": ["gone"], "user_id": ["7"]})
    table = tables.to_arrow("events", [event(1, "gone"), event(2, "kept"), event(3, "kept", user="7"),
                                       event(4, "kept", user="8")])  # fmt: skip
    kept = erasure.load(data_dir).drop_from(table)
    assert kept.column("event_id").to_pylist() == ["e2", "e4"]


def test_the_wal_commit_drops_erased_records(data_dir: Path) -> None:
    erasure.add(data_dir, {"visitor_token": ["gone"]})
    with LogWriter.open(data_dir, "n1") as writer:
        writer.append("events", [event(1, "gone"), event(2, "kept")])
        writer.flush()
        writer.append("events", [event(3, "gone")])  # a segment of nothing but erased records
    assert [r["event_id"] for r in _events(data_dir)] == ["e2"]


def test_compaction_drops_rows_an_import_wrote_after_the_erasure(
    data_dir: Path, write_rows: Write
) -> None:
    erasure.add(data_dir, {"visitor_token": ["gone"]})
    write_rows("events", [event(1, "gone"), event(2, "kept"), event(2, "kept")])
    maintenance.compact(data_dir, older_than=DAY0 + dt.timedelta(days=3))
    assert [r["event_id"] for r in _events(data_dir)] == ["e2"]


def _events(data_dir: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    cur = con.execute(
        "SELECT * FROM read_parquet($f, hive_partitioning = false) ORDER BY event_id",
        {"f": tables.file_list(data_dir, "events")},
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_the_audit_log_reads_back(data_dir: Path) -> None:
    assert erasure.read_audit(data_dir) == []
    erasure.append_audit(data_dir, {"at": "now", "rows": {"events": 3}})
    assert erasure.read_audit(data_dir) == [{"at": "now", "rows": {"events": 3}}]
    assert json.loads((layout.erasure_dir(data_dir) / erasure.AUDIT_FILE).read_text())["rows"]
