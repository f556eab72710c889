"""The reports `trail collect` hands its dashboard: the same calls as `trail replay`, `trail
report pages` and `trail report referrers` (the collector itself never imports the reports)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trailcli.collector.dashboard.ports import PersonRef
    from trailcli.sources.referrer_db import ReferrerDB


class ReportsForDashboard:
    """`trailcli.collector.dashboard.ports.Reports` over `trailcli.reports`."""

    def trail(
        self, data_dir: Path, person: PersonRef, since: datetime | None
    ) -> list[dict[str, Any]]:
        from trailcli.reports.replay import Person, ReplayQuery, replay

        return replay(data_dir, ReplayQuery(Person(**{person.kind: person.value}), start=since))

    def top_pages(
        self, data_dir: Path, start: datetime, end: datetime, limit: int
    ) -> list[dict[str, Any]]:
        from trailcli.reports.pages import PagesQuery, pages_report

        rows: list[dict[str, Any]] = pages_report(
            data_dir, PagesQuery(start=start, end=end, limit=limit)
        ).to_pylist()
        return rows

    def top_sources(
        self, data_dir: Path, start: datetime, end: datetime, limit: int
    ) -> list[dict[str, Any]]:
        from trailcli.reports.referrers import ReferrersQuery, referrers_report

        query = ReferrersQuery(by="source", start=start, end=end, limit=limit)
        rows: list[dict[str, Any]] = referrers_report(data_dir, query).to_pylist()
        return rows

    def visit_source(
        self, landing_page: str | None, referrer: str | None, utm: Mapping[str, str | None]
    ) -> str:
        from trailcli.reports.referrers import classify_url

        return classify_url(landing_page, referrer, db=_referrer_db(), utm=dict(utm)).source


@functools.cache
def _referrer_db() -> ReferrerDB:
    from trailcli.sources.referrer_db import load_db

    return load_db()
