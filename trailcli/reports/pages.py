"""Page figures: views, visitors, entries, exits and exit rate per page (or per title)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import UsageError

BY = ("page", "title")

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
    """One row per page (column named after `query.by`), most viewed first, as Arrow."""
    if query.by not in BY:
        raise UsageError(f"Unknown --by {query.by!r}.", "use page or title")
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
