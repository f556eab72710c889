"""Options and error handling shared by every command (docs/cli.md)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from trailcli.errors import TrailError
from trailcli.render import Format
from trailcli.timeparse import DURATION_FORMS, TIME_FORMS

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="TRAIL_DATA_DIR",
        help="Where the logs live.",
        show_default=True,
    ),
]
DEFAULT_DATA_DIR = Path("./trail-data")

Tz = Annotated[
    str,
    typer.Option("--tz", envvar="TRAIL_TZ", help="IANA zone for naive times, days and printing."),
]
FormatOpt = Annotated[
    Format, typer.Option("--format", "-f", help="Output format: table, csv, json or ndjson.")
]
From = Annotated[
    str | None, typer.Option("--from", help=f"Start of the range (inclusive): {TIME_FORMS}.")
]
To = Annotated[
    str | None, typer.Option("--to", help=f"End of the range (exclusive): {TIME_FORMS}.")
]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows.")]
DURATION_HELP = f"Duration: {DURATION_FORMS}."
IncludeBots = Annotated[
    bool,
    typer.Option("--include-bots", help="Count bots (device_type Bot) too; left out by default."),
]
SessionTimeout = Annotated[
    str,
    typer.Option(
        "--session-timeout", help=f"A gap this long or longer starts a new session. {DURATION_HELP}"
    ),
]

Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Exit 2 when a step, goal or exclusion names an event that none in the range has.",
    ),
]


def warn(message: str) -> None:
    """A diagnostic line on stderr (never on stdout, which carries data only)."""
    print(message, file=sys.stderr)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into a message on stderr and the matching exit code."""
    try:
        yield
    except TrailError as exc:
        warn(f"Error: {exc.message}")
        if exc.hint:
            warn(f"Hint: {exc.hint}")
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error
        with contextlib.suppress(Exception):
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        raise typer.Exit(0) from None


def range_words(start: Any, end: Any, tz_name: str) -> str:
    """`between A and B`, `since A`, `before B` or `in the data`, times in `tz_name`."""
    from trailcli.timeparse import parse_tz

    zone = parse_tz(tz_name)
    lo = start.astimezone(zone).isoformat() if start is not None else None
    hi = end.astimezone(zone).isoformat() if end is not None else None
    if lo and hi:
        return f"between {lo} and {hi}"
    if lo:
        return f"since {lo}"
    return f"before {hi}" if hi else "in the data"


def absent_names_reporter(start: Any, end: Any, tz_name: str, strict: bool) -> Any:
    """The `on_absent` callback of a report: say on stderr which named events do not occur in
    the range; with `strict` that is a usage error (exit 2) before anything is counted."""

    def report(absent: list[Any]) -> None:
        from trailcli.errors import UsageError

        lines = [a.describe(range_words(start, end, tz_name)) for a in absent]
        if strict:
            raise UsageError(
                "\n  ".join(["An event named in the command does not occur:", *lines]),
                "fix the name, or drop --strict to count an event that has not happened yet as 0",
            )
        for line in lines:
            warn(f"Warning: {line}")

    return report


def emit(frame: Any, fmt: Format, tz_name: str = "UTC", columns: list[str] | None = None) -> None:
    """Render a result to stdout."""
    from trailcli.render import render
    from trailcli.timeparse import parse_tz

    render(frame, fmt, sys.stdout, tz=parse_tz(tz_name), columns=columns)
    sys.stdout.flush()
