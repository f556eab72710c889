"""`trail export`: every stored row of a person, for an access request (docs/privacy.md)."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, DataDir, cli_errors, warn
from trailcli.errors import UsageError


class ExportFormat(enum.StrEnum):
    ndjson = "ndjson"
    zip = "zip"


def export(
    *,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    visitor: Annotated[
        list[str] | None,
        typer.Option("--visitor", help="This visitor token and all its visits (repeatable)."),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option("--user", help="This user id, every visitor bound to it (repeatable)."),
    ] = None,
    visit: Annotated[
        list[str] | None, typer.Option("--visit", help="This one visit (repeatable).")
    ] = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="ndjson: one row a line, all tables in time order; zip: one file per table.",
        ),
    ] = ExportFormat.ndjson,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (required for zip; default stdout)."),
    ] = None,
) -> None:
    """Every stored row of a person (visits, events, presence, identities), in time order."""
    with cli_errors():
        from trailcli.reports.export import export as run_export
        from trailcli.reports.export import write_ndjson, write_zip
        from trailcli.store.forget import check_selector

        given = [("visitor", v) for v in visitor or []]
        given += [("user", v) for v in user or []]
        given += [("visit", v) for v in visit or []]
        selectors = [check_selector(kind, value, f" (--{kind})") for kind, value in given]
        if not selectors:
            raise UsageError("Whose rows?", "give --visitor, --user or --visit (repeatable)")
        if fmt is ExportFormat.zip and output is None:
            raise UsageError("A zip needs a file.", "add --output export.zip")
        result = run_export(data_dir, selectors)
        if fmt is ExportFormat.zip:
            assert output is not None
            write_zip(result, output)
        elif output is None:
            write_ndjson(result, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as out:
                write_ndjson(result, out)
        counts = ", ".join(f"{n} {k}" for k, n in result.counts().items())
        warn(f"exported {counts}" + (f" to {output}" if output else ""))
