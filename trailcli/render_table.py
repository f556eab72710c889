"""The `table` output format: values for people, cells measured and fitted with rich.

Only the table format reads like this; csv, json and ndjson keep exact machine values. Cells are
formatted by what they hold and, for numbers, by the column's name:

- times to the second in `--tz`, with the UTC offset (`2026-03-01 14:00:05+01`);
- columns named `share`, `conv_*` or `*_rate` (ratios 0-1) as percentages (`23.2 %`);
- columns named `*_seconds` and time spans as durations (`8h 13m`, `1m 22s`, `4.5s`);
- other whole numbers with thousands separators (`12,345`), except ids, sequence numbers, years
  and sizes in pixels;
- nested values as compact JSON; text columns (never numbers, times or bars) are shortened
  with an ellipsis, widest first, so a row fits the terminal.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

UTC = ZoneInfo("UTC")
NO_ROWS = "(no rows)"
SEPARATOR = "  "
RULE = "─"
FALLBACK_WIDTH = 120  # when the output is not a terminal and COLUMNS is not set
MIN_SHORTENED = 12  # a shortened column keeps at least this many characters
_RATE = re.compile(r"^(share|conv_.+|.+_rate)$")
_DURATION = re.compile(r"^.+_seconds$")
_NOT_A_COUNT = re.compile(r"^(seq|year|port|step|rank|.+_id|.+_width|.+_height|.+_token)$")
_DRAWING = frozenset({"bar", "sparkline"})  # charts keep their length


def terminal_width() -> int:
    """The width to fit tables to: the terminal's, else COLUMNS, else FALLBACK_WIDTH."""
    return shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns


def format_duration(seconds: float) -> str:
    """`2d 4h`, `8h 13m`, `1m 22s`, `42s`, `4.5s`: the two largest units, rounded down."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_time(value: datetime, tz: ZoneInfo) -> str:
    """A time to the second in `tz` with its UTC offset: `2026-03-01 14:00:05+01`."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    local = aware.astimezone(tz)
    offset = local.strftime("%z")  # +0100
    short = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    return local.strftime("%Y-%m-%d %H:%M:%S") + short


def format_cell(name: str, value: Any, tz: ZoneInfo) -> str:
    """The text of one table cell of column `name`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_time(value, tz)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value.total_seconds())
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (int, float)):
        return _format_number(name, value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return " ".join(str(value).splitlines())  # one line per row


def _format_number(name: str, value: float) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return ""
    if _RATE.match(name):
        return f"{100 * value:.1f} %"
    if _DURATION.match(name):
        return format_duration(value)
    if isinstance(value, int):
        return str(value) if _NOT_A_COUNT.match(name) else f"{value:,}"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal, timedelta)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Layout:
    """Column widths and alignment for a table: `widths[i]` is the most characters column i
    shows (longer cells end in an ellipsis), `right[i]` whether it is aligned right."""

    names: tuple[str, ...]
    widths: tuple[int, ...]
    right: tuple[bool, ...]


def fit_layout(
    names: Sequence[str],
    cells: Sequence[Sequence[str]],
    raw: Sequence[Mapping[str, Any]],
    width: int,
) -> Layout:
    """Natural widths, with the text columns (never numbers or times) shortened, widest first,
    until a row fits `width` or each is down to MIN_SHORTENED characters."""
    from rich.cells import cell_len

    natural = [
        max([cell_len(n)] + [cell_len(row[i]) for row in cells]) for i, n in enumerate(names)
    ]
    right = [
        any(r.get(n) is not None for r in raw)
        and all(r.get(n) is None or _is_number(r.get(n)) for r in raw)
        for n in names
    ]
    shortenable = [
        not right[i]
        and n not in _DRAWING
        and all(not isinstance(r.get(n), (datetime, date)) for r in raw)
        for i, n in enumerate(names)
    ]
    fixed = sum(w for w, s in zip(natural, shortenable, strict=True) if not s)
    room = width - fixed - 2 * (len(names) - 1)
    flexible = sorted(w for w, s in zip(natural, shortenable, strict=True) if s)
    cap = _water_level(flexible, room)
    widths = [
        w if not s or cap is None else min(w, max(cap, MIN_SHORTENED, len(names[i])))
        for i, (w, s) in enumerate(zip(natural, shortenable, strict=True))
    ]
    return Layout(tuple(names), tuple(widths), tuple(right))


def _water_level(widths: list[int], room: int) -> int | None:
    """The largest cap such that the sorted `widths`, each capped, fit in `room` (None when they
    fit uncapped)."""
    if sum(widths) <= room:
        return None
    for k, w in enumerate(widths):
        left = len(widths) - k
        cap = (room - sum(widths[:k])) // left
        if cap < w:
            return max(cap, 1)
    return None


def _fit(text: str, width: int, right: bool) -> str:
    """`text` in exactly `width` terminal cells: cut with `…` when longer, padded when shorter
    (on the left when `right`). rich measures the cells, so wide characters count double."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        text = set_cell_size(text, max(0, width - 1)) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def draw(layout: Layout, cells: Sequence[Sequence[str]], header: bool = True) -> str:
    """The table's lines (header and rule unless `header` is false), trailing spaces removed.

    rich's Table would lay out the same lines at about a millisecond a row; the layout is
    already decided here, so each row is only fitted cell by cell."""
    columns = list(zip(layout.widths, layout.right, strict=True))
    lines = []
    if header:
        names = (_fit(n, w, r) for n, (w, r) in zip(layout.names, columns, strict=True))
        lines.append(SEPARATOR.join(names))
        lines.append(RULE * (sum(layout.widths) + len(SEPARATOR) * (len(columns) - 1)))
    for row in cells:
        lines.append(SEPARATOR.join(_fit(c, w, r) for c, (w, r) in zip(row, columns, strict=True)))
    return "".join(line.rstrip() + "\n" for line in lines)


def write_table(
    names: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    out: IO[str],
    tz: ZoneInfo = UTC,
    width: int | None = None,
) -> None:
    """Write `rows` as one aligned table fitted to the terminal; `(no rows)` below the header
    when there are none."""
    if not names:
        out.write(NO_ROWS + "\n")
        return
    cells = [[format_cell(n, row.get(n), tz) for n in names] for row in rows]
    layout = fit_layout(names, cells, rows, width or terminal_width())
    out.write(draw(layout, cells))
    if not cells:
        out.write(NO_ROWS + "\n")


class TableStream:
    """Rows written one at a time in one fixed layout: the header once, then one line per row.

    `widths` gives the width of some columns; the others take the rest of the terminal width
    (text) or the width of their header (numbers, at least 8). Live rows therefore line up with
    the stored rows printed before them.
    """

    def __init__(
        self,
        names: Sequence[str],
        out: IO[str],
        tz: ZoneInfo = UTC,
        widths: Mapping[str, int] | None = None,
        right: Sequence[str] = (),
        width: int | None = None,
    ) -> None:
        self.out, self.tz = out, tz
        given = dict(widths or {})
        free = [n for n in names if n not in given]
        used = sum(given.values()) + 2 * (len(names) - 1)
        share = max(MIN_SHORTENED, ((width or terminal_width()) - used) // max(1, len(free)))
        self.layout = Layout(
            tuple(names),
            tuple(given.get(n, max(share, len(n))) for n in names),
            tuple(n in right for n in names),
        )
        self.started = False

    def write(self, row: Mapping[str, Any]) -> None:
        cells = [[format_cell(n, row.get(n), self.tz) for n in self.layout.names]]
        self.out.write(draw(self.layout, cells, header=not self.started))
        self.out.flush()
        self.started = True
