"""The raw batches every source returns: Arrow tables of Ahoy's columns, in one layout."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from trailcli.importer.ahoy_schema import VISIT_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

# a visits batch: every expected visit column (null where the table lacks it), then the others
VISIT_RAW = tuple(c.name for c in VISIT_COLUMNS)
# an events batch: the event's columns with its visit's tokens (null when the visit is missing)
EVENT_RAW = ("id", "visit_token", "visitor_token", "user_id", "name", "properties", "time")
TIMES = frozenset(("started_at", "time"))
INTEGERS = frozenset(("id", "screen_width", "screen_height"))
FLOATS = frozenset(("latitude", "longitude"))


def arrow_type(name: str, naive: bool = False) -> pa.DataType:
    """The Arrow type of a raw column: times in UTC (`naive`: as parsed, before `as_utc`),
    ids and screen sizes int64, coordinates float64, anything else text."""
    import pyarrow as pa

    if name in TIMES:
        return pa.timestamp("us") if naive else pa.timestamp("us", tz="UTC")
    if name in INTEGERS:
        return pa.int64()
    if name in FLOATS:
        return pa.float64()
    return pa.string()


def as_utc(table: pa.Table) -> pa.Table:
    """The time columns of a batch parsed without a zone, marked UTC (Rails writes UTC)."""
    for name in TIMES.intersection(table.column_names):
        i = table.column_names.index(name)
        table = table.set_column(i, name, table.column(i).cast(arrow_type(name)))
    return table


def from_rows(names: Sequence[str], rows: Iterable[Sequence[Any]]) -> pa.Table:
    """A raw batch from row tuples (values already in their column's Python type)."""
    import pyarrow as pa

    columns: list[list[Any]] = [[] for _ in names]
    for row in rows:
        for values, value in zip(columns, row, strict=True):
            values.append(value)
    return pa.table(
        {n: pa.array(v, type=arrow_type(n)) for n, v in zip(names, columns, strict=True)}
    )
