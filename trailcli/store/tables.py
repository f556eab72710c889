"""Delta Lake tables of Parquet: turning records into Arrow batches, bulk writes, file lists.

pyarrow is imported only by the functions that build or write Arrow tables: reading goes
through DuckDB and needs none of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from trailcli.store import layout
from trailcli.store.schema import FLOAT64, INT32, INT64, KINDS, TS, Column, Kind

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

ZSTD_PARQUET = {"compression": "ZSTD"}

# Arrow's JSON reader parses in blocks of this size, in parallel; a record must fit in one
NDJSON_BLOCK_BYTES = 4 << 20

# A collector commits every few seconds: checkpoint often and drop log entries after two days so
# loading a table reads one checkpoint plus a few JSON commits, however long the collector runs.
TABLE_CONFIG = {
    "delta.checkpointInterval": "50",
    "delta.logRetentionDuration": "interval 2 days",
    "delta.enableExpiredLogCleanup": "true",
}


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return value


def _check_json(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    json.dumps(value, ensure_ascii=False)  # raises on what JSON cannot hold
    return True


def _check_time(value: Any) -> bool:
    if value is None or isinstance(value, datetime):
        return True
    if isinstance(value, str):
        datetime.fromisoformat(value)
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        datetime.fromtimestamp(value, tz=UTC)
        return True
    return False


def _int_checker(bits: int) -> Any:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)
    return lambda v: (
        v is None or (isinstance(v, int) and not isinstance(v, bool) and low <= v < high)
    )


def _checker(column: Column) -> Any:
    if column.name in ("properties", "extra"):
        return _check_json
    if column.type == TS:
        return _check_time
    if column.type == INT32:
        return _int_checker(32)
    if column.type == INT64:
        return _int_checker(64)
    if column.type == FLOAT64:
        return lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    return lambda v: v is None or isinstance(v, str)


def _plain_type(column: Column) -> type:
    """The type whose values a column always takes as they are (checked with `type(v) is`)."""
    if column.type == TS:
        return datetime
    if column.type in (INT32, INT64, FLOAT64):
        return type(None)  # numbers are range-checked
    return str


_CHECKERS = {
    name: [(c.name, _checker(c), _plain_type(c)) for c in kind.columns]
    for name, kind in KINDS.items()
}


def check_records(kind: str, records: Iterable[Any]) -> None:
    """Raise ValueError naming the first record and column `to_arrow` could not store.

    Stricter than `to_arrow` where they differ, and far cheaper per record than converting.
    """
    checkers = _CHECKERS[kind]
    time_column = KINDS[kind].time_column
    for n, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"record {n} is a {type(record).__name__}, not an object")
        if record.get(time_column) is None:
            raise ValueError(f"record {n}: {time_column} is required (it decides the partition)")
        for column, ok, plain in checkers:
            value = record.get(column)
            if value is None or type(value) is plain:  # the usual case, without a call
                continue
            try:
                good = ok(value)
            except (ValueError, TypeError, OverflowError, OSError):
                good = False
            if not good:
                raise ValueError(
                    f"record {n}: {column} cannot be {value!r} ({type(value).__name__})"
                )


def to_arrow(kind: Kind | str, records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Records (dicts) as an Arrow table of the kind's stored schema, `date` partition included.

    Missing columns are null; JSON columns (`properties`, `extra`) accept objects; times accept
    datetimes, ISO-8601 strings or epoch seconds.
    """
    k = KINDS[kind] if isinstance(kind, str) else kind
    rows = list(records)
    try:
        table = _from_text_times(k, rows)
    except (ValueError, TypeError):  # pyarrow's ArrowInvalid and ArrowTypeError among them
        table = _value_by_value(k, rows)
    return with_date(k, table)


def from_ndjson(kind: Kind | str, data: bytes) -> pa.Table:
    """Newline-delimited JSON records (the WAL's) as an Arrow table of the kind's stored schema,
    `date` included, parsed by Arrow's JSON reader without a Python object per record.

    Raises (pyarrow's ArrowInvalid) on anything that reader does not take as the column's type:
    times that are not ISO-8601 text, objects in JSON columns, a lone surrogate, a record larger
    than a block; `to_arrow` converts those.
    """
    import pyarrow as pa
    import pyarrow.json as pa_json

    k = KINDS[kind] if isinstance(kind, str) else kind
    table = pa_json.read_json(
        pa.BufferReader(data),
        read_options=pa_json.ReadOptions(block_size=NDJSON_BLOCK_BYTES),
        parse_options=pa_json.ParseOptions(
            explicit_schema=k.schema, unexpected_field_behavior="ignore"
        ),
    )
    return with_date(k, table.select(k.schema.names).cast(k.schema))


def _from_text_times(k: Kind, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The usual case, the WAL's records: JSON columns already text, times as ISO-8601 text with
    their offset. Arrow converts whole columns (about 2x faster than value by value, and less
    time holding the GIL while the collector serves); anything else raises, for
    `_value_by_value` to convert the way it always has."""
    import pyarrow as pa

    as_text = pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) else f for f in k.schema]
    )
    table = pa.Table.from_pylist(rows, schema=as_text)
    columns = [
        table.column(i).cast(f.type) if pa.types.is_timestamp(f.type) else table.column(i)
        for i, f in enumerate(k.schema)
    ]
    return pa.Table.from_arrays(columns, schema=k.schema)


def _value_by_value(k: Kind, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {}
    for field in k.schema:
        values = [r.get(field.name) for r in rows]
        if field.name in ("properties", "extra"):
            values = [_json_text(v) for v in values]
        elif pa.types.is_timestamp(field.type):
            values = [_timestamp(v) for v in values]
        columns[field.name] = values
    return pa.table(columns, schema=k.schema)


def with_date(kind: Kind, table: pa.Table) -> pa.Table:
    """Add (or replace) the `date` partition column: the UTC date of the kind's time column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "date" in table.column_names:
        table = table.drop_columns(["date"])
    times = table.column(kind.time_column)
    # timestamps are UTC-zoned: their date, as YYYY-MM-DD text (a cast, ~5x faster than strftime)
    dates = pc.cast(pc.cast(times, pa.date32()), pa.string())
    return table.append_column(pa.field("date", pa.string()), dates)


def bulk_write(
    data_dir: Path,
    kind: str,
    table: pa.Table,
    target_file_size: int | None = None,
) -> None:
    """Append an Arrow table to the kind's Delta table, skipping the WAL (sample generator, compaction)."""
    from deltalake import WriterProperties, write_deltalake

    k = KINDS[kind]
    table = table.select([f.name for f in k.table_schema]).cast(k.table_schema)
    write_deltalake(
        str(layout.table_path(data_dir, kind)),
        table,
        partition_by=["date"],
        mode="append",
        schema_mode="merge",  # tables written before a column was added gain it
        target_file_size=target_file_size,
        writer_properties=WriterProperties(compression="ZSTD"),
        configuration=None if table_exists(data_dir, kind) else TABLE_CONFIG,
    )


def ensure_config(data_dir: Path, kind: str) -> bool:
    """Give an existing table TABLE_CONFIG (tables made by older versions lack it); True when
    that took a commit."""
    from deltalake import DeltaTable

    path = str(layout.table_path(data_dir, kind))
    if not DeltaTable.is_deltatable(path):
        return False
    table = DeltaTable(path)
    current = table.metadata().configuration
    if all(current.get(k) == v for k, v in TABLE_CONFIG.items()):
        return False
    table.alter.set_table_properties(dict(TABLE_CONFIG), raise_if_not_exists=False)
    return True


def append_once(data_dir: Path, kind: str, table: pa.Table, app_id: str, version: int) -> bool:
    """Append `table` as the application transaction (`app_id`, `version`), at most once.

    The table's recorded version for `app_id` is read on the same loaded snapshot the commit
    builds on; when it is already `version` or later nothing is written and False is returned.
    """
    from deltalake import (
        CommitProperties,
        DeltaTable,
        Transaction,
        WriterProperties,
        write_deltalake,
    )

    k = KINDS[kind]
    path = str(layout.table_path(data_dir, kind))
    target: DeltaTable | str = path
    if DeltaTable.is_deltatable(path):
        target = DeltaTable(path)
        done = target.transaction_version(app_id)
        if done is not None and done >= version:
            return False
    write_deltalake(
        target,
        table.select([f.name for f in k.table_schema]).cast(k.table_schema),
        partition_by=["date"],
        mode="append",
        schema_mode="merge",
        writer_properties=WriterProperties(compression="ZSTD"),
        configuration=TABLE_CONFIG if isinstance(target, str) else None,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(app_id=app_id, version=version)]
        ),
    )
    return True


def transaction_version(data_dir: Path, kind: str, app_id: str) -> int | None:
    """The last application-transaction version `app_id` committed to the kind's table."""
    from deltalake import DeltaTable

    path = str(layout.table_path(data_dir, kind))
    if not DeltaTable.is_deltatable(path):
        return None
    return DeltaTable(path).transaction_version(app_id)


def table_exists(data_dir: Path, kind: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(str(layout.table_path(data_dir, kind)))


def file_list(data_dir: Path, kind: str) -> list[str]:
    """The current files of the kind's table as local paths ([] when the table is missing)."""
    from deltalake import DeltaTable

    path = str(layout.table_path(data_dir, kind))
    if not DeltaTable.is_deltatable(path):
        return []
    # file_uris() percent-encodes (a space is %20); DuckDB wants the plain local path
    return [unquote(uri.removeprefix("file://")) for uri in DeltaTable(path).file_uris()]


def select_columns(con: duckdb.DuckDBPyConnection, columns: Iterable[Column], source: str) -> str:
    """A SELECT list of `columns` over the relation `source` (SQL text): a column none of its
    files has yet (files written before the column was added) reads as a typed null."""
    present = {d[0] for d in con.execute(f"SELECT * FROM ({source}) LIMIT 0").description}
    return ", ".join(
        c.name if c.name in present else f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in columns
    )


def empty_select(columns: Iterable[Column]) -> str:
    """A SELECT of no rows with `columns`, typed: how a missing table or partition reads."""
    typed = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in columns)
    return f"SELECT {typed} WHERE false"
