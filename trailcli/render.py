"""Write a result frame to a stream as a table, CSV, JSON or NDJSON (docs/cli.md)."""

from __future__ import annotations

import csv
import enum
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

UTC = ZoneInfo("UTC")


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"


_AS_IS = frozenset((str, int, bool, type(None)))


def _plain(value: Any, tz: ZoneInfo) -> Any:
    """Turn one cell into a JSON-compatible value; times become ISO-8601 in `tz`."""
    if type(value) in _AS_IS:  # most cells: no conversion
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(tz).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):  # DuckDB's sum() of integers
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v, tz) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, tz) for v in value]
    return value


def _cell_text(value: Any) -> str:
    """Text for CSV cells: nested values JSON-encoded, null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e15 else f"{value:.1f}"
    return str(value)


def frame_rows(frame: Any) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Column names and row dicts of a Polars DataFrame, an Arrow table or a list of dicts."""
    if isinstance(frame, list):
        columns = list(frame[0].keys()) if frame else []
        return columns, iter(frame)
    if hasattr(frame, "iter_rows"):  # polars
        return list(frame.columns), frame.iter_rows(named=True)
    if hasattr(frame, "to_pylist"):  # pyarrow
        return list(frame.column_names), iter(frame.to_pylist())
    raise TypeError(f"cannot render {type(frame).__name__}")


def render(
    frame: Any,
    fmt: Format | str,
    out: IO[str],
    tz: ZoneInfo = UTC,
    columns: Sequence[str] | None = None,
) -> None:
    """Write `frame` to `out` in `fmt`. Data only: nothing else is written to `out`."""
    names, rows = frame_rows(frame)
    if columns is not None:
        names = list(columns)
    if Format(fmt) is Format.table:
        from trailcli.render_table import write_table  # rich: only when a table is drawn

        write_table(names, [{k: row.get(k) for k in names} for row in rows], out, tz)
        return
    plain_rows = ({k: _plain(row.get(k), tz) for k in names} for row in rows)
    writer = {
        Format.csv: _write_csv,
        Format.json: _write_json,
        Format.ndjson: _write_ndjson,
    }[Format(fmt)]
    writer(names, plain_rows, out)


def _write_json(names: list[str], rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    out.write("[")
    wrote = False
    for row in rows:
        out.write(",\n" if wrote else "\n")
        out.write(json.dumps(row, ensure_ascii=False))
        wrote = True
    out.write("\n]\n" if wrote else "]\n")


def _write_ndjson(names: list[str], rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False))
        out.write("\n")


def _write_csv(names: list[str], rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell_text(row[k]) for k in names])


BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """A one-line chart of `values` for table output."""
    numbers = [v for v in values if v is not None]
    if not numbers:
        return ""
    top = max(numbers) or 1
    return "".join(" " if v is None else BLOCKS[min(8, round(8 * v / top))] for v in values)


def bar(value: float, top: float, width: int = 30) -> str:
    """A horizontal bar proportional to value/top for table output."""
    if not top or value is None:
        return ""
    return "█" * max(0, round(width * value / top))
