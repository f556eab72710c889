"""`trail sql`: run a query over the views."""

from __future__ import annotations

from typing import Annotated

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, DataDir, FormatOpt, Tz, cli_errors, emit
from trailcli.render import Format


def sql(
    query: Annotated[
        str, typer.Argument(help="A SELECT over visits, events, presence, identities, sessions.")
    ],
    *,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: FormatOpt = Format.table,
    tz: Tz = "UTC",
) -> None:
    """Run SQL over the views (visits, events, presence, identities, sessions)."""
    with cli_errors():
        from trailcli.reports.sqlquery import run_sql

        emit(run_sql(data_dir, query), fmt, tz)
