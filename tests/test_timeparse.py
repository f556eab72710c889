"""Every time, duration and range form of docs/cli.md, and the errors for bad ones."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from trailcli.errors import UsageError
from trailcli.timeparse import parse_duration, parse_range, parse_time, parse_tz

NOW = datetime(2026, 3, 10, 15, 30, 45, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("now", None, NOW),
        ("NOW", None, NOW),
        ("today", None, datetime(2026, 3, 10, tzinfo=UTC)),
        ("yesterday", None, datetime(2026, 3, 9, tzinfo=UTC)),
        ("today", PARIS, datetime(2026, 3, 9, 23, tzinfo=UTC)),
        ("-15m", None, NOW - timedelta(minutes=15)),
        ("-2h", None, NOW - timedelta(hours=2)),
        ("-7d", None, NOW - timedelta(days=7)),
        ("-1w", None, NOW - timedelta(weeks=1)),
        ("-30s", None, NOW - timedelta(seconds=30)),
        ("2026-01-31", None, datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31", PARIS, datetime(2026, 1, 30, 23, tzinfo=UTC)),
        ("2026-01-31T14:00", None, datetime(2026, 1, 31, 14, tzinfo=UTC)),
        ("2026-01-31 14:00:00", PARIS, datetime(2026, 1, 31, 13, tzinfo=UTC)),
        ("2026-01-31T14:00:00+02:00", PARIS, datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T14:00:00Z", PARIS, datetime(2026, 1, 31, 14, tzinfo=UTC)),
        ("2026-07-01T12:00", PARIS, datetime(2026, 7, 1, 10, tzinfo=UTC)),  # summer time
        ("2026-01-31T14:00:00.250000Z", None, datetime(2026, 1, 31, 14, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_time_forms(text: str, tz: ZoneInfo | None, expected: datetime) -> None:
    parsed = parse_time(text, tz, NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text", ["", "tomorrow-ish", "2026-13-01", "2026-02-30", "15m", "-5x", "12:00"]
)
def test_bad_times_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_time(text, None, NOW)
    assert repr(text) in info.value.message
    assert "ISO-8601" in (info.value.hint or "") and "yesterday" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "-5m", "5 minutes", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert "30s" in (info.value.hint or "")


def test_range_is_half_open_and_ordered() -> None:
    lo, hi = parse_range("2026-01-01", "2026-01-31", None, NOW)
    assert (lo, hi) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC))
    assert parse_range(None, None, None, NOW) == (None, None)
    assert parse_range("-1d", None, None, NOW) == (NOW - timedelta(days=1), None)
    with pytest.raises(UsageError):
        parse_range("2026-02-01", "2026-01-01", None, NOW)
    with pytest.raises(UsageError):
        parse_range("2026-02-01", "2026-02-01", None, NOW)


def test_time_zone_names() -> None:
    assert parse_tz(None) == ZoneInfo("UTC")
    assert parse_tz("Europe/Paris") == PARIS
    with pytest.raises(UsageError) as info:
        parse_tz("Mars/Olympus")
    assert "IANA" in (info.value.hint or "")
