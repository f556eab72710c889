"""`trail wal check`: what the write-ahead log holds, read without starting the collector."""

from __future__ import annotations

from typing import Annotated

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, DataDir, FormatOpt, cli_errors, emit
from trailcli.render import Format

wal_app = typer.Typer(help="The collector's write-ahead log.", no_args_is_help=True)


@wal_app.command("check")
def check(
    *,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    node_id: Annotated[
        str | None, typer.Option("--node-id", help="Only this node's WAL (default: every node).")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Check every WAL segment: intact frames, torn tails, damaged ranges (exit 1 on damage)."""
    with cli_errors():
        from trailcli.store.wal_scan import CHECK_COLUMNS, check_wal, damage_error

        rows = check_wal(data_dir, node_id)
        emit(rows, fmt, columns=CHECK_COLUMNS)
        problem = damage_error(rows)
        if problem is not None:
            raise problem
