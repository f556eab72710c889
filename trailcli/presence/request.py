"""One `trail online` request: its options checked and parsed, answered from the log or a collector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli.errors import UsageError
from trailcli.presence import online
from trailcli.presence.rules import channel_matches
from trailcli.timeparse import parse_duration, parse_time, parse_tz, utcnow


@dataclass(frozen=True)
class Ask:
    """What the user asked: an instant or a range, the counting options, maybe a collector URL."""

    at: datetime | None
    start: datetime | None
    end: datetime | None
    options: online.Options
    now: datetime
    url: str | None = None
    token: str | None = None
    at_text: str | None = None
    tz: str = "UTC"

    @classmethod
    def parse(
        cls,
        at: str | None,
        start: str | None,
        end: str | None,
        by: str,
        channel: str | None,
        grace: str,
        users_only: bool,
        url: str | None,
        token: str | None,
        tz: str,
    ) -> Ask:
        """Check the option combination and parse times (naive ones in `tz`)."""
        zone, now = parse_tz(tz), utcnow()
        if at is not None and (start or end):
            raise UsageError(
                "Pass either --at or --from/--to, not both.",
                "trail online --at -1h, or --from -2h --to -1h",
            )
        if end and not start:
            raise UsageError("--to needs --from.", "trail online --from 2026-01-31 --to 2026-02-01")
        if url and (start or end or (at not in (None, "now")) or by != "person"):
            raise UsageError(
                "--url answers who is online now, per person.",
                "drop --at/--from/--to/--by, or read the log with --data-dir",
            )
        opts = online.Options(
            by=by, channel=channel, grace=parse_duration(grace), users_only=users_only
        )
        return cls(
            at=parse_time(at, zone, now) if at else None,
            start=parse_time(start, zone, now) if start else None,
            end=parse_time(end, zone, now) if end else (now if start else None),
            options=opts,
            now=now,
            url=url,
            token=token,
            at_text=at,
            tz=tz,
        )

    def refreshed(self) -> Ask:
        """The same request with `now` (and a default or relative instant) moved to the present."""
        if self.url or self.start is not None:
            return self
        now = utcnow()
        at = parse_time(self.at_text, parse_tz(self.tz), now) if self.at_text else now
        return Ask(at, None, None, self.options, now, at_text=self.at_text, tz=self.tz)


# Who is online now at a collector: (its base URL, the API token) -> its /api/online rows
RemoteOnline = Callable[[str, str | None], list[dict[str, Any]]]


def answer(
    data_dir: Path, ask: Ask, remote: RemoteOnline | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of an instant or range request (with `--url`, the rows `remote`
    gives, filtered the same way)."""
    ask = ask.refreshed()
    if ask.url:
        if remote is None:
            raise UsageError("--url needs a client of the collector.", "drop --url")
        rows = remote(ask.url, ask.token)
        return [r for r in rows if _keep(r, ask.options)], online.AT_COLUMNS
    prefix = online.CLIENT_COLUMNS if ask.options.by == "client" else []
    if ask.start is not None and ask.end is not None:
        rows = online.online_between(Path(data_dir), ask.start, ask.end, ask.now, ask.options)
        return rows, prefix + online.RANGE_COLUMNS
    at = ask.at or ask.now
    return online.online_at(Path(data_dir), at, ask.now, ask.options), prefix + online.AT_COLUMNS


def _keep(row: dict[str, Any], options: online.Options) -> bool:
    """Whether a collector's row passes `--users-only` and `--channel`."""
    if options.users_only and not row.get("user_id"):
        return False
    return options.channel is None or any(
        channel_matches(options.channel, c) for c in row.get("channels") or []
    )


# The table leaves out the range's peak, which the other formats repeat on every bucket row
TIMELINE_TABLE_COLUMNS = [c for c in online.TIMELINE_COLUMNS if not c.startswith("peak_")]


def parse_every(text: str) -> timedelta:
    every = parse_duration(text)
    if every <= timedelta(0):
        raise UsageError("--every must be a positive duration.", "pass e.g. 5m or 1h")
    return every


def timeline(data_dir: Path, ask: Ask, every: timedelta) -> list[dict[str, Any]]:
    """The timeline rows of a `--from/--to` request."""
    if ask.start is None or ask.end is None:
        raise UsageError(
            "timeline needs --from (and --to, default now).",
            "trail online timeline --from -1d --every 1h",
        )
    return online.timeline(Path(data_dir), ask.start, ask.end, every, ask.now, ask.options)
