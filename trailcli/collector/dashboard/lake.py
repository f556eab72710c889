"""The dashboard's reads of the log, each a blocking call to run in a thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli.store.views import Lake

DEVICE_FIELDS = ("device_type", "browser", "os", "country", "referring_domain")
# A visit shown as online started at most a visit's lifetime ago; its rows are looked for in the
# partitions of the last few days only.
LOOK_BACK = timedelta(days=2)


@dataclass(frozen=True)
class VisitFacts:
    """What the log holds about a visit: its row (found or not yet) and its `$view` event ids."""

    visit_token: str
    found: bool
    landing_page: str | None
    referrer: str | None
    utm: dict[str, str | None]
    device: dict[str, str | None]  # DEVICE_FIELDS
    view_ids: list[str]


def visit_facts(data_dir: Path, tokens: list[str], now: datetime) -> list[VisitFacts]:
    """The facts of the visits `tokens` from the visits and events of the last days."""
    if not tokens:
        return []
    lake = Lake(data_dir, kinds=("visits", "events"))
    first = (now - LOOK_BACK).date().isoformat()
    for kind in ("visits", "events"):
        lake.bind(kind, [d for d in lake.dates(kind) if d >= first])
    rows = lake.fetch("dashboard_visit_facts", {"tokens": tokens})
    return [_facts(row) for row in rows]


def _facts(row: dict[str, Any]) -> VisitFacts:
    utm = {k: row[k] for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term")}
    return VisitFacts(
        visit_token=row["visit_token"],
        found=bool(row["found"]),
        landing_page=row["landing_page"],
        referrer=row["referrer"],
        utm=utm,
        device={k: row[k] for k in DEVICE_FIELDS},
        view_ids=list(row["view_ids"] or []),
    )
