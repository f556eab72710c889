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
            "http://127.0.0.1:9292/faye) until interrupted.",
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


# Fixed widths of the streamed table's columns (`detail` takes the rest of the terminal)
_STREAM_WIDTHS = {"kind": 8, "visit_token": 14, "name": 16, "gap_seconds": 11, "new_session": 11}


class _LineWriter:
    """Writes rows one at a time: the header once (csv, table), then one line per row; table
    rows keep one fixed layout so live rows line up under the stored ones."""

    def __init__(self, fmt: Format, tz: str) -> None:
        from trailcli.timeparse import parse_tz

        self.fmt = Format.ndjson if fmt == Format.json else fmt
        self.tz = parse_tz(tz)
        self.started = False
        self.table: Any = None

    def __call__(self, row: dict[str, Any]) -> None:
        from trailcli.reports.replay import COLUMNS

        if self.fmt == Format.table:
            self._table_row(row)
            return
        from trailcli.render import render

        buffer = io.StringIO()
        render([row], self.fmt, buffer, tz=self.tz, columns=list(COLUMNS))
        lines = buffer.getvalue().splitlines(keepends=True)
        skip = 1 if self.fmt == Format.csv and self.started else 0
        sys.stdout.write("".join(lines[skip:]))
        sys.stdout.flush()
        self.started = True

    def _table_row(self, row: dict[str, Any]) -> None:
        if self.table is None:
            from datetime import UTC, datetime

            from trailcli.render_table import TableStream, format_time
            from trailcli.reports.replay import COLUMNS

            time_width = len(format_time(datetime.now(UTC), self.tz))
            self.table = TableStream(
                COLUMNS,
                sys.stdout,
                self.tz,
                widths={"time": time_width, **_STREAM_WIDTHS},
                right=["gap_seconds"],
            )
        self.table.write(row)


def _follow(data_dir: Any, query: Any, url: str, token: str | None, fmt: Format, tz: str) -> None:
    """Subscribe, print the stored trail (when there is one), then live rows until interrupted;
    after a reconnection, the rows stored meanwhile first (each row printed once)."""
    from dataclasses import replace

    from trailcli.cli.common import warn
    from trailcli.client.bayeux import follow
    from trailcli.errors import NoDataError, UsageError
    from trailcli.reports.replay import LiveTrail, live_row, stored_rows

    if not token:
        raise UsageError(
            "--follow needs the collector's read token.", "pass --token or set TRAIL_API_TOKEN"
        )
    write = _LineWriter(fmt, tz)
    trail = LiveTrail(query.session_timeout)

    def show(key: Any, row: dict[str, Any]) -> None:
        annotated = trail.accept(key, row)
        if annotated is not None:
            write(annotated)

    def catch_up(first: bool) -> None:
        # first the trail as asked (--from, --to, --limit); later what is new since the newest row
        since = replace(query, start=trail.newest or query.start, end=None, limit=None)
        try:
            rows = stored_rows(data_dir, query if first else since)
        except NoDataError:
            rows = []
            if not first:
                warn(f"No stored trail under {data_dir} to fill in what came while reconnecting "
                     "(pass the collector's --data-dir); rows from then may be missing.")  # fmt: skip
        for key, row in rows:
            show(key, row)
        if first:
            warn(f"Following {url} (Ctrl-C to stop).")

    follow(
        url,
        token,
        query.person.matches,
        lambda channel, data: show(*live_row(channel, data)),
        on_subscribed=catch_up,
        on_status=warn,
    )
