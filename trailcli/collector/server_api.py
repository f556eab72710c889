"""The app server's own tracking: `POST /api/visits` and `POST /api/events` with the secret.

What `ahoy.track` and Ahoy's server-side visits do inside a Rails controller: the app server
sends the visit and events of a browser's request, with the user id, IP, user agent and times it
knows, all trusted because the request carries TRAIL_SECRET. Events go through the Ahoy path's
own checks, de-duplication by event id and durable append (`ahoy._start_storing`); visits through
its visit builder and enrichment.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from trailcli.collector import ahoy, enrich, identity
from trailcli.collector import ahoy_payload as payload
from trailcli.collector.ahoy import AHOY, AhoyState, Client, Reply
from trailcli.collector.http import unavailable_json
from trailcli.collector.keys import METRICS, WRITER
from trailcli.collector.settings import Settings
from trailcli.errors import DiskFull

# without a user agent (a job, an API client) a request is not taken for a bot
NO_AGENT = enrich.Device(browser=None, os=None, device_type="Other", is_bot=False)
# what the visit's body says that trail works out itself or stores in its own column
VISIT_FACTS = frozenset(
    ("ip", "user_agent", "started_at", "browser", "os", "device_type", "referring_domain",
     *enrich.GEO_FIELDS)
)  # fmt: skip


def server_time(value: Any, now: datetime, window: timedelta) -> datetime:
    """The app server's time for a record: kept as given (Ahoy keeps the time of a server-side
    `ahoy.track`), `now` when missing, unreadable or later than `now + window`."""
    parsed = payload.parse_time(value)
    if parsed is None or parsed > now + window:
        return now
    return parsed


def trusted_client(params: dict[str, Any], state: AhoyState, settings: Settings) -> Client:
    """The browser behind the app server's request, as the app server describes it."""
    ip = enrich.client_ip(payload.text_or_none(params.get("ip"), 64), None, False)
    masked = enrich.mask_ip(ip)
    user_agent = payload.text_or_none(params.get("user_agent"), 2048)
    device = state.agents.parse(user_agent) if user_agent else NO_AGENT
    return Client(masked if settings.mask_ips else ip, masked, user_agent, device)


def _error(status: int, message: str, hint: str) -> web.Response:
    return web.json_response({"error": message, "hint": hint}, status=status)


def _reply(reply: Reply) -> web.Response:
    """An Ahoy refusal (400 invalid events, 413 too large, ...) as this API's JSON error."""
    hint = "see docs/rails.md for the body"
    if reply.status == 413:
        hint = "send fewer or smaller events per request, or raise --max-content-length"
    return _error(reply.status, reply.text.strip(), hint)


async def post_events(request: web.Request) -> web.StreamResponse:
    """POST /api/events: `{visit_token, visitor_token?, user_id?, ip?, user_agent?, events: [...]}`
    (or one event's `name`, `properties`, `time`, `id` at the top level)."""
    identity.require_secret(request)
    app, state = request.app, request.app[AHOY]
    settings = state.settings
    try:
        params, body = await ahoy.read_params(request, settings)
        tokens = payload.resolve_tokens(params, request.headers)
        if tokens.visit is None:
            return _error(
                400, "visit_token is required.", "send the visit's token (ahoy.visit_token)"
            )
        events = ahoy._parse_events(app, state, params, body)
    except Reply as reply:
        return _reply(reply)
    client = trusted_client(params, state, settings)
    if ahoy.excluded(client, settings):
        ahoy.count_drop(app, "bot", max(1, len(events)))
        return web.json_response({"stored": 0, "duplicates": 0, "excluded": len(events)})
    window = state.event_window
    storing = ahoy._start_storing(
        app, state, events, tokens, client,
        user_id=identity._clean_user_id(params.get("user_id")),
        event_time=lambda given, now: server_time(given, now, window),
    ) if events else None  # fmt: skip
    if storing is not None:
        try:
            await storing.durable
        except DiskFull as exc:
            ahoy._unmark(state, storing.records, storing.new_visit)
            return unavailable_json(exc)
        except BaseException:
            ahoy._unmark(state, storing.records, storing.new_visit)
            raise
        ahoy._accepted(app, storing)
    stored = len(storing.records) if storing is not None else 0
    return web.json_response({"stored": stored, "duplicates": len(events) - stored, "excluded": 0})


async def post_visits(request: web.Request) -> web.StreamResponse:
    """POST /api/visits: Ahoy's visit data (`track_visit(data)`): tokens, `user_id`,
    `started_at`, `ip`, `user_agent`, `referrer`, `landing_page`, UTM tags, platform, ..."""
    try:
        return await _post_visits(request)
    except DiskFull as exc:
        return unavailable_json(exc)


async def _post_visits(request: web.Request) -> web.StreamResponse:
    identity.require_secret(request)
    app, state = request.app, request.app[AHOY]
    settings = state.settings
    try:
        params, _ = await ahoy.read_params(request, settings)
    except Reply as reply:
        return _reply(reply)
    tokens = payload.resolve_tokens(params, request.headers)
    if tokens.visit is None or tokens.visitor is None:
        return _error(
            400,
            "visit_token and visitor_token are required.",
            "send ahoy.visit_token and ahoy.visitor_token",
        )
    visit, visitor = tokens.visit, tokens.visitor
    client = trusted_client(params, state, settings)
    if ahoy.excluded(client, settings):
        ahoy.count_drop(app, "bot")
        return web.json_response({"visit_token": visit, "stored": False, "excluded": True})
    started = server_time(params.get("started_at"), state.clock(), state.event_window)
    user_id = identity._clean_user_id(params.get("user_id"))
    stored = False
    if ahoy._remember_visit(state, visit, visitor, started):
        record = payload.visit_record(
            params, visit_token=visit, visitor_token=visitor, user_id=user_id,
            started_at=started, skip_extra=VISIT_FACTS,
        )  # fmt: skip
        record = ahoy._enriched(record, client, state)
        for name in enrich.GEO_FIELDS:  # what the app server knows, where GeoIP found nothing
            if record.get(name) is None:
                record[name] = _geo_value(name, params.get(name))
        try:
            await app[WRITER].append_async("visits", [record])
        except BaseException:
            ahoy._forget_visit(state, visit)
            raise
        app[METRICS].inc("visits_total")
        stored = True
    else:
        ahoy.count_drop(app, "duplicate_visit")
    bound = await identity.bind(app, visit, user_id, "api", visitor, started) if user_id else False
    return web.json_response(
        {"visit_token": visit, "stored": stored, "excluded": False, "bound": bound}
    )


def _geo_value(name: str, value: Any) -> Any:
    """A location field the app server sent: text for places, a finite number for coordinates."""
    if name not in ("latitude", "longitude"):
        return payload.text_or_none(value, 255)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def mount(app: web.Application, settings: Settings) -> None:
    """Add `POST /api/visits` and `POST /api/events` (needs the Ahoy and identity mounts)."""
    app.router.add_post("/api/visits", post_visits)
    app.router.add_post("/api/events", post_events)
