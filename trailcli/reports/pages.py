"""Page figures: views, visitors, entries, exits and exit rate per page (or per title)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import UsageError

BY = ("page", "title", "day")
DAY_COLUMNS = ("day", "views", "visitors", "entries", "exits", "exit_rate")

# What the report reads: events of the range's days and the visits' device types (bots). Events
# before the range cannot change how the range's events group into sessions: the first of a
# visitor's events in range starts a group either way, and every later one is compared with an
# earlier event in range. User ids are never shown, so identities are not read.
READS = ("events", "visits")


@dataclass(frozen=True)
class PagesQuery:
    by: str = "page"
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    include_bots: bool = False
    session_timeout: timedelta | None = None


def pages_report(data_dir: Path, query: PagesQuery) -> Any:
    """One row per page (column named after `query.by`), most viewed first, as Arrow; with
    `by="day"`, one row per UTC day, purged days from the figures kept for them."""
    if query.by not in BY:
        raise UsageError(f"Unknown --by {query.by!r}.", "use page, title or day")
    if query.by == "day":
        return _by_day(data_dir, query)
    from trailcli.reports.frames import fetch_arrow
    from trailcli.reports.sessions import use_timeout
    from trailcli.store import views
    from trailcli.store.layout import Days

    con = views.connect(
        data_dir,
        need=("events",),
        start=query.start,
        end=query.end,
        dates={"events": Days.covering(query.start, query.end)},
        read=READS,
    )
    use_timeout(con, query.session_timeout)
    params = {
        "since": query.start,
        "until": query.end,
        "include_bots": query.include_bots,
        "by_title": query.by == "title",
        "limit": query.limit,
    }
    table = fetch_arrow(con, sql.load("pages_report"), params)
    return table.rename_columns([query.by, *table.column_names[1:]])


def _by_day(data_dir: Path, query: PagesQuery) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [("day", pa.string())]
        + [(c, pa.int64()) for c in DAY_COLUMNS[1:-1]]
        + [("exit_rate", pa.float64())]
    )
    return pa.Table.from_pylist(pages_by_day(data_dir, query)[: query.limit], schema=schema)


def pages_by_day(data_dir: Path, query: PagesQuery) -> list[dict[str, Any]]:
    """The rows of `pages --by day` as dicts, `into_next_day` included (sessions across the
    day's end, which the figures kept for a purged day need); purged days from those figures.

    A session across the first kept day's midnight lost its start with the purge: from the raw
    rows it enters on the kept day, so that day's entries drop the sessions the last purged day
    recorded as going on into it, when that day is reported too."""
    from trailcli.reports.daily import merged_by_day
    from trailcli.reports.frames import fetch_arrow
    from trailcli.reports.sessions import use_timeout
    from trailcli.store import coverage, views
    from trailcli.store.views import SESSION_TIMEOUT

    def raw() -> list[dict[str, Any]]:
        con = views.connect(data_dir, need=("events",), start=query.start, end=query.end)
        use_timeout(con, query.session_timeout)
        params = {"since": query.start, "until": query.end, "include_bots": query.include_bots}
        return list(fetch_arrow(con, sql.load("pages_by_day"), params).to_pylist())

    def from_kept(k: dict[str, Any]) -> dict[str, Any] | None:
        if not k["views"]:
            return None
        return {
            "day": k["date"], "views": k["views"], "visitors": k["view_visitors"],
            "entries": k["entries"], "exits": k["exits"], "exit_rate": k["exits"] / k["views"],
            "into_next_day": k["into_next_day"], "kept": True,
        }  # fmt: skip

    counted_as_kept = not query.include_bots and query.session_timeout in (None, SESSION_TIMEOUT)
    rows = merged_by_day(
        data_dir, "events", query.start, query.end, raw, from_kept, counted_as_kept
    )
    first_kept = coverage.purged_before(data_dir).get("events")
    for before, after in pairwise(rows):
        if before.get("kept") and not after.get("kept") and after["day"] == first_kept:
            after["entries"] -= before["into_next_day"] or 0
    return rows
