"""The figures kept for purged days (the `daily` table, store/retention.py), as the rows of the
reports' `--by day` forms.

A purged day is reported from `daily` when the range covers the whole UTC day and the report
counts as the kept figures were counted (bots left out, the default session timeout, no goal).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli.errors import NoDataError
from trailcli.store import coverage, views

Row = dict[str, Any]


def whole_days(start: datetime | None, end: datetime | None) -> tuple[str | None, str | None]:
    """The first and last UTC days that `[start, end)` covers entirely (None: unbounded)."""
    first = last = None
    if start is not None:
        at = start.astimezone(UTC)
        day = at.date() if at == datetime(at.year, at.month, at.day, tzinfo=UTC) else None
        first = (day or at.date() + timedelta(days=1)).isoformat()
    if end is not None:
        last = (end.astimezone(UTC).date() - timedelta(days=1)).isoformat()
    return first, last


def kept_rows(data_dir: Path, kind: str, start: datetime | None, end: datetime | None) -> list[Row]:
    """The `daily` rows of the days before the first day a purge kept of `kind`, within the whole
    days of `[start, end)`."""
    kept_from = coverage.purged_before(data_dir).get(kind)
    if kept_from is None:
        return []
    first, last = whole_days(start, end)
    before = (datetime.fromisoformat(kept_from) - timedelta(days=1)).date().isoformat()
    last = before if last is None else min(last, before)
    return views.daily_rows(data_dir, first, last)


def merged_by_day(
    data_dir: Path,
    kind: str,
    start: datetime | None,
    end: datetime | None,
    raw: Callable[[], list[Row]],
    from_kept: Callable[[Row], Row | None],
    use_kept: bool,
) -> list[Row]:
    """The raw rows by day (`raw()`), plus a row made by `from_kept` for each purged day of
    `kind` that `daily` holds and the raw rows lack; by day. The raw rows' NoDataError stands
    only when no kept row answers instead."""
    kept = kept_rows(data_dir, kind, start, end) if use_kept else []
    try:
        rows = raw()
    except NoDataError:
        extra = [r for k in kept if (r := from_kept(k)) is not None]
        if not extra:
            raise
        return extra
    have = {r["day"] for r in rows}
    for k in kept:
        if k["date"] not in have and (row := from_kept(k)) is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: r["day"])
