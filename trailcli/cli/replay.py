"""`trail replay`: one person's trail in time order across visits, optionally followed live."""

from __future__ import annotations

import io
import sys
from typing import Annotated, Any

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    FormatOpt,
    From,
    Limit,
    SessionTimeout,
    To,
    Tz,
    cli_errors,
    emit,
)
from trailcli.render import Format


def replay(
    *,
    user: Annotated[str | None, typer.Option("--user", help="A user id.")] = None,
    visitor: Annotated[str | None, typer.Option("--visitor", help="A visitor token.")] = None,
    visit: Annotated[str | None, typer.Option("--visit", help="A visit token.")] = None,
    follow_url: Annotated[
        str | None,
        typer.Option(
            "--follow",
            metavar="URL",
            help="Keep printing live rows from a collector's Bayeux endpoint (e.g. "
            "http://127.0.0.1:8080/faye) until interrupted.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TRAIL_API_TOKEN", help="The collector's read token."),
    ] = None,
    session_timeout: SessionTimeout = "30m",
    start: From = None,
    end: To = None,
    limit: Limit = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tz: Tz = "UTC",
    fmt: FormatOpt = Format.table,
) -> None:
    """One person's visits, events, presence and identity rows in time order."""
    with cli_errors():
        from trailcli.reports.replay import Person, ReplayQuery
        from trailcli.timeparse import parse_duration, parse_range, parse_tz

        lo, hi = parse_range(start, end, parse_tz(tz))
        person = Person(user=user, visitor=visitor, visit=visit)
        query = ReplayQuery(person, lo, hi, limit, parse_duration(session_timeout))
        if follow_url:
            _follow(data_dir, query, follow_url, token, fmt, tz)
        else:
            _print_replay(data_dir, query, fmt, tz)


def _print_replay(data_dir: Any, query: Any, fmt: Format, tz: str) -> None:
    from trailcli.reports.replay import COLUMNS, group_by_visit, replay

    rows = replay(data_dir, query)
    if fmt != Format.table or not rows:
        emit(rows, fmt, tz, columns=list(COLUMNS))
        return
    columns = [c for c in COLUMNS if c != "visit_token"]
    for i, (visit_token, group) in enumerate(group_by_visit(rows)):
        sys.stdout.write(("\n" if i else "") + f"visit {visit_token or '(none)'}\n")
        emit(group, fmt, tz, columns=columns)


class _LineWriter:
    """Writes rows one at a time: the header once (csv, table), then one line per row."""

    def __init__(self, fmt: Format, tz: str) -> None:
        self.fmt = Format.ndjson if fmt == Format.json else fmt
        self.tz = tz
        self.started = False

    def __call__(self, row: dict[str, Any]) -> None:
        from trailcli.render import render
        from trailcli.reports.replay import COLUMNS
        from trailcli.timeparse import parse_tz

        buffer = io.StringIO()
        render([row], self.fmt, buffer, tz=parse_tz(self.tz), columns=list(COLUMNS))
        lines = buffer.getvalue().splitlines(keepends=True)
        skip = {Format.csv: 1, Format.table: 2}.get(self.fmt, 0) if self.started else 0
        sys.stdout.write("".join(lines[skip:]))
        sys.stdout.flush()
        self.started = True


def _follow(data_dir: Any, query: Any, url: str, token: str | None, fmt: Format, tz: str) -> None:
    """Print the stored trail (when there is one), then live rows until interrupted."""
    from trailcli.cli.common import warn
    from trailcli.client.bayeux import messages
    from trailcli.errors import NoDataError, UsageError
    from trailcli.reports.replay import live_row, replay

    if not token:
        raise UsageError(
            "--follow needs the collector's read token.", "pass --token or set TRAIL_API_TOKEN"
        )
    write = _LineWriter(fmt, tz)
    try:
        for row in replay(data_dir, query):
            write(row)
    except NoDataError:
        pass

    def ready() -> None:
        warn(f"Following {url} (Ctrl-C to stop).")

    previous = None
    for message in messages(url, token, on_ready=ready):
        data = message.get("data")
        if isinstance(data, dict) and query.person.matches(data):
            row = live_row(str(message["channel"]), data, previous)
            previous = row["time"] or previous
            write(row)
