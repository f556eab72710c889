"""`trail report pages`: views, visitors, entries, exits and exit rate per page or title."""

from __future__ import annotations

from typing import Annotated

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    FormatOpt,
    From,
    IncludeBots,
    Limit,
    SessionTimeout,
    To,
    Tz,
    cli_errors,
    emit,
)
from trailcli.render import Format


def pages(
    *,
    by: Annotated[
        str, typer.Option("--by", help="Group $view events by page, title or day (UTC).")
    ] = "page",
    include_bots: IncludeBots = False,
    session_timeout: SessionTimeout = "30m",
    start: From = None,
    end: To = None,
    limit: Limit = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tz: Tz = "UTC",
    fmt: FormatOpt = Format.table,
) -> None:
    """Views, visitors, entries, exits and exit rate (exits / views) per page."""
    with cli_errors():
        from trailcli.reports.pages import PagesQuery, pages_report
        from trailcli.timeparse import parse_duration, parse_range, parse_tz

        lo, hi = parse_range(start, end, parse_tz(tz))
        query = PagesQuery(by, lo, hi, limit, include_bots, parse_duration(session_timeout))
        emit(pages_report(data_dir, query), fmt, tz)
