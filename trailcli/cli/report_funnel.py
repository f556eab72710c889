"""`trail report funnel`: how many units went through the steps, in order, within a window."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DURATION_HELP,
    DataDir,
    FormatOpt,
    From,
    IncludeBots,
    SessionTimeout,
    Strict,
    To,
    Tz,
    absent_names_reporter,
    cli_errors,
    emit,
)
from trailcli.render import Format

STEP_HELP = (
    "A step: an event name, then filters key OP value (OP: = != > >= < <=; * globs; quotes for "
    "spaces; visit.KEY for visit fields), e.g. '$view page=/product/*'. Repeat 2-20 times."
)


class Unit(enum.StrEnum):
    visitor = "visitor"
    visit = "visit"
    user = "user"
    session = "session"


class Order(enum.StrEnum):
    ordered = "ordered"
    strict = "strict"
    any = "any"


class WindowFrom(enum.StrEnum):
    first = "first"
    prior = "prior"


def funnel(
    *,
    step: Annotated[list[str], typer.Option("--step", "-s", help=STEP_HELP)],
    unit: Annotated[Unit, typer.Option("--unit", help="What is counted.")] = Unit.visitor,
    order: Annotated[
        Order,
        typer.Option(
            "--order",
            help="ordered: other events may come between; strict: each step is the very next "
            "event; any: as many of the steps as possible within the window, in any order (row "
            "k, named '≥ k steps', counts the units that reached at least k of them).",
        ),
    ] = Order.ordered,
    window: Annotated[
        str, typer.Option("--window", help=f"Conversion window (closed). {DURATION_HELP}")
    ] = "1d",
    window_from: Annotated[
        WindowFrom,
        typer.Option("--window-from", help="Measure the window from the first or the prior step."),
    ] = WindowFrom.first,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", help="Drop units with this event between their first and last step."
        ),
    ] = None,
    breakdown: Annotated[
        str | None,
        typer.Option("--breakdown", help="One funnel per value: visit.KEY or a property name."),
    ] = None,
    breakdown_limit: Annotated[
        int, typer.Option("--breakdown-limit", help="Largest values kept; the rest are (other).")
    ] = 10,
    dropped_at: Annotated[
        int | None,
        typer.Option("--dropped-at", help="List the units that reached step N but not N+1."),
    ] = None,
    strict: Strict = False,
    include_bots: IncludeBots = False,
    session_timeout: SessionTimeout = "30m",
    start: From = None,
    end: To = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tz: Tz = "UTC",
    fmt: FormatOpt = Format.table,
) -> None:
    """Conversion funnel: units reaching each step, drop-off, conversion and time between steps."""
    with cli_errors():
        from trailcli.reports import funnel as report
        from trailcli.reports.steps import parse_steps
        from trailcli.timeparse import parse_duration, parse_range, parse_tz

        lo, hi = parse_range(start, end, parse_tz(tz))
        query = report.FunnelQuery(
            steps=tuple(parse_steps(step)),
            unit=unit.value,
            order=order.value,
            window=parse_duration(window),
            window_from=window_from.value,
            start=lo,
            end=hi,
            exclude=tuple(parse_steps(exclude or [])),
            breakdown=breakdown,
            breakdown_limit=breakdown_limit,
            include_bots=include_bots,
            session_timeout=parse_duration(session_timeout),
        )
        on_absent = absent_names_reporter(lo, hi, tz, strict)
        if dropped_at is not None:
            emit(report.dropped_at(data_dir, query, dropped_at, on_absent=on_absent), fmt, tz)
        else:
            frame = report.funnel(data_dir, query, on_absent=on_absent)
            emit(report.with_bars(frame) if fmt is Format.table else frame, fmt, tz)
