"""Parse the time, duration and range forms every command accepts (docs/cli.md)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trailcli.errors import UsageError

TIME_FORMS = (
    "ISO-8601 (2026-01-31T14:00, 2026-01-31 14:00:00+02:00), a date (2026-01-31), "
    "now, today, yesterday, or relative -15m, -2h, -7d"
)
DURATION_FORMS = "a number with a unit: 30s, 15m, 2h, 7d, 1w"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_RELATIVE = re.compile(r"^\s*-\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_tz(name: str | None) -> ZoneInfo:
    """Return the IANA zone `name` (UTC when empty)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(
            f"Unknown time zone {name!r}.", "use an IANA name such as UTC or Europe/Paris"
        ) from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse `30s`, `15m`, `2h`, `7d`, `1w` into a timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise UsageError(f"Cannot read the duration {text!r}.", f"use {DURATION_FORMS}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def parse_time(text: str, tz: ZoneInfo | None = None, now: datetime | None = None) -> datetime:
    """Parse one of the accepted time forms into an aware UTC datetime.

    Naive times and bare dates are read in `tz`; `today` and `yesterday` are midnights in `tz`.
    """
    zone = tz or ZoneInfo("UTC")
    current = now or utcnow()
    raw = (text or "").strip()
    word = raw.lower()
    if word == "now":
        return current
    if word in ("today", "yesterday"):
        today = current.astimezone(zone).date()
        return _midnight(today - timedelta(days=1 if word == "yesterday" else 0), zone)
    relative = _RELATIVE.match(raw)
    if relative:
        return current - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        try:
            return _midnight(date.fromisoformat(raw), zone)
        except ValueError as exc:
            raise UsageError(f"Cannot read the time {text!r}.", f"use {TIME_FORMS}") from exc
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError as exc:
        raise UsageError(f"Cannot read the time {text!r}.", f"use {TIME_FORMS}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def parse_range(
    start: str | None,
    end: str | None,
    tz: ZoneInfo | None = None,
    now: datetime | None = None,
) -> tuple[datetime | None, datetime | None]:
    """Parse a half-open `--from/--to` range; either side may be open (None)."""
    lo = parse_time(start, tz, now) if start else None
    hi = parse_time(end, tz, now) if end else None
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError(
            f"The range --from {start} --to {end} is empty.", "--to must be later than --from"
        )
    return lo, hi
