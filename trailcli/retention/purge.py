"""Drop whole UTC days older than a limit from the tables, keeping daily figures first if asked."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from trailcli.errors import NoDataError, UsageError
from trailcli.store import layout
from trailcli.store import retention as store_retention
from trailcli.store.retention import PurgeSummary
from trailcli.store.schema import KINDS

Progress = Callable[[str], None]
ONE_DAY = timedelta(days=1)


def _quiet(_message: str) -> None:
    pass


def first_kept_day(now: datetime, older_than: timedelta) -> str:
    """The first UTC day kept: every day before it ended at or before `now - older_than`."""
    return layout.day_of(now - older_than)


def check_kinds(kinds: Iterable[str] | None) -> list[str]:
    names = list(dict.fromkeys(kinds or KINDS))
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise UsageError(
            f"Unknown log kind {unknown[0]!r}.", f"use one of {', '.join(KINDS)} (repeatable)"
        )
    return names


def purge(
    data_dir: Path,
    older_than: timedelta,
    *,
    now: datetime | None = None,
    kinds: Iterable[str] | None = None,
    keep_daily: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PurgeSummary:
    """Remove the whole UTC days older than `older_than` (before `now`) from the tables of
    `kinds` (default: all), one Delta commit per table, and delete their files at once; the
    presence snapshots before the limit go too, the later ones stay valid. With `keep_daily` the
    figures of those days are written to the `daily` table first. `dry_run` changes nothing.

    Raises UsageError for a limit that is not positive or an unknown kind, NoDataError when none
    of the kinds has a table.
    """
    say = progress or _quiet
    if older_than < ONE_DAY:
        raise UsageError(
            f"--older-than must be at least one day, not {older_than}.", "use e.g. 400d"
        )
    names = check_kinds(kinds)
    from trailcli.store import tables

    if not any(tables.table_exists(data_dir, k) for k in names):
        looked = ", ".join(str(layout.table_path(data_dir, k)) for k in names)
        raise NoDataError(f"No trail tables to purge: looked for {looked}.", None)
    limit = first_kept_day((now or datetime.now(UTC)), older_than)
    kept = 0
    if keep_daily and not dry_run:
        from trailcli.store.writable import require_writable

        require_writable(data_dir)
        days = sorted({d for k in names for d in store_retention.days_before(data_dir, k, limit)})
        if days:
            say(f"keeping the daily figures of {len(days)} day(s) ({days[0]} to {days[-1]})")
            kept = store_retention.write_daily(data_dir, daily_figures(data_dir, days, now))
    summary = store_retention.drop_days_before(data_dir, names, limit, dry_run=dry_run)
    summary.daily_rows = kept
    dropped = [k.kind for k in summary.kinds if k.days]
    if dropped and not dry_run:
        from trailcli.presence.snapshots import forget_before

        deleted, rewritten = forget_before(data_dir, limit, dropped)
        if deleted or rewritten:
            say(
                f"presence snapshots: {deleted} deleted, {rewritten} kept with the purged days left out"
            )
    return summary


def daily_figures(
    data_dir: Path, days: list[str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """The figures `daily` keeps for each of `days` (YYYY-MM-DD), computed from the rows still
    stored: visits and visitors as `report referrers --by day` counts them, page views, entries
    and exits as `report pages --by day`, persons online as `online timeline --every 1d`. A
    figure whose rows are gone already is None."""
    from trailcli.presence.online import timeline
    from trailcli.reports.pages import PagesQuery, pages_by_day
    from trailcli.reports.referrers import ReferrersQuery, referrers_report

    start = datetime.fromisoformat(days[0]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(days[-1]).replace(tzinfo=UTC) + ONE_DAY
    rows: dict[str, dict[str, Any]] = {d: {"date": d} for d in days}
    for row in _or_none(lambda: referrers_report(data_dir, ReferrersQuery("day", start, end))):
        if row["day"] in rows:
            rows[row["day"]].update(visits=row["visits"], visitors=row["visitors"])
    # sessions going on past the last day end there: read a day further for their exits
    further = PagesQuery("day", start, end + ONE_DAY)
    for row in _or_none(lambda: pages_by_day(data_dir, further)):
        if row["day"] in rows:
            figures = {k: row[k] for k in ("views", "entries", "exits", "into_next_day")}
            rows[row["day"]].update(figures, view_visitors=row["visitors"])
    clock = now or datetime.now(UTC)
    with_presence = set(store_retention.days_before(data_dir, "presence", end.date().isoformat()))
    for day in (d for d in days if d in with_presence):
        at = datetime.fromisoformat(day).replace(tzinfo=UTC)
        for bucket in _or_none(partial(timeline, data_dir, at, at + ONE_DAY, ONE_DAY, clock)):
            rows[day].update(
                max_online=bucket["max_online"], min_online=bucket["min_online"],
                avg_online=bucket["avg_online"], peak_at=bucket["peak_at"],
            )  # fmt: skip
    return list(rows.values())


def _or_none(compute: Callable[[], Any]) -> list[dict[str, Any]]:
    """The rows of a report (an Arrow table or a list), [] when its rows are gone (no data)."""
    try:
        result = compute()
    except NoDataError:
        return []
    return list(result if isinstance(result, list) else result.to_pylist())


def mask_old_ips(
    data_dir: Path, older_than: timedelta, *, now: datetime | None = None, dry_run: bool = False
) -> tuple[str, Any]:
    """Mask the stored addresses of the whole UTC days older than `older_than` in place, as
    `--mask-ips` masks them at collection (`trail forget --ips-older-than`): (the first day
    left as it is, the rewrite's figures). Raises UsageError for a limit under a day,
    NoDataError when there is no visits table."""
    from trailcli.store import tables

    if older_than < ONE_DAY:
        raise UsageError(
            f"--ips-older-than must be at least one day, not {older_than}.", "use e.g. 30d"
        )
    if not tables.table_exists(data_dir, "visits"):
        path = layout.table_path(data_dir, "visits")
        raise NoDataError(f"No visits table to mask: looked for {path}.", None)
    limit = first_kept_day(now or datetime.now(UTC), older_than)
    if not dry_run:
        from trailcli.store.writable import require_writable

        require_writable(data_dir)
    return limit, store_retention.mask_ips_before(data_dir, limit, dry_run=dry_run)
