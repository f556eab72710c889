"""`trail report referrers`: visits per source, medium, channel, domain, term, campaign or landing page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    FormatOpt,
    From,
    IncludeBots,
    Limit,
    Strict,
    To,
    Tz,
    absent_names_reporter,
    cli_errors,
    emit,
)
from trailcli.render import Format

BY_FORMS = "source, medium, channel, domain, term, campaign, landing_page or day"


def referrers(
    *,
    by: Annotated[str, typer.Option("--by", help=f"Group visits by {BY_FORMS}.")] = "source",
    goal: Annotated[
        str | None,
        typer.Option("--goal", help="A step (e.g. 'purchase'); adds conversions per value."),
    ] = None,
    site_host: Annotated[
        list[str] | None,
        typer.Option(
            "--site-host",
            help="The site's own host (repeatable; subdomains included). "
            "Default: the hosts of the visits' landing pages.",
        ),
    ] = None,
    referrer_db: Annotated[
        list[Path] | None,
        typer.Option(
            "--referrer-db",
            help="Also load a referrer list: 'matomo' (Matomo's lists, shipped with trail), or a "
            "file: Matomo SearchEngines.yml/Socials.yml/AIAssistants.yml, Snowplow referers.yml "
            "(repeatable; later wins).",
        ),
    ] = None,
    strict: Strict = False,
    include_bots: IncludeBots = False,
    start: From = None,
    end: To = None,
    limit: Limit = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    tz: Tz = "UTC",
    fmt: FormatOpt = Format.table,
) -> None:
    """Where visits come from: visits, visitors and share per source (or --by another field)."""
    with cli_errors():
        from trailcli.reports.referrers import ReferrersQuery, referrers_report
        from trailcli.timeparse import parse_range, parse_tz

        lo, hi = parse_range(start, end, parse_tz(tz))
        query = ReferrersQuery(
            by=by,
            start=lo,
            end=hi,
            limit=limit,
            site_hosts=tuple(site_host or ()),
            goal=goal,
            include_bots=include_bots,
            referrer_db=tuple(referrer_db or ()),
        )
        on_absent = absent_names_reporter(lo, hi, tz, strict)
        emit(referrers_report(data_dir, query, on_absent), fmt, tz)
