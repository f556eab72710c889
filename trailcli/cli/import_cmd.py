"""`trail import ahoy`: bring an Ahoy database's history into trail's tables."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, DataDir, FormatOpt, Tz, cli_errors, emit, warn
from trailcli.render import Format
from trailcli.timeparse import TIME_FORMS

import_app = typer.Typer(help="Import history kept by other tools.", no_args_is_help=True)


@import_app.command("ahoy")
def ahoy(
    *,
    database: Annotated[
        str,
        typer.Option(
            "--database",
            envvar="DATABASE_URL",
            metavar="URL",
            help="The Ahoy database: postgresql://USER:PASSWORD@HOST:PORT/NAME or mysql://... "
            "(also postgres://, mysql2://, mariadb://, trilogy://).",
            show_envvar=True,
        ),
    ],
    visits_table: Annotated[
        str, typer.Option("--visits-table", help="Ahoy's visits table (NAME or SCHEMA.NAME).")
    ] = "ahoy_visits",
    events_table: Annotated[
        str, typer.Option("--events-table", help="Ahoy's events table (NAME or SCHEMA.NAME).")
    ] = "ahoy_events",
    since: Annotated[
        str | None,
        typer.Option("--since", help=f"Only visits started and events at or after: {TIME_FORMS}."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per batch; each batch is one commit.")
    ] = 50_000,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tz: Tz = "UTC",
    fmt: FormatOpt = Format.table,
) -> None:
    """Import Ahoy's visits and events (PostgreSQL, MySQL, MariaDB); a rerun adds only new rows."""
    with cli_errors():
        from trailcli.importer.ahoy import AhoyImport, import_ahoy
        from trailcli.timeparse import parse_time, parse_tz

        request = AhoyImport(
            database=database,
            visits_table=visits_table,
            events_table=events_table,
            since=parse_time(since, parse_tz(tz)) if since else None,
            batch_size=batch_size,
        )
        result = import_ahoy(data_dir, request, ProgressLine())
        for note in result.notes:
            warn(note)
        warn(_summary(result.steps))
        emit(result.rows(), fmt, tz)


def _summary(steps: list[Any]) -> str:
    written = {s.table: s.written for s in steps}
    if not any(written.values()):
        return "Nothing new to import (a later run imports rows added after the watermarks)."
    counts = ", ".join(f"{n:,} {table}" for table, n in written.items())
    return f"Imported {counts}; 'trail compact' rewrites the imported days into one file each."


class ProgressLine:
    """One line per source table on stderr, rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.shown: Any = None

    def __call__(self, step: Any) -> None:
        if self.live and self.shown is not None and self.shown != step.source_table:
            sys.stderr.write("\n")
        self.shown = step.source_table
        elapsed = max(time.monotonic() - step.started, 1e-9)
        share = ""
        if step.max_id:
            span = max(step.max_id - step.first_id, 1)
            share = f" ({min(100.0, 100 * (step.last_id - step.first_id) / span):.0f}% of ids)"
        line = (
            f"{step.source_table}: {step.read:,} rows read{share}, up to id {step.last_id}, "
            f"{step.read / elapsed:,.0f} rows/s"
        )
        sys.stderr.write(f"\r{line}\x1b[K" if self.live else line + "\n")
        sys.stderr.flush()
