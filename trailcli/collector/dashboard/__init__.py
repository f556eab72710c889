"""The live page at `/dashboard`: who is online now, what they do, and who was online when.

`mount(app, settings)` serves it when `settings.dashboard` is on, `TRAIL_API_TOKEN` is set and
the app was given the reports (`REPORTS`, filled in by `trail collect`); `startup_note` says in
the startup line where it is or why it is off. The page's files ship in `static/`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from trailcli.collector.dashboard import routes
from trailcli.collector.dashboard.hub import Hub
from trailcli.collector.dashboard.lake import VisitFacts, visit_facts
from trailcli.collector.dashboard.live import CollectorLive
from trailcli.collector.dashboard.ports import LiveSource, Reports
from trailcli.collector.keys import METRICS, SETTINGS
from trailcli.collector.settings import Settings

PATH = "/dashboard"
REPORTS = web.AppKey("dashboard_reports", Reports)
LIVE_SOURCE = web.AppKey("dashboard_live_source", LiveSource)  # default: this node's view


def off_reason(app: web.Application, settings: Settings) -> str | None:
    """Why the dashboard is not served, or None when it is."""
    if not settings.dashboard:
        return "--no-dashboard"
    if not settings.api_token:
        return "set TRAIL_API_TOKEN to serve it"
    if REPORTS not in app:
        return "this process was started without the reports"
    return None


def startup_note(app: web.Application, base_url: str) -> str:
    """`dashboard at URL`, or `dashboard off (why)`, for the collector's startup line."""
    reason = off_reason(app, app[SETTINGS])
    return f"dashboard off ({reason})" if reason else f"dashboard at {base_url}{PATH}"


def mount(app: web.Application, settings: Settings) -> None:
    """Add the dashboard's routes and its live hub (when it is on)."""
    if off_reason(app, settings) is not None:
        return
    app.cleanup_ctx.append(_dashboard_ctx)
    app.on_shutdown.append(_close_streams)
    router = app.router
    router.add_get(PATH, routes.page)
    router.add_get(PATH + "/", routes.page)
    router.add_post(PATH + "/sign-in", routes.sign_in)
    router.add_post(PATH + "/sign-out", routes.sign_out)
    router.add_get(PATH + "/static/{path:.+}", routes.static_file)
    router.add_get(PATH + "/api/online", routes.online_now)
    router.add_get(PATH + "/api/live", routes.live_stream)
    router.add_get(PATH + "/api/trail", routes.person_trail)
    router.add_get(PATH + "/api/history/online", routes.history_online)
    router.add_get(PATH + "/api/history/timeline", routes.history_timeline)
    router.add_get(PATH + "/api/history/top", routes.history_top)


async def _dashboard_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    reports = app[REPORTS]
    source = app.get(LIVE_SOURCE) or CollectorLive(app)

    async def resolve(tokens: list[str]) -> list[tuple[VisitFacts, str | None]]:
        def read() -> list[tuple[VisitFacts, str | None]]:
            found = visit_facts(settings.data_dir, tokens, datetime.now(UTC))
            return [
                (f, reports.visit_source(f.landing_page, f.referrer, f.utm) if f.found else None)
                for f in found
            ]

        return await asyncio.to_thread(read)

    hub = Hub(source, resolve, settings.visit_cache_size)
    app[routes.DASHBOARD] = routes.Dashboard(settings, hub, reports)
    if METRICS in app:
        app[METRICS].gauge_fn(
            "dashboard_streams", lambda: len(hub.streams), "Open dashboard pages."
        )
    yield
    await hub.close()


async def _close_streams(app: web.Application) -> None:
    dash = app.get(routes.DASHBOARD)
    if dash is not None:
        await dash.hub.close()
