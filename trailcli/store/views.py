"""Reading the tables: their current files by partition, and DuckDB views over chosen partitions.

The one place that reads: clean partitions are read as stored, the others deduplicated by key
within the partition (the earliest `first_wins_by` wins), a missing table reads as an empty view
with its columns, and an unreadable file becomes a CorruptDataError naming it. `connect` binds
the views the reports and `trail sql` see (`visits`, `events`, `presence`, `identities`,
`sessions`, and `raw_<kind>_stored`, every row as stored); `Lake` binds single tables over
chosen dates, as `trail online` does, many times on one connection.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from trailcli import sql
from trailcli.errors import CorruptDataError
from trailcli.store import coverage, layout, tables
from trailcli.store.layout import Days
from trailcli.store.schema import KINDS, Kind

if TYPE_CHECKING:
    import duckdb

VIEW_ORDER = ("identities", "visits", "events", "presence")
SESSION_TIMEOUT = timedelta(minutes=30)
EMPTY_FIRST_IDENTITY = (
    "SELECT NULL::VARCHAR AS visit_token, NULL::VARCHAR AS user_id, "
    "NULL::TIMESTAMPTZ AS bound_at WHERE false"
)
INSTANT = "TIMESTAMP WITH TIME ZONE"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def first_wins_order(kind: Kind) -> str:
    """Which of a key's rows is kept: the earliest `first_wins_by` (on an exact tie, any one).

    Only that column is named, so a view that deduplicates reads no more columns than the query
    needs; breaking ties on every column made dirty reads twice as slow.
    """
    return f"{kind.first_wins_by} NULLS LAST"


def keep_first(kind: Kind, select: str, within_partition: bool = True) -> str:
    """`select` with one row per key (docs/storage.md: the earliest wins), per partition unless the
    rows are one partition's already (compaction)."""
    key = ", ".join(([layout.PARTITION] if within_partition else []) + list(kind.key))
    return (
        f"SELECT * FROM ({select}) QUALIFY row_number() OVER "
        f"(PARTITION BY {key} ORDER BY {first_wins_order(kind)}) = 1"
    )


def key_hash(kind: Kind) -> str:
    """One number per (partition, key) of the kind: equal keys hash alike."""
    return f"hash({', '.join([layout.PARTITION, *kind.key])})"


def repeated_hashes(kind: Kind, select: str) -> str:
    """The key hashes that occur more than once among the rows of `select` (usually few or
    none): one pass over the key columns only."""
    hashed = key_hash(kind)
    return f"SELECT {hashed} AS _key_hash FROM ({select}) GROUP BY _key_hash HAVING count(*) > 1"


def keep_first_repeated(kind: Kind, select: str, repeated: str) -> str:
    """`keep_first(kind, select)` (per partition) at the cost of the keys that can be duplicated.

    `repeated` is a relation of `repeated_hashes(kind, select)`. Rows with any other hash are
    unique and pass as stored; only the rows with a repeated hash go through `keep_first`. A hash
    shared by two different keys just sends a few more rows through the exact rule, so the
    result is `keep_first`'s. About twice a plain scan, where ranking every row costs five to
    eight times one.
    """
    hashed = key_hash(kind)
    unique = f"SELECT * FROM ({select}) WHERE {hashed} NOT IN (SELECT _key_hash FROM {repeated})"
    ranked = f"SELECT * FROM ({select}) WHERE {hashed} IN (SELECT _key_hash FROM {repeated})"
    return f"{unique} UNION ALL {keep_first(kind, ranked)}"


class Lake:
    """One read of each table's current files (by partition date, with row counts and clean
    marks, from the Delta log: no data file is opened) and a DuckDB connection on which views
    over chosen partitions are bound."""

    def __init__(
        self,
        data_dir: Path,
        kinds: Iterable[str] = VIEW_ORDER,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        import duckdb

        self.data_dir = Path(data_dir)
        self.files: dict[str, dict[str, list[str]]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.exists: dict[str, bool] = {}
        self.clean: dict[str, set[str]] = {}
        for kind in kinds:
            self._load(kind)
        self.con: duckdb.DuckDBPyConnection = con or duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")

    def _load(self, kind: str) -> None:
        from deltalake import DeltaTable

        root = layout.table_path(self.data_dir, kind)
        files: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        self.exists[kind] = DeltaTable.is_deltatable(str(root))
        if self.exists[kind]:
            actions = DeltaTable(str(root)).get_add_actions(flatten=True)  # arro3, not pyarrow
            rows = zip(
                actions.column("path").to_pylist(),
                actions.column(f"partition.{layout.PARTITION}").to_pylist(),
                actions.column("num_records").to_pylist(),
                strict=True,
            )
            for path, day, records in rows:
                files.setdefault(day, []).append(str(root / unquote(path)))  # the log encodes
                counts[day] = counts.get(day, 0) + int(records or 0)
        self.files[kind], self.counts[kind] = files, counts
        self.clean[kind] = layout.clean_dates_of(f for fs in files.values() for f in fs)

    def dates(self, kind: str) -> list[str]:
        """The kind's partition dates, oldest first."""
        return sorted(self.files[kind])

    def bind(
        self,
        kind: str,
        dates: Iterable[str] | Days | None = None,
        name: str = "",
        as_stored: bool = False,
        shared_repeats: bool = True,
    ) -> None:
        """Bind the view `name` (default: the kind's name) over the kind's partitions `dates` (a
        list, a span, or None: all), each key once per partition, user ids as stored.

        The keys that repeat in dirty partitions are found here, once for every query over the
        view (`<name>_repeated`), or with `shared_repeats=False` by each query: for views that may
        not be read at all (`connect` binds every kind for `trail sql`).

        With `as_stored`, also `<name>_stored`: the same partitions with every row as stored,
        duplicates too, for questions duplicates cannot change (which event names occur).
        """
        k = KINDS[kind]
        present = self.files[kind]
        if dates is None:
            wanted = sorted(present)
        elif isinstance(dates, Days):
            wanted = [d for d in sorted(present) if d in dates]
        else:
            wanted = sorted(set(dates) & set(present))
        name = name or kind
        clean = [f for d in wanted if d in self.clean[kind] for f in present[d]]
        dirty = [f for d in wanted if d not in self.clean[kind] for f in present[d]]
        with reading():  # binding reads the Parquet footers
            clean_rows = self._select(k, f"{name}_clean", clean) if clean else None
            dirty_rows = self._select(k, f"{name}_dirty", dirty) if dirty else None
        empty = tables.empty_select(k.table_columns)
        deduplicated = None
        if dirty_rows:
            repeated = f"{name}_repeated"
            if shared_repeats:  # found once here, for every query over the view
                with reading():
                    self.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE {repeated} AS "
                        f"{repeated_hashes(k, dirty_rows)}"
                    )
                deduplicated = keep_first_repeated(k, dirty_rows, repeated)
            else:  # found by each query that reads the view
                deduplicated = (
                    f"SELECT * FROM (WITH {repeated} AS MATERIALIZED "
                    f"({repeated_hashes(k, dirty_rows)}) "
                    f"{keep_first_repeated(k, dirty_rows, repeated)})"
                )
        first = [clean_rows, deduplicated]
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {_union(first, empty)}")
        if as_stored:
            stored = _union([clean_rows, dirty_rows], empty)
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_stored AS {stored}")

    def bind_empty(self, kind: str, name: str = "", as_stored: bool = False) -> None:
        """Bind the view `name` (default: the kind's name) as the kind's columns and no rows,
        without opening its log: for a kind the caller's queries do not read."""
        name = name or kind
        empty = tables.empty_select(KINDS[kind].table_columns)
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {empty}")
        if as_stored:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name}_stored AS {empty}")

    def bind_pages(self, dates: Iterable[str] | Days | None = None) -> None:
        """Bind `events` over the partitions `dates` with the derived `page` (view_events.sql)
        and user ids as stored: what a question about pages needs, without the identities."""
        self.bind("events", dates, name="raw_events")
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW first_identity AS {EMPTY_FIRST_IDENTITY}")
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW events AS {sql.load('view_events')}")

    def _select(self, k: Kind, name: str, paths: list[str]) -> str:
        """A SELECT of the kind's columns over `paths` (the list travels as a variable, never
        formatted into SQL); a column none of the files has yet reads as a typed null."""
        self.con.execute(f"SET VARIABLE {name}_files = $files", {"files": paths})
        source = (
            f"read_parquet(getvariable('{name}_files'), hive_partitioning = true, "
            f"hive_types = {{'{layout.PARTITION}': 'VARCHAR'}}, union_by_name = true)"
        )
        columns = tables.select_columns(self.con, k.table_columns, f"SELECT * FROM {source}")
        return f"SELECT {columns} FROM {source}"

    def fetch(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of the named query in `queries/` as dicts."""
        return self.fetch_sql(sql.load(query), params)

    def fetch_tuples(self, query: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of the named query as tuples: for long results, where a dict per row costs."""
        return self._fetch(sql.load(query), params)[1]

    def fetch_sql(self, text: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a statement as dicts; unreadable Parquet becomes a CorruptDataError."""
        names, rows = self._fetch(text, params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _fetch(self, text: str, params: dict[str, Any] | None) -> tuple[list[str], list[Any]]:
        """Column names and rows of a SELECT. Top-level instants (TIMESTAMPTZ) travel as epoch
        microseconds and become UTC datetimes here: DuckDB's own conversion of such a value costs
        about three times as much, and a `trail online` answer holds tens of thousands."""
        import duckdb

        try:
            with reading():
                relation = self.con.sql(text, params=params or {})
                names = list(relation.columns)
                instants = [i for i, t in enumerate(relation.types) if str(t) == INSTANT]
                if instants:
                    relation = relation.project(
                        ", ".join(_as_epoch(n, i in instants) for i, n in enumerate(names))
                    )
                rows = relation.fetchall()
        except (duckdb.IOException, duckdb.InvalidInputException) as exc:
            raise CorruptDataError(
                f"Cannot read the tables: {str(exc).splitlines()[0]}",
                "restore the file it names from a backup; the table's other files are intact",
            ) from exc
        if instants:
            rows = [_with_instants(row, instants) for row in rows]
        return names, rows


def _union(selects: list[str | None], empty: str) -> str:
    """The given SELECTs (None: none) as one, or `empty` when there are none."""
    present = [s for s in selects if s]
    return " UNION ALL ".join(present) if present else empty


def _as_epoch(name: str, instant: bool) -> str:
    quoted = '"' + name.replace('"', '""') + '"'
    return f"epoch_us({quoted}) AS {quoted}" if instant else quoted


def _with_instants(row: tuple[Any, ...], instants: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in instants:
        if values[i] is not None:
            values[i] = EPOCH + timedelta(microseconds=values[i])
    return tuple(values)


def connect(
    data_dir: Path,
    need: Iterable[str] = ("visits", "events", "presence", "identities"),
    con: duckdb.DuckDBPyConnection | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    dates: Mapping[str, Days] | None = None,
    read: Iterable[str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with every view bound.

    Raises NoDataError (store/coverage.py) when none of the `need` tables exists, or, for a range
    `[start, end)`, when none of them has a partition overlapping it. `dates` bounds the
    partitions read of the kinds it names (the others are read whole): a report whose range
    filters a kind on its partitioning time column reads only those days. `read` names the kinds
    the caller's queries read (None: all); the others are bound as empty views and their logs
    and files are never opened, which is most of a short report's fixed cost.
    """
    needed = list(need)
    reads = VIEW_ORDER if read is None else tuple(k for k in VIEW_ORDER if k in {*read, *needed})
    lake = Lake(data_dir, kinds=reads, con=con)
    if needed:
        days = {k: set(lake.files[k]) if lake.exists[k] else None for k in needed}
        coverage.require(lake.data_dir, days, start, end)
    for kind in VIEW_ORDER:
        if kind in reads:
            lake.bind(
                kind,
                (dates or {}).get(kind),
                name=f"raw_{kind}",
                as_stored=True,
                shared_repeats=read is not None,
            )
        else:
            lake.bind_empty(kind, name=f"raw_{kind}", as_stored=True)
    bind = lake.con.execute
    bind("CREATE OR REPLACE TEMP VIEW identities AS SELECT * FROM raw_identities")
    bind(f"CREATE OR REPLACE TEMP VIEW first_identity AS {sql.load('view_first_identity')}")
    for name in ("visits", "events", "presence"):
        bind(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql.load('view_' + name)}")
    _bind_sessions(lake.con)
    return lake.con


def _bind_sessions(con: duckdb.DuckDBPyConnection) -> None:
    """The `session_events` and `sessions` views (trailcli/reports/sessions.py sets the timeout)."""
    con.execute("SET VARIABLE session_timeout = $timeout", {"timeout": SESSION_TIMEOUT})
    for name in ("session_events", "sessions"):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql.load(name)}")


def daily_rows(
    data_dir: Path, first: str | None = None, last: str | None = None
) -> list[dict[str, Any]]:
    """The rows of the `daily` table (figures kept for purged days, store/retention.py) dated
    from `first` to `last` (None: unbounded), by date; [] when the table is missing."""
    import duckdb

    paths = tables.file_list(data_dir, "daily")
    if not paths:
        return []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        with reading():
            result = con.execute(
                sql.load("daily_rows"), {"paths": paths, "first": first, "last": last}
            )
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    finally:
        con.close()


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
