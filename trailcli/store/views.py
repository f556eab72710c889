"""Bind the DuckDB views `visits`, `events`, `presence`, `identities` over the tables' current files."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailcli import sql
from trailcli.errors import CorruptDataError
from trailcli.store import coverage, tables
from trailcli.store.schema import KINDS, Kind

if TYPE_CHECKING:
    import duckdb

VIEW_ORDER = ("identities", "visits", "events", "presence")


def _empty_relation(con: duckdb.DuckDBPyConnection, kind: Kind, name: str) -> None:
    empty = tables.empty_select(kind.table_columns)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {empty}")


def _files_relation(
    con: duckdb.DuckDBPyConnection, kind: Kind, name: str, files: list[str]
) -> None:
    """A view over Parquet files; the list travels as a variable, never formatted into SQL."""
    if not files:
        _empty_relation(con, kind, name)
        return
    con.execute(f"SET VARIABLE {name}_files = $files", {"files": files})
    source = (
        f"SELECT * FROM read_parquet(getvariable('{name}_files'), hive_partitioning = true, "
        "hive_types = {'date': 'VARCHAR'}, union_by_name = true)"
    )
    columns = tables.select_columns(con, kind.table_columns, source)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {columns} FROM ({source})")


def _dedup_sql(kind: Kind, source: str) -> str:
    from trailcli.store.maintenance import first_wins_order

    key = ", ".join(kind.key)
    return (
        f"SELECT * FROM {source} QUALIFY row_number() OVER "
        f"(PARTITION BY date, {key} ORDER BY {first_wins_order(kind)}) = 1"
    )


def _bind_raw(con: duckdb.DuckDBPyConnection, kind: Kind, files: list[str]) -> None:
    """raw_<kind>: clean partitions as stored, the others deduplicated by key within the partition."""
    from trailcli.store import maintenance

    clean = maintenance.clean_dates_of(files)  # from the same file list: one consistent snapshot
    clean_files = [f for f in files if _date_of(f) in clean]
    dirty_files = [f for f in files if _date_of(f) not in clean]
    _files_relation(con, kind, f"_clean_{kind.name}", clean_files)
    _files_relation(con, kind, f"_dirty_{kind.name}", dirty_files)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW raw_{kind.name} AS "
        f"SELECT * FROM _clean_{kind.name} UNION ALL {_dedup_sql(kind, f'_dirty_{kind.name}')}"
    )


_DATE_DIR = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


def _date_of(path: str) -> str | None:
    match = _DATE_DIR.search(path)
    return match.group(1) if match else None


def connect(
    data_dir: Path,
    need: Iterable[str] = ("visits", "events", "presence", "identities"),
    con: duckdb.DuckDBPyConnection | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with every view bound.

    Raises NoDataError (store/coverage.py) when none of the `need` tables exists, or, for a range
    `[start, end)`, when none of them has a partition overlapping it.
    """
    import duckdb

    data_dir = Path(data_dir)
    needed = list(need)
    files = {name: tables.file_list(data_dir, name) for name in VIEW_ORDER}
    if needed:
        dates = {
            k: _dates_of(files[k]) if tables.table_exists(data_dir, k) else None for k in needed
        }
        coverage.require(data_dir, dates, start, end)
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with reading():  # binding a view reads the Parquet footers
        for name in VIEW_ORDER:
            _bind_raw(con, KINDS[name], files[name])
    con.execute("CREATE OR REPLACE TEMP VIEW identities AS SELECT * FROM raw_identities")
    con.execute(f"CREATE OR REPLACE TEMP VIEW first_identity AS {sql.load('view_first_identity')}")
    for name in ("visits", "events", "presence"):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql.load('view_' + name)}")
    _bind_sessions(con)
    return con


def _dates_of(files: Iterable[str]) -> set[str]:
    return {d for d in map(_date_of, files) if d is not None}


SESSION_TIMEOUT = timedelta(minutes=30)


def _bind_sessions(con: duckdb.DuckDBPyConnection) -> None:
    """The `session_events` and `sessions` views (trailcli/reports/sessions.py sets the timeout)."""
    con.execute("SET VARIABLE session_timeout = $timeout", {"timeout": SESSION_TIMEOUT})
    for name in ("session_events", "sessions"):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql.load(name)}")


_FILE_IN_ERROR = re.compile(r"['\"]([^'\"]+\.parquet)['\"]")


@contextlib.contextmanager
def reading() -> Iterator[None]:
    """Around any query over the views: a Parquet file that cannot be read becomes a
    CorruptDataError naming it."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:  # DuckDB 2 reports unreadable footers as a plain duckdb.Error
        match = _FILE_IN_ERROR.search(str(exc))
        if match:
            path = match.group(1)
            reason = str(exc).splitlines()[0].replace(f" in file '{path}'", "")
            raise CorruptDataError(
                f"Cannot read {path}: {reason}",
                "restore that file from a backup; the table's other files are intact",
            ) from exc
        raise


def run(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any] | None = None) -> Any:
    """Execute `query` (see `reading`). Prefer `con.sql(query, params=...)` inside `reading()` for
    Arrow or Polars results: DuckDB 2 copies rows when a DB-API result is turned into Arrow."""
    with reading():
        return con.execute(query, params or {})
