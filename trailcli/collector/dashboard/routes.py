"""The dashboard's HTTP side: sign-in, the page and its files, the JSON reads and the live stream.

Every route but the sign-in form's POST needs a session cookie and answers 401 without one (the
page shows the sign-in form). Only same-origin requests are served (no CORS for the dashboard),
every answer carries a Content-Security-Policy without inline scripts, and no route changes data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from trailcli.collector.dashboard import session
from trailcli.collector.dashboard.hub import Hub
from trailcli.collector.dashboard.pages import (
    SIGN_IN_STYLE_HASH,
    StaticFile,
    load_static,
    sign_in_page,
)
from trailcli.collector.dashboard.ports import PersonRef, Reports
from trailcli.collector.settings import Settings
from trailcli.errors import NoDataError, TrailError, UsageError
from trailcli.timeparse import parse_duration

T = TypeVar("T")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SIGN_IN_CSP = CSP.replace("style-src 'self'", f"style-src '{SIGN_IN_STYLE_HASH}'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form's Origin "null"
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_STORE = {"Cache-Control": "no-store"}
MAX_FORM_BYTES = 4096
KEEPALIVE_SECONDS = 15.0
HISTORY_JOBS = 2  # log reads running at once; the rest wait their turn
MAX_BUCKETS = 5_000
MAX_TOP = 50
UTC_DAY = timedelta(days=1)


class Dashboard:
    """Everything the handlers share: settings, the signing key, the hub, the reports."""

    def __init__(self, settings: Settings, hub: Hub, reports: Reports) -> None:
        assert settings.api_token
        self.settings = settings
        self.key = session.signing_key(settings.secret, settings.api_token)
        self.hub = hub
        self.reports = reports
        self.limiter = session.SignInLimiter()
        self.static: dict[str, StaticFile] = load_static()
        self.jobs = asyncio.Semaphore(HISTORY_JOBS)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking read of the log, in a thread, a few at a time."""
        async with self.jobs:
            return await asyncio.to_thread(fn, *args)


DASHBOARD = web.AppKey("dashboard", Dashboard)


# --- responses ----------------------------------------------------------------------------------


def _headers(extra: dict[str, str] | None = None, csp: str = CSP) -> dict[str, str]:
    return {"Content-Security-Policy": csp, **SECURITY_HEADERS, **(extra or {})}


def json_response(value: Any, status: int = 200) -> web.Response:
    response = web.Response(
        body=orjson.dumps(value, default=str),
        status=status,
        content_type="application/json",
        headers=_headers(NO_STORE),
    )
    if len(response.body or b"") > 32_768:  # type: ignore[arg-type]
        response.enable_compression()
    return response


def json_error(status: int, message: str, hint: str = "") -> web.Response:
    return json_response({"error": message, "hint": hint}, status)


def sign_in_response(status: int = 401, notice: str = "", **headers: str) -> web.Response:
    return web.Response(
        text=sign_in_page(notice),
        status=status,
        content_type="text/html",
        headers=_headers({**NO_STORE, **headers}, SIGN_IN_CSP),
    )


# --- checks -------------------------------------------------------------------------------------


def same_origin(request: web.Request, navigation: bool = False) -> bool:
    """The request comes from a page of this collector (or, for `navigation`, is a top-level
    visit): the dashboard's answers are never for other origins, whatever `--allow-origin` says."""
    origin = request.headers.get("Origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.host:
        return False
    site = request.headers.get("Sec-Fetch-Site")
    if site is None or site in ("same-origin", "none"):
        return True
    return navigation and request.headers.get("Sec-Fetch-Mode") == "navigate"


def session_ends(request: web.Request) -> float | None:
    dash = request.app[DASHBOARD]
    return session.expiry(request.cookies.get(session.COOKIE), dash.key, time.time())


def refused(request: web.Request) -> web.Response | None:
    """Why an API request is not served (401 without a session, 403 from elsewhere), or None."""
    if not same_origin(request):
        return json_error(403, "The dashboard answers its own pages only.", "open /dashboard")
    if session_ends(request) is None:
        return json_error(401, "Sign in first.", "open /dashboard and enter the API token")
    return None


def _is_https(request: web.Request) -> bool:
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return request.app[DASHBOARD].settings.trust_proxy and forwarded.lower() == "https"


def _client(request: web.Request) -> str:
    """The address sign-in attempts are counted against (the proxy's client with --trust-proxy)."""
    from trailcli.collector.enrich import client_ip

    trust = request.app[DASHBOARD].settings.trust_proxy
    forwarded = request.headers.get("X-Forwarded-For") if trust else None
    return client_ip(request.remote, forwarded, trust) or "?"


# --- the page, sign-in, files -------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    """GET /dashboard: the app for a session, else 401 with the sign-in form."""
    if not same_origin(request, navigation=True):
        return sign_in_response(403)
    if session_ends(request) is None:
        return sign_in_response(401)
    index = request.app[DASHBOARD].static["index.html"]
    return web.Response(
        body=index.body, content_type="text/html", charset="utf-8", headers=_headers(NO_STORE)
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    """POST /dashboard/sign-in (form field `token`): a session cookie, or 401 and the form."""
    dash = request.app[DASHBOARD]
    if not same_origin(request):
        return sign_in_response(403)
    wait = dash.limiter.retry_after(_client(request))
    if wait > 0:
        return sign_in_response(429, "limited", **{"Retry-After": str(int(wait) + 1)})
    if (request.content_length or 0) > MAX_FORM_BYTES:
        return sign_in_response(413, "wrong")
    try:
        form = await request.post()
    except ValueError:
        form = {}  # type: ignore[assignment]
    token = form.get("token")
    given = token.strip() if isinstance(token, str) else None
    if not given or len(given) > session.MAX_TOKEN_LENGTH or not _token_ok(dash, given):
        dash.limiter.failed(_client(request))
        return sign_in_response(401, "wrong")
    lifetime = dash.settings.dashboard_session
    response = _see_dashboard()
    response.set_cookie(
        session.COOKIE,
        session.issue(dash.key, time.time(), lifetime),
        max_age=int(lifetime),
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        secure=_is_https(request),
    )
    return response


def _see_dashboard() -> web.Response:
    return web.Response(status=303, headers=_headers({**NO_STORE, "Location": "/dashboard"}))


def _token_ok(dash: Dashboard, given: str) -> bool:
    from trailcli.collector.identity import tokens_equal

    return tokens_equal(given, dash.settings.api_token)


async def sign_out(request: web.Request) -> web.StreamResponse:
    """POST /dashboard/sign-out: the cookie removed, back to the sign-in form."""
    if not same_origin(request):
        return sign_in_response(403)
    if session_ends(request) is None:
        return sign_in_response(401)
    response = _see_dashboard()
    response.del_cookie(session.COOKIE, path="/dashboard")
    return response


async def static_file(request: web.Request) -> web.StreamResponse:
    """GET /dashboard/static/{path}: the page's own files, for a session."""
    if not same_origin(request, navigation=True):
        return web.Response(status=403, headers=_headers())
    if session_ends(request) is None:
        return web.Response(status=401, text="Sign in at /dashboard first.\n", headers=_headers())
    found = request.app[DASHBOARD].static.get(request.match_info["path"])
    if found is None:
        return web.Response(status=404, text="Not found\n", headers=_headers())
    headers = _headers({"ETag": found.etag, "Cache-Control": "private, no-cache"})
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers, "Content-Type": found.content_type})


# --- live ---------------------------------------------------------------------------------------


async def online_now(request: web.Request) -> web.Response:
    """GET /dashboard/api/online: who is online now, the latest events, the message number."""
    return refused(request) or json_response(request.app[DASHBOARD].hub.snapshot())


async def live_stream(request: web.Request) -> web.StreamResponse:
    """GET /dashboard/api/live[?after=EPOCH:N]: server-sent events, a snapshot (or the frames
    after N) then one frame every quarter second, until the session ends or the page goes away."""
    problem = refused(request)
    if problem is not None:
        return problem
    ends = session_ends(request) or 0.0
    dash = request.app[DASHBOARD]
    response = web.StreamResponse(
        headers=_headers(
            {**NO_STORE, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
    )
    await response.prepare(request)
    after = request.headers.get("Last-Event-ID") or request.query.get("after")
    stream = dash.hub.attach(after)
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            left = ends - time.time()
            if left <= 0:
                await response.write(b"event: signed-out\ndata: {}\n\n")
                break
            try:
                chunk = await asyncio.wait_for(stream.next(), min(KEEPALIVE_SECONDS, left))
            except TimeoutError:
                chunk = b": keep-alive\n\n"
            if chunk is None:  # the collector is stopping
                break
            await response.write(chunk or dash.hub.snapshot_event())  # b"": a fresh snapshot
        await response.write_eof()
    except ConnectionResetError:
        pass  # the page went away
    finally:
        dash.hub.detach(stream)
    return response


# --- the log ------------------------------------------------------------------------------------


def _instant(request: web.Request, name: str, default: datetime | None = None) -> datetime:
    text = request.query.get(name)
    if text is None and default is not None:
        return default
    try:
        value = datetime.fromisoformat(text or "")
    except ValueError:
        raise UsageError(
            f"Invalid {name}={text!r}.",
            "an ISO-8601 instant with its offset, e.g. 2026-03-01T12:00Z",
        ) from None
    if value.tzinfo is None:
        raise UsageError(f"{name}={text!r} has no time zone.", "add Z or an offset such as +01:00")
    return value.astimezone(UTC)


def _limit(request: web.Request, default: int, most: int) -> int:
    try:
        return max(1, min(most, int(request.query.get("limit", default))))
    except ValueError:
        raise UsageError("Invalid limit.", f"a whole number from 1 to {most}") from None


async def _answer(request: web.Request, work: Callable[[Dashboard], Any]) -> web.Response:
    """Run a read of the log for a signed-in page; library errors become JSON statuses."""
    problem = refused(request)
    if problem is not None:
        return problem
    dash = request.app[DASHBOARD]
    try:
        return json_response(await work(dash))
    except NoDataError as exc:
        return json_error(404, exc.message, exc.hint or "")
    except UsageError as exc:
        return json_error(400, exc.message, exc.hint or "")
    except TrailError as exc:  # an unreadable file (named), or another runtime error
        return json_error(500, exc.message, exc.hint or "")


async def history_online(request: web.Request) -> web.Response:
    """GET /dashboard/api/history/online?at=T: who was online at T (`trail online --at T`)."""
    from trailcli.presence import online

    async def work(dash: Dashboard) -> dict[str, Any]:
        at = _instant(request, "at")
        now = datetime.now(UTC)
        rows = await dash.run(online.online_at, dash.data_dir, at, now)
        return {"at": at, "count": len(rows), "columns": online.AT_COLUMNS, "rows": rows}

    return await _answer(request, work)


async def history_timeline(request: web.Request) -> web.Response:
    """GET /dashboard/api/history/timeline?from=A&to=B&every=D: persons online per bucket and
    the exact peak (`trail online timeline`)."""
    from trailcli.presence import online

    async def work(dash: Dashboard) -> dict[str, Any]:
        now = datetime.now(UTC)
        end = _instant(request, "to", now)
        start = _instant(request, "from", end - UTC_DAY)
        every = parse_duration(request.query.get("every", "5m"))
        if every <= timedelta(0) or (end - start) / every > MAX_BUCKETS:
            raise UsageError(
                f"Too many buckets (over {MAX_BUCKETS}).", "pass a larger every= or shorter range"
            )
        rows = await dash.run(online.timeline, dash.data_dir, start, end, every, now)
        peak = rows[0] if rows else {}
        return {
            "from": start,
            "to": end,
            "every_seconds": every.total_seconds(),
            "peak_online": peak.get("peak_online", 0),
            "peak_at": peak.get("peak_at"),
            "buckets": [
                [r["bucket_start"], r["max_online"], r["min_online"], round(r["avg_online"], 3)]
                for r in rows
            ],
        }

    return await _answer(request, work)


async def history_top(request: web.Request) -> web.Response:
    """GET /dashboard/api/history/top?from=A&to=B: the top pages (`trail report pages`) and
    sources (`trail report referrers`) of a range, most first."""

    async def work(dash: Dashboard) -> dict[str, Any]:
        now = datetime.now(UTC)
        start = _instant(request, "from", now.replace(hour=0, minute=0, second=0, microsecond=0))
        end = _instant(request, "to", start + UTC_DAY)
        limit = _limit(request, 10, MAX_TOP)
        pages, sources = await asyncio.gather(
            _or_empty(dash.run(dash.reports.top_pages, dash.data_dir, start, end, limit)),
            _or_empty(dash.run(dash.reports.top_sources, dash.data_dir, start, end, limit)),
        )
        return {"from": start, "to": end, "pages": pages, "sources": sources}

    return await _answer(request, work)


async def _or_empty(work: Any) -> list[dict[str, Any]]:
    try:
        rows: list[dict[str, Any]] = await work
    except NoDataError:
        return []
    return rows


async def person_trail(request: web.Request) -> web.Response:
    """GET /dashboard/api/trail?user=ID|visitor=T|visit=T[&from=A]: the person's rows of
    `trail replay` from A (default: 24 hours ago)."""

    async def work(dash: Dashboard) -> dict[str, Any]:
        given = [(k, request.query[k]) for k in ("user", "visitor", "visit") if k in request.query]
        if len(given) != 1:
            raise UsageError("Say whose trail to show.", "pass exactly one of user, visitor, visit")
        person = PersonRef(*given[0])
        since = _instant(request, "from", datetime.now(UTC) - UTC_DAY)
        rows = await _or_empty(dash.run(dash.reports.trail, dash.data_dir, person, since))
        return {"person": {"kind": person.kind, "value": person.value}, "from": since, "rows": rows}

    return await _answer(request, work)
