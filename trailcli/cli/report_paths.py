"""`trail report paths`: what people viewed next after a page, or before reaching one."""

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


def paths(
    *,
    from_page: Annotated[
        str | None, typer.Option("--from-page", help="Start at this page ('*' globs).")
    ] = None,
    to_page: Annotated[
        str | None, typer.Option("--to-page", help="Walk back from this page ('*' globs).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Transitions to follow.")] = 5,
    top: Annotated[int, typer.Option("--top", min=1, help="Transitions kept per step.")] = 10,
    sequences: Annotated[
        bool, typer.Option("--sequences", help="Rank whole sequences instead of transitions.")
    ] = False,
    clean: Annotated[
        list[str] | None,
        typer.Option("--clean", help="Rename pages: '/users/*=/users/:id' (repeatable)."),
    ] = None,
    include_bots: IncludeBots = False,
    session_timeout: SessionTimeout = "30m",
    start: From = None,
    end: To = None,
    limit: Limit = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tz: Tz = "UTC",
    fmt: FormatOpt = Format.table,
) -> None:
    """Top page transitions per step within sessions, or top sequences (--sequences)."""
    with cli_errors():
        from trailcli.reports.paths import PathsQuery, clean_rules, paths_report
        from trailcli.timeparse import parse_duration, parse_range, parse_tz

        lo, hi = parse_range(start, end, parse_tz(tz))
        query = PathsQuery(
            from_page=from_page,
            to_page=to_page,
            steps=steps,
            top=top,
            sequences=sequences,
            clean=clean_rules(clean or ()),
            start=lo,
            end=hi,
            limit=limit,
            include_bots=include_bots,
            session_timeout=parse_duration(session_timeout),
        )
        emit(paths_report(data_dir, query), fmt, tz)
