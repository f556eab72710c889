"""`trail sample`: generate seeded traffic with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, FormatOpt, cli_errors, emit, warn
from trailcli.render import Format
from trailcli.timeparse import TIME_FORMS

OutDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "--out",
        envvar="TRAIL_DATA_DIR",
        help="Where to write the tables and ground_truth.json (must not hold them yet).",
    ),
]


def sample(
    *,
    data_dir: OutDir = DEFAULT_DATA_DIR,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 1,
    end: Annotated[
        str | None,
        typer.Option(
            "--end",
            help=f"End of the range (exclusive; default the last UTC midnight): {TIME_FORMS}.",
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Days of traffic before --end.")] = 7,
    visitors: Annotated[
        int | None, typer.Option("--visitors", help="Distinct visitors (default 2000).")
    ] = None,
    events: Annotated[
        int | None, typer.Option("--events", help="About this many events instead of --visitors.")
    ] = None,
    peak_online: Annotated[
        int | None,
        typer.Option(
            "--peak-online", help="About this many people online at the daily peak instead."
        ),
    ] = None,
    tables: Annotated[
        str | None,
        typer.Option(
            "--tables", help="Comma-separated subset of visits,events,presence,identities."
        ),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Generate realistic seeded traffic with ground truth (ground_truth.json)."""
    with cli_errors():
        from trailcli.sample.generator import SampleOptions, generate, parse_tables
        from trailcli.timeparse import parse_time

        opts = SampleOptions(
            data_dir=data_dir,
            seed=seed,
            end=parse_time(end) if end is not None else None,
            days=days,
            visitors=visitors,
            events=events,
            peak_online=peak_online,
            tables=parse_tables(tables),
            data_dir_label=str(data_dir),
        )
        result = generate(opts, progress=warn)
        emit([{"table": k, "rows": n} for k, n in result.rows.items()], fmt)
