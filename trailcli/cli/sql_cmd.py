"""`trail sql`: run one or more statements over the views."""

from __future__ import annotations

from typing import Annotated

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, DataDir, FormatOpt, Tz, cli_errors, emit
from trailcli.render import Format


def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="SQL over visits, events, presence, identities and sessions; several "
            "statements separated by ';' run in order and each result prints in turn."
        ),
    ],
    *,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: FormatOpt = Format.table,
    tz: Tz = "UTC",
) -> None:
    """Run SQL over the views (visits, events, presence, identities, sessions)."""
    with cli_errors():
        import sys

        from trailcli.reports.sqlquery import run_sql

        results = run_sql(data_dir, query)
        if not results:
            emit([], fmt, tz)  # nothing returned rows: an empty result
        for i, result in enumerate(results):
            if i and fmt in (Format.table, Format.csv):
                sys.stdout.write("\n")  # a blank line between results
            emit(result, fmt, tz)
