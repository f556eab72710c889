"""`trail purge`: delete the whole days older than a limit (retention), optionally keeping their
daily figures."""

from __future__ import annotations

from typing import Annotated

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    FormatOpt,
    cli_errors,
    emit,
    warn,
)
from trailcli.render import Format


def purge(
    *,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete the UTC days that ended this long ago or earlier: e.g. 400d, 8w.",
        ),
    ],
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="Only this log kind: visits, events, presence or identities (repeatable).",
        ),
    ] = None,
    keep_daily: Annotated[
        bool,
        typer.Option(
            "--keep-daily",
            help="First keep each day's figures (visitors, page views, peak online) in the "
            "daily table, for 'online timeline --every 1d' and 'report pages/referrers --by day'.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be deleted.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: FormatOpt = Format.table,
) -> None:
    """Delete whole days older than a limit from the tables, files included."""
    with cli_errors():
        from trailcli.retention.purge import purge as run_purge
        from trailcli.timeparse import parse_duration

        summary = run_purge(
            data_dir,
            parse_duration(older_than),
            kinds=kind or None,
            keep_daily=keep_daily,
            dry_run=dry_run,
            progress=warn,
        )
        emit(summary.rows(), fmt)
        warn(summary.line())
