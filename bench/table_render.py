"""The table output format beside rich's own Table renderer drawing the same layout.

Rows like a replay's (a time, a name, a count, a ratio, a JSON detail) are formatted once; then
each round draws them with trailcli.render_table.draw and with a rich Table of the same column
widths, alternating, and prints the times and their ratio.
Run: python bench/table_render.py [--rows 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from datetime import UTC, datetime, timedelta

from trailcli.render_table import Layout, draw, fit_layout, format_cell


def rows(n: int) -> list[dict]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        {
            "time": start + timedelta(seconds=i),
            "name": f"page-{i % 100}",
            "views": i * 3,
            "share": i / n,
            "detail": {"a": i, "b": "x" * (i % 50)},
        }
        for i in range(n)
    ]


def rich_table(layout: Layout, cells: list[list[str]]) -> str:
    """The baseline: rich's Table with the same widths, alignment and ellipsis."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for name, width, right in zip(layout.names, layout.widths, layout.right, strict=True):
        table.add_column(
            name,
            justify="right" if right else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=width,
            max_width=width,
        )
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    out = io.StringIO()
    width = sum(layout.widths) + 2 * len(layout.widths)
    Console(file=out, width=width, color_system=None, highlight=False, markup=False).print(table)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.rows)
    names = list(data[0])
    tz = UTC
    cells = [[format_cell(n, r[n], tz) for n in names] for r in data]  # type: ignore[arg-type]
    layout = fit_layout(names, cells, data, 120)
    ours, theirs = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        draw(layout, cells)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        rich_table(layout, cells)
        theirs.append(time.perf_counter() - started)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.rows:,} rows: draw {a:.3f} s, rich Table {b:.3f} s, ratio {b / a:.1f}x")


if __name__ == "__main__":
    main()
