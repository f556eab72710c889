"""Date-bounded reading of the log tables for presence queries: only the partitions asked for."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailcli import sql
from trailcli.errors import CorruptDataError
from trailcli.store import layout, maintenance, tables
from trailcli.store.schema import KINDS, Kind

if TYPE_CHECKING:
    import duckdb

EMPTY_FIRST_IDENTITY = (
    "SELECT NULL::VARCHAR AS visit_token, NULL::VARCHAR AS user_id, "
    "NULL::TIMESTAMPTZ AS bound_at WHERE false"
)


class Lake:
    """The current files of each table by partition date, and a DuckDB connection over chosen dates."""

    def __init__(self, data_dir: Path) -> None:
        import duckdb

        self.data_dir = Path(data_dir)
        self.files: dict[str, dict[str, list[str]]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.exists: dict[str, bool] = {}
        self.clean: dict[str, set[str]] = {}
        for kind in ("presence", "events", "identities", "visits"):
            self._load(kind)
        self.con: duckdb.DuckDBPyConnection = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")

    def _load(self, kind: str) -> None:
        """File list and row count per date from the Delta log (no data file is opened)."""
        from deltalake import DeltaTable

        root = layout.table_path(self.data_dir, kind)
        files: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        self.exists[kind] = DeltaTable.is_deltatable(str(root))
        if self.exists[kind]:
            actions = DeltaTable(str(root)).get_add_actions(flatten=True)  # arro3, not pyarrow
            rows = zip(
                actions.column("path").to_pylist(),
                actions.column("partition.date").to_pylist(),
                actions.column("num_records").to_pylist(),
                strict=True,
            )
            for path, date, records in rows:
                files.setdefault(date, []).append(str(root / path))
                counts[date] = counts.get(date, 0) + int(records or 0)
        self.files[kind], self.counts[kind] = files, counts
        self.clean[kind] = maintenance.clean_dates_of(f for fs in files.values() for f in fs)

    def dates(self, kind: str) -> list[str]:
        return sorted(self.files[kind])

    def bind(self, kind: str, dates: Iterable[str] | None = None) -> None:
        """Bind the view `kind` over the partitions `dates` (all when None), duplicates removed.

        The events view adds the derived `page` column; user ids are left as stored.
        """
        k = KINDS[kind]
        wanted = self.dates(kind) if dates is None else sorted(set(dates) & set(self.files[kind]))
        name = "raw_events" if kind == "events" else kind
        clean = [f for d in wanted if d in self.clean[kind] for f in self.files[kind][d]]
        dirty = [f for d in wanted if d not in self.clean[kind] for f in self.files[kind][d]]
        parts = [self._relation(k, f"{name}_clean", clean, dedup=False)]
        if dirty or not clean:
            parts.append(self._relation(k, f"{name}_dirty", dirty, dedup=True))
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {' UNION ALL '.join(parts)}")
        if kind == "events":
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW first_identity AS {EMPTY_FIRST_IDENTITY}"
            )
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW events AS {sql.load('view_events')}")

    def _relation(self, k: Kind, name: str, paths: list[str], dedup: bool) -> str:
        """A SELECT over `paths` (the list travels as a variable), duplicates removed if asked."""
        if not paths:
            return tables.empty_select(k.table_columns)
        self.con.execute(f"SET VARIABLE {name}_files = $files", {"files": paths})
        source = (
            f"read_parquet(getvariable('{name}_files'), hive_partitioning = true, "
            "hive_types = {'date': 'VARCHAR'}, union_by_name = true)"
        )
        columns = tables.select_columns(self.con, k.table_columns, f"SELECT * FROM {source}")
        if not dedup:
            return f"SELECT {columns} FROM {source}"
        keys = ", ".join(k.key)
        return (
            f"SELECT {columns} FROM {source} QUALIFY row_number() OVER "
            f"(PARTITION BY date, {keys} ORDER BY {k.first_wins_by} NULLS LAST) = 1"
        )

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
            relation = self.con.sql(text, params=params or {})
            names = list(relation.columns)
            instants = [i for i, t in enumerate(relation.types) if str(t) == INSTANT]
            if instants:
                relation = relation.project(
                    ", ".join(_as_epoch(n, i in instants) for i, n in enumerate(names))
                )
            rows = relation.fetchall()
        except (duckdb.IOException, duckdb.InvalidInputException) as exc:
            raise _corrupt(exc) from exc
        if instants:
            rows = [_with_instants(row, instants) for row in rows]
        return names, rows


INSTANT = "TIMESTAMP WITH TIME ZONE"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _as_epoch(name: str, instant: bool) -> str:
    quoted = '"' + name.replace('"', '""') + '"'
    return f"epoch_us({quoted}) AS {quoted}" if instant else quoted


def _with_instants(row: tuple[Any, ...], instants: list[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in instants:
        if values[i] is not None:
            values[i] = EPOCH + timedelta(microseconds=values[i])
    return tuple(values)


def _corrupt(exc: Exception) -> CorruptDataError:
    return CorruptDataError(
        f"Cannot read the presence log: {str(exc).splitlines()[0]}",
        "restore the named file from a backup or remove it with 'trail repair'",
    )
