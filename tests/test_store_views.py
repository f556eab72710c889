"""The views over the tables: missing tables, dedup of dirty partitions only, corrupt files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from trailcli.errors import CorruptDataError, NoDataError
from trailcli.sources.referrer_facts import FACT_COLUMNS
from trailcli.store import layout, maintenance, tables, views
from trailcli.store.schema import KINDS

T = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
Write = Callable[[str, list[dict[str, Any]]], None]


def ev(event_id: str, at: dt.datetime, received: dt.datetime, name: str = "x") -> dict[str, Any]:
    return {"event_id": event_id, "name": name, "time": at, "received_at": received}


def test_a_missing_table_reads_as_an_empty_view_with_its_columns(
    data_dir: Path, write_rows: Write
) -> None:
    write_rows("events", [ev("a", T, T)])
    con = views.connect(data_dir)
    for kind in ("visits", "presence", "identities"):
        assert con.execute(f"SELECT count(*) FROM {kind}").fetchall() == [(0,)]
        columns = [d[0] for d in con.execute(f"SELECT * FROM raw_{kind}").description]
        assert columns == KINDS[kind].table_schema.names
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_empty_table_has_the_types_of_the_arrow_schema(kind: str) -> None:
    """The SQL types read without pyarrow match the Arrow schema written with it."""
    import duckdb

    con = duckdb.connect()
    con.register("arrow_empty", KINDS[kind].table_schema.empty_table())
    arrow = con.execute("DESCRIBE SELECT * FROM arrow_empty").fetchall()
    sql = con.execute(f"DESCRIBE {tables.empty_select(KINDS[kind].table_columns)}").fetchall()
    assert [(c[0], c[1]) for c in sql] == [(c[0], c[1]) for c in arrow]


def test_no_table_at_all_is_no_data_naming_what_was_looked_for(data_dir: Path) -> None:
    with pytest.raises(NoDataError) as err:
        views.connect(data_dir, need=("events", "visits"))
    assert str(data_dir / "events") in err.value.message
    assert str(data_dir / "visits") in err.value.message


def test_dirty_partitions_keep_the_earliest_receipt_of_each_key(
    data_dir: Path, write_rows: Write
) -> None:
    write_rows("events", [ev("a", T, T + dt.timedelta(seconds=9), name="late copy")])
    write_rows("events", [ev("a", T, T + dt.timedelta(seconds=1), name="original")])
    write_rows("events", [ev("b", T, T)])
    con = views.connect(data_dir)
    rows = con.execute("SELECT event_id, name FROM events ORDER BY 1").fetchall()
    assert rows == [("a", "original"), ("b", "x")]


def test_reads_keep_what_the_plain_rule_keeps_with_repeats_within_and_across_files(
    data_dir: Path, write_rows: Write
) -> None:
    """Only keys that repeat are ranked; the rows kept are exactly those of `keep_first`."""
    second = dt.timedelta(seconds=1)
    first_file = [ev(f"e{i}", T, T + i * second, name=f"one-{i}") for i in range(40)]
    first_file += [ev("e3", T, T + 90 * second, name="repeat within the file")]
    write_rows("events", first_file)
    write_rows("events", [ev(f"e{i}", T, T - second, name=f"earlier-{i}") for i in range(0, 40, 7)])
    write_rows("events", [ev("e5", T, T + 99 * second, name="later copy"), ev("z", T, T)])
    con = views.connect(data_dir)
    read = con.execute("SELECT event_id, name, received_at FROM raw_events ORDER BY 1").fetchall()
    plain = views.keep_first(KINDS["events"], "SELECT * FROM raw_events_stored")
    expected = con.execute(
        f"SELECT event_id, name, received_at FROM ({plain}) ORDER BY 1"
    ).fetchall()
    assert read == expected
    names = dict((r[0], r[1]) for r in read)
    assert len(read) == 41
    assert names["e3"] == "one-3" and names["e7"] == "earlier-7" and names["e5"] == "one-5"


def test_a_duplicate_in_another_day_is_not_removed(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", [ev("a", T, T)])
    write_rows("events", [ev("a", T + dt.timedelta(days=1), T + dt.timedelta(days=1))])
    maintenance.compact(data_dir, older_than=T + dt.timedelta(days=5))
    con = views.connect(data_dir)
    assert con.execute("SELECT date FROM events ORDER BY 1").fetchall() == [
        ("2026-03-01",),
        ("2026-03-02",),
    ]


def test_clean_partitions_are_read_as_stored(data_dir: Path, write_rows: Write) -> None:
    write_rows("events", [ev("a", T, T)])
    maintenance.compact(data_dir, older_than=T + dt.timedelta(days=1))
    (clean,) = tables.file_list(data_dir, "events")
    assert Path(clean).name.startswith(layout.CLEAN_PREFIX)
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01"}
    con = views.connect(data_dir)
    clean_plan = _plan(con, "SELECT * FROM raw_events")
    assert con.execute("SELECT count(*) FROM raw_events").fetchall() == [(1,)]
    write_rows("events", [ev("a", T, T)])  # an append makes the partition dirty again
    con = views.connect(data_dir)
    assert con.execute("SELECT count(*) FROM raw_events").fetchall() == [(1,)]
    assert _plan(con, "SELECT * FROM raw_events") != clean_plan  # deduplicated only now


def _plan(con: Any, query: str) -> str:
    return "".join(row[1] for row in con.execute(f"EXPLAIN {query}").fetchall())


def test_clean_dates_of_a_file_list() -> None:
    files = [
        "/d/events/date=2026-03-01/trail-clean-1.zstd.parquet",
        "/d/events/date=2026-03-02/trail-clean-2.zstd.parquet",
        "/d/events/date=2026-03-02/part-00000-x-c000.zstd.parquet",
        "/d/events/date=2026-03-03/part-00000-y-c000.zstd.parquet",
    ]
    assert layout.clean_dates_of(files) == {"2026-03-01"}
    assert layout.clean_dates_of([]) == set()


def corrupt_one_file(data_dir: Path, write_rows: Write) -> Path:
    write_rows("events", [ev("a", T, T)])
    write_rows("events", [ev("b", T, T)])
    victim = Path(tables.file_list(data_dir, "events")[1])
    victim.write_bytes(b"PAR1 truncated PAR1")
    return victim


def test_a_corrupt_file_is_a_corrupt_data_error_naming_it(
    data_dir: Path, write_rows: Write
) -> None:
    victim = corrupt_one_file(data_dir, write_rows)
    with pytest.raises(CorruptDataError) as err:
        views.run(views.connect(data_dir), "SELECT count(*) FROM events").fetchall()
    assert err.value.message.startswith(f"Cannot read {victim}: ")


def test_trail_sql_exits_1_naming_a_corrupt_file(
    data_dir: Path, write_rows: Write, run_cli: Callable[..., Any]
) -> None:
    victim = corrupt_one_file(data_dir, write_rows)
    result = run_cli("sql", "--data-dir", data_dir, "SELECT count(*) AS n FROM events")
    assert result.exit_code == 1
    assert str(victim) in result.stderr
    assert result.stdout == ""


def test_a_data_dir_with_spaces_reads_and_compacts(tmp_path: Path) -> None:
    from trailcli.store.wal import LogWriter

    data_dir = tmp_path / "my trail data"
    with LogWriter.open(data_dir, "n1") as writer:
        writer.append("events", [ev("a", T, T), ev("a", T, T + dt.timedelta(seconds=1))])
    assert all(Path(f).exists() for f in tables.file_list(data_dir, "events"))
    count = "SELECT count(*) FROM events"
    assert views.connect(data_dir).execute(count).fetchall() == [(1,)]
    maintenance.compact(data_dir, older_than=T + dt.timedelta(days=1), retention=dt.timedelta(0))
    assert views.connect(data_dir).execute(count).fetchall() == [(1,)]
    assert maintenance.clean_dates(data_dir, "events") == {"2026-03-01"}


def _visits_written_before_the_source_facts(data_dir: Path) -> None:
    """A visits table as older versions wrote it: no referrer_kind, click_id or search_term."""
    table = tables.to_arrow("visits", [{"visit_token": "old", "started_at": T, "referrer": "x"}])
    old = table.drop_columns(list(FACT_COLUMNS))
    from deltalake import write_deltalake

    write_deltalake(str(data_dir / "visits"), old, partition_by=["date"], mode="append")


def test_columns_added_later_read_as_null_in_older_files(data_dir: Path, write_rows: Write) -> None:
    _visits_written_before_the_source_facts(data_dir)
    con = views.connect(data_dir)
    assert con.execute("SELECT visit_token, referrer_kind FROM visits").fetchall() == [
        ("old", None)
    ]
    row = {"visit_token": "new", "started_at": T, "referrer_kind": "none"}
    write_rows("visits", [row])  # the table's schema gains the columns
    con = views.connect(data_dir)
    rows = con.execute("SELECT visit_token, referrer_kind FROM visits ORDER BY 1").fetchall()
    assert rows == [("new", "none"), ("old", None)]


def test_a_partition_of_older_files_compacts(data_dir: Path) -> None:
    _visits_written_before_the_source_facts(data_dir)
    maintenance.compact(data_dir, older_than=T + dt.timedelta(days=1))
    con = views.connect(data_dir)
    assert con.execute("SELECT visit_token, click_id FROM visits").fetchall() == [("old", None)]
    (clean,) = tables.file_list(data_dir, "visits")
    assert "click_id" in pq.read_schema(clean).names
