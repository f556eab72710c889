"""`trail online` and `trail online timeline`: who was online when, from the log or a live collector."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DURATION_HELP,
    DataDir,
    FormatOpt,
    From,
    Limit,
    To,
    Tz,
    cli_errors,
    emit,
)
from trailcli.render import Format
from trailcli.timeparse import TIME_FORMS

online_app = typer.Typer(help="Who was online when, from the presence log.")

At = Annotated[str | None, typer.Option("--at", help=f"The instant (default now): {TIME_FORMS}.")]
By = Annotated[str, typer.Option("--by", help="The unit of a row: person, visit or client.")]
Channel = Annotated[
    str | None,
    typer.Option(
        "--channel", help="Only sessions subscribed to a matching channel (/chat/*, /chat/**)."
    ),
]
Grace = Annotated[
    str,
    typer.Option("--grace", help=f"Gaps shorter than this do not split a stretch. {DURATION_HELP}"),
]
UsersOnly = Annotated[bool, typer.Option("--users-only", help="Only persons with a user id.")]
Url = Annotated[
    str | None, typer.Option("--url", help="Ask a running collector instead (http://host:9292).")
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="TRAIL_API_TOKEN", help="API token for --url.", show_default=False
    ),
]
Watch = Annotated[bool, typer.Option("--watch", help="Redraw every few seconds until interrupted.")]
Every = Annotated[str, typer.Option("--every", help=f"Bucket width. {DURATION_HELP}")]
WATCH_SECONDS = 3.0


@online_app.callback(invoke_without_command=True)
def online(
    ctx: typer.Context,
    *,
    at: At = None,
    start: From = None,
    end: To = None,
    by: By = "person",
    channel: Channel = None,
    grace: Grace = "15s",
    users_only: UsersOnly = False,
    url: Url = None,
    token: Token = None,
    watch: Watch = False,
    limit: Limit = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: FormatOpt = Format.table,
    tz: Tz = "UTC",
) -> None:
    """Everyone online at an instant (--at, default now) or during a range (--from/--to)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"data_dir": data_dir}  # `trail online --data-dir X timeline` reads X too
        return
    with cli_errors():
        from trailcli.presence import request

        ask = request.Ask.parse(at, start, end, by, channel, grace, users_only, url, token, tz)
        while True:
            rows, columns = request.answer(data_dir, ask, _fetch_online)
            if watch:
                sys.stdout.write("\x1b[H\x1b[2J" if fmt == Format.table else "")
            emit(rows[:limit] if limit else rows, fmt, tz, columns)
            if not watch:
                return
            time.sleep(WATCH_SECONDS)


def _fetch_online(url: str, token: str | None) -> list[dict[str, Any]]:
    from trailcli.client.online import fetch_online  # urllib and ssl: only for --url

    return fetch_online(url, token)


@online_app.command("timeline")
def timeline(
    ctx: typer.Context,
    *,
    start: From = None,
    end: To = None,
    every: Every = "5m",
    by: By = "person",
    channel: Channel = None,
    grace: Grace = "15s",
    users_only: UsersOnly = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: FormatOpt = Format.table,
    tz: Tz = "UTC",
) -> None:
    """Persons online per bucket (max, min, time-weighted average) and the exact peak of the range."""
    with cli_errors():
        from trailcli.presence import request
        from trailcli.render import sparkline

        ask = request.Ask.parse(None, start, end, by, channel, grace, users_only, None, None, tz)
        if data_dir == DEFAULT_DATA_DIR and ctx.obj:
            data_dir = ctx.obj["data_dir"]
        rows = request.timeline(Path(data_dir), ask, request.parse_every(every))
        if fmt != Format.table:
            emit(rows, fmt, tz)  # the range's peak on every row: each row stands alone
            return
        emit(rows, fmt, tz, columns=request.TIMELINE_TABLE_COLUMNS)
        if rows:
            _sparkline_footer(rows, sparkline, tz)


def _sparkline_footer(rows: list[dict[str, Any]], sparkline: Any, tz: str) -> None:
    """The table's chart line: max online per bucket, then the peak of the range, once."""
    from trailcli.render_table import format_time
    from trailcli.timeparse import parse_tz

    peak_at = format_time(rows[0]["peak_at"], parse_tz(tz))
    line = sparkline([r["max_online"] for r in rows])
    print(f"\nmax_online {line}\npeak {rows[0]['peak_online']:,} online at {peak_at}")
