"""The Ahoy tracking API: `POST /ahoy/visits` and `POST /ahoy/events`, as ahoy.js 0.4.5 expects."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from trailcli.collector import ahoy_payload as payload
from trailcli.collector import claims, enrich, identity
from trailcli.collector.http import Reply, read_body, unavailable
from trailcli.collector.keys import METRICS, SETTINGS, WRITER
from trailcli.collector.lru import LRU
from trailcli.collector.settings import Settings
from trailcli.errors import DiskFull
from trailcli.store.wal import LogWriter

log = logging.getLogger("trail.collect.ahoy")

MISSING_PARAMS = "Missing required parameters\n"
INVALID_PARAMS = "Invalid parameters\n"
AHOY_COOKIES = ("ahoy_visit", "ahoy_visitor", "ahoy_track")
# the events reply's headers, built once (the reply copies them; setting the content type and
# charset one by one costs more than the rest of the reply)
EVENTS_REPLY_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


@dataclass(frozen=True)
class KnownVisit:
    started_at: datetime
    visitor_token: str | None


class AhoyState:
    """Bounded memory of the API: visits seen, cookie-less visit reuse, event ids, parsed agents."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings  # also here: one lookup per request instead of one per step
        self.event_window = timedelta(seconds=settings.event_time_window)
        self.visits: LRU[str, KnownVisit] = LRU(settings.visit_cache_size)
        self.visitor_visits: LRU[str, tuple[str, datetime]] = LRU(settings.visit_cache_size)
        self.event_ids: LRU[str, bool] = LRU(settings.dedup_size)
        self.agents = enrich.UserAgentCache(settings.ua_cache_size)
        self.clients: LRU[tuple[str | None, str | None, str | None], Client] = LRU(
            settings.ua_cache_size
        )
        self.geo = enrich.GeoIP(settings.geoip) if settings.geoip else None
        self.clock = clock or (lambda: datetime.now(UTC))
        self._last_warning: dict[str, float] = {}

    def warn_drop(self, reason: str, message: str) -> None:
        """Log a silent drop as a warning, at most once per 10 s per reason (metrics count all)."""
        now = time.monotonic()
        if now - self._last_warning.get(reason, -1e9) >= 10.0:
            self._last_warning[reason] = now
            log.warning("%s (further drops of this kind for 10 s are only counted)", message)


AHOY = web.AppKey("ahoy", AhoyState)


@dataclass(frozen=True)
class Client:
    """Who sent a request, as far as the request tells."""

    ip: str | None  # as stored (masked with --mask-ips)
    masked_ip: str | None  # always masked: the cookie-less anonymity set
    user_agent: str | None
    device: enrich.Device


# --- request plumbing ---------------------------------------------------------------------------


async def read_params(
    request: web.Request, settings: Settings | None = None
) -> tuple[dict[str, Any], bytes]:
    settings = settings or request.app[SETTINGS]
    body = await read_body(request, settings.max_content_length)
    content_type = request.headers.get("Content-Type", "")
    if not request.rel_url.raw_query_string:
        beacon = payload.beacon_params(content_type, body)  # the usual ahoy.js beacon, cheaply
        if beacon is not None:
            return beacon, body
    try:
        params = payload.request_params(request.query.items(), content_type, body)
    except RecursionError:
        raise Reply(400, INVALID_PARAMS) from None
    return params, body


def client_of(request: web.Request, state: AhoyState, settings: Settings) -> Client:
    """Who sent the request (remembered per address and user agent: real traffic repeats them)."""
    forwarded = request.headers.get("X-Forwarded-For") if settings.trust_proxy else None
    user_agent = request.headers.get("User-Agent")
    if user_agent is not None:
        user_agent = user_agent[:2048]  # all that is stored, so all that tells clients apart
    key = (request.remote, forwarded, user_agent)
    client = state.clients.get(key)
    if client is None:
        ip = enrich.client_ip(request.remote, forwarded, settings.trust_proxy)
        masked = enrich.mask_ip(ip)
        ua = payload.text_or_none(user_agent, 2048)
        client = Client(
            ip=masked if settings.mask_ips else ip,
            masked_ip=masked,
            user_agent=ua,
            device=state.agents.parse(ua),
        )
        state.clients.put(key, client)
    return client


def require_tokens(tokens: payload.Tokens, settings: Settings) -> None:
    if not settings.cookieless and (tokens.visit is None or tokens.visitor is None):
        raise Reply(400, MISSING_PARAMS)


def excluded(client: Client, settings: Settings) -> bool:
    return client.device.is_bot and not settings.track_bots


def count_drop(app: web.Application, reason: str, n: int = 1) -> None:
    app[METRICS].inc("drops_total", {"reason": reason}, n)


# --- visits -------------------------------------------------------------------------------------


def _cookieless_tokens(
    tokens: payload.Tokens, client: Client, state: AhoyState, settings: Settings, now: datetime
) -> tuple[str, str, bool]:
    """(visit, visitor, new visit?) in cookie-less mode: the anonymity set's visit within its duration."""
    visitor = tokens.visitor or payload.anonymity_visitor_token(client.masked_ip, client.user_agent)
    if tokens.visit:
        return tokens.visit, visitor, tokens.visit not in state.visits
    current = state.visitor_visits.get(visitor)
    if current and now - current[1] < timedelta(seconds=settings.visit_duration):
        return current[0], visitor, False
    return str(uuid.uuid4()), visitor, True


def _enriched(record: dict[str, Any], client: Client, state: AhoyState) -> dict[str, Any]:
    record.update(
        ip=client.ip,
        user_agent=client.user_agent,
        browser=client.device.browser,
        os=client.device.os,
        device_type=client.device.device_type,
    )
    if state.geo is not None:
        record.update(state.geo.lookup(client.ip))
    return record


def _remember_visit(state: AhoyState, visit: str, visitor: str | None, started: datetime) -> bool:
    """Note a visit; True when it was not known (so its row must be written)."""
    if not state.visits.add_if_absent(visit, KnownVisit(started, visitor)):
        return False
    if visitor:
        current = state.visitor_visits.get(visitor)
        if current is None or current[1] <= started:
            state.visitor_visits.put(visitor, (visit, started))
    return True


def _forget_visit(state: AhoyState, visit: str) -> None:
    state.visits.pop(visit)


def _claimed_user(app: web.Application, params: Mapping[str, Any], visit: str) -> str | None:
    """The user id of a `user_token` signed for this visit; unsigned, forged or misdirected
    claims are counted."""
    settings = app[SETTINGS]
    token = params.get("user_token")
    user_id = None
    if token is not None:
        check = claims.check_user_token(
            token, visit, settings.secret, accept_unscoped=settings.accept_unscoped_user_tokens
        )
        claims.count(app[METRICS], check, "visit")
        user_id = check.user_id
    claimed = token is not None or params.get("user_id") is not None
    if claimed and user_id is None:
        app[METRICS].inc("unsigned_claims_total")
    return user_id


async def post_visit(request: web.Request) -> web.StreamResponse:
    """POST /ahoy/visits: record the visit once; reply with its tokens and renew the cookie."""
    try:
        return await _visit(request)
    except Reply as reply:
        return reply.response()
    except DiskFull as exc:
        return unavailable(exc)


async def _visit(request: web.Request) -> web.Response:
    app, settings, state = request.app, request.app[SETTINGS], request.app[AHOY]
    params, _ = await read_params(request)
    tokens = payload.resolve_tokens(params, request.headers)
    require_tokens(tokens, settings)
    client = client_of(request, state, settings)
    now = state.clock()
    if settings.cookieless:
        visit, visitor, _new = _cookieless_tokens(tokens, client, state, settings, now)
    else:
        visit, visitor = str(tokens.visit), str(tokens.visitor)
    if excluded(client, settings):
        count_drop(app, "bot")
    else:
        await _record_visit(app, params, client, visit, visitor, now)
    response = web.json_response(
        {"visit_token": visit, "visitor_token": visitor, "visit_id": visit, "visitor_id": visitor}
    )
    _set_cookies(response, request, settings, params, tokens, visit, visitor)
    return response


async def _record_visit(
    app: web.Application,
    params: Mapping[str, Any],
    client: Client,
    visit: str,
    visitor: str,
    now: datetime,
) -> None:
    state = app[AHOY]
    user_id = _claimed_user(app, params, visit)
    if _remember_visit(state, visit, visitor, now):
        record = payload.visit_record(
            params, visit_token=visit, visitor_token=visitor, user_id=user_id, started_at=now
        )
        try:
            await app[WRITER].append_async("visits", [_enriched(record, client, state)])
        except BaseException:
            _forget_visit(state, visit)
            raise
        app[METRICS].inc("visits_total")
    else:
        count_drop(app, "duplicate_visit")
    if user_id is not None:
        await identity.bind(app, visit, user_id, "user_token", visitor, now)


def _set_cookies(
    response: web.Response,
    request: web.Request,
    settings: Settings,
    params: Mapping[str, Any],
    tokens: payload.Tokens,
    visit: str,
    visitor: str,
) -> None:
    """Renew `ahoy_visit` (and set `ahoy_visitor` for a new visitor) on a `js` visit POST."""
    if settings.cookieless:
        for name in AHOY_COOKIES:
            if name in request.cookies:
                response.del_cookie(name, path="/", domain=settings.cookie_domain)
        return
    if not payload.truthy(params.get("js")):
        return
    common: dict[str, Any] = {"path": "/", "samesite": "Lax", "httponly": False}
    if settings.cookie_domain:
        common["domain"] = settings.cookie_domain
    response.set_cookie("ahoy_visit", visit, max_age=int(settings.visit_duration), **common)
    if tokens.visitor is None:
        response.set_cookie(
            "ahoy_visitor", visitor, max_age=int(settings.visitor_duration), **common
        )


# --- events -------------------------------------------------------------------------------------


async def post_events(request: web.Request) -> web.StreamResponse:
    """POST /ahoy/events: store up to the limit of events, each once; reply `{}` once durable.

    The request's events are checked and stored by the intake, together with the other requests
    of this turn of the event loop; the steps around the waits are plain functions, so a request
    suspends and resumes this one frame.
    """
    app = request.app
    state = app[AHOY]
    try:
        params, body = await read_params(request, state.settings)
        storing = await app[INTAKE].submit(request, params, body)
    except Reply as reply:
        return reply.response()
    if storing is not None:
        try:
            await storing.durable
        except DiskFull as exc:
            _unmark(state, storing.records, storing.new_visit)
            return unavailable(exc)
        except BaseException:
            _unmark(state, storing.records, storing.new_visit)
            raise
        _accepted(app, storing)
    return web.Response(body=b"{}", headers=EVENTS_REPLY_HEADERS)


class EventIntake:
    """Checks and starts storing the event requests that arrived in one turn of the event loop,
    one after another in order of arrival, at the end of that turn.

    Running these steps back to back for a batch of requests, rather than each request's steps
    between the framework's own work for it, costs measurably less CPU per request
    (BENCHMARKS.md, "Collector"), most likely because the same code and data stay in the
    processor's caches.
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._arrived: list[_Arrival] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(
        self, request: web.Request, params: dict[str, Any], body: bytes
    ) -> asyncio.Future[_Storing | None]:
        """The request's storing (None: nothing to store), or the Reply that refuses it, once the
        intake has run. Must be called on the loop."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[_Storing | None] = self._loop.create_future()
        if not self._arrived:
            self._loop.call_soon(self._run)
        self._arrived.append((request, params, body, future))
        return future

    def _run(self) -> None:
        arrived, self._arrived = self._arrived, []
        app = self._app
        state = app[AHOY]
        for request, params, body, future in arrived:
            if future.cancelled():
                continue  # the client went away before its turn: nothing is stored
            try:
                future.set_result(_store_events(request, app, state, params, body))
            except Exception as exc:  # a Reply, or a fault the handler raises as it would have
                future.set_exception(exc)


_Arrival = tuple[web.Request, dict[str, Any], bytes, "asyncio.Future[_Storing | None]"]
INTAKE = web.AppKey("ahoy_intake", EventIntake)


@dataclass
class _Storing:
    """Events on their way to the WAL: what to undo if that fails, what to count once durable."""

    durable: Awaitable[Any]
    records: list[dict[str, Any]]
    new_visit: str | None  # the token of the visit these events created, if they did


def _parse_events(
    app: web.Application, state: AhoyState, params: dict[str, Any], body: bytes
) -> list[dict[str, Any]]:
    settings = state.settings
    try:
        found = payload.event_list(params, body, settings.max_events_per_request)
    except (payload.InvalidParameters, RecursionError):
        raise Reply(400, INVALID_PARAMS) from None
    if found.bad_json:
        count_drop(app, "bad_events_json")
        state.warn_drop("bad_events_json", "Dropped a request whose events are not valid JSON")
    if found.over_limit:
        count_drop(app, "over_event_limit", found.over_limit)
        state.warn_drop(
            "over_event_limit",
            f"Dropped {found.over_limit} events over the limit of "
            f"{settings.max_events_per_request} per request",
        )
    return found.events


def _store_events(
    request: web.Request,
    app: web.Application,
    state: AhoyState,
    params: dict[str, Any],
    body: bytes,
) -> _Storing | None:
    """Check the request and start storing its new events (None when there are none to store)."""
    settings = state.settings
    tokens = payload.resolve_tokens(params, request.headers)
    require_tokens(tokens, settings)
    events = _parse_events(app, state, params, body)
    client = client_of(request, state, settings)
    if excluded(client, settings):
        count_drop(app, "bot", max(1, len(events)))
        return None
    if not events:
        return None
    return _start_storing(app, state, events, tokens, client)


def _fresh(
    app: web.Application, state: AhoyState, events: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], str | None]]:
    """(event, client id) of the events whose id was not seen before (marked as seen now);
    duplicates are counted."""
    fresh = []
    for event in events:
        event_id = payload.event_id(event)
        if event_id is not None and not state.event_ids.add_if_absent(event_id, True):
            count_drop(app, "duplicate_event")
            continue
        fresh.append((event, event_id))
    return fresh


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _start_storing(
    app: web.Application,
    state: AhoyState,
    events: list[dict[str, Any]],
    tokens: payload.Tokens,
    client: Client,
    *,
    user_id: str | None = None,
    event_time: Callable[[Any, datetime], datetime] | None = None,
) -> _Storing | None:
    """Append the events not seen before, with their visit first if it is new; None when every
    event is a duplicate.

    The app server's events (`POST /api/events`) come with a trusted `user_id` and their own
    rule for times (`event_time(given, now)`); a browser's get the visit's user and times within
    the event window.
    """
    fresh = _fresh(app, state, events)
    if not fresh:
        return None
    now = state.clock()
    if event_time is None:
        window = state.event_window
        times = [payload.trusted_time(e.get("time"), now, window) for e, _ in fresh]
    else:
        times = [event_time(e.get("time"), now) for e, _ in fresh]
    visit, visitor, known, new_visit = _event_visit(state, tokens, client, now, min(times))
    if user_id is None:
        user_id = app[identity.BINDINGS].users.get(visit)
    if known is not None:
        visitor = visitor or known.visitor_token
        times = [max(t, known.started_at) for t in times]
    records = [
        payload.event_record(
            event,
            visit_token=visit,
            visitor_token=visitor,
            user_id=user_id,
            time=t,
            received_at=now,
            new_id=_new_event_id,
            client_id=event_id,
        )
        for (event, event_id), t in zip(fresh, times, strict=True)
    ]
    new_visit_token = visit if new_visit is not None else None
    try:
        durable = _append(app[WRITER], records, new_visit)
    except BaseException:
        _unmark(state, records, new_visit_token)
        raise
    return _Storing(durable, records, new_visit_token)


def _unmark(state: AhoyState, records: list[dict[str, Any]], new_visit: str | None) -> None:
    """Undo marking the events (and their new visit) as seen: they were not stored."""
    for record in records:
        state.event_ids.pop(record["event_id"])
    if new_visit is not None:
        _forget_visit(state, new_visit)


def _event_visit(
    state: AhoyState, tokens: payload.Tokens, client: Client, now: datetime, first: datetime
) -> tuple[str, str | None, KnownVisit | None, dict[str, Any] | None]:
    """(visit, visitor, what is known of the visit, its new row if the event creates it)."""
    settings = state.settings
    visitor: str | None
    if settings.cookieless:
        visit, visitor, _new = _cookieless_tokens(tokens, client, state, settings, now)
    else:
        visit, visitor = str(tokens.visit), tokens.visitor
    known = state.visits.get(visit)
    if known is not None or not settings.server_side_visits:
        return visit, visitor, known, None
    _remember_visit(state, visit, visitor, first)
    row = payload.visit_record(
        {}, visit_token=visit, visitor_token=visitor, user_id=None, started_at=first
    )
    return visit, visitor, KnownVisit(first, visitor), _enriched(row, client, state)


def _append(
    writer: LogWriter, records: list[dict[str, Any]], visit: dict[str, Any] | None
) -> Awaitable[Any]:
    """The events' append (with their new visit's, if any), to await: no coroutine of its own."""
    if visit is None:
        return writer.append_async("events", records)
    return asyncio.gather(
        writer.append_async("visits", [visit]), writer.append_async("events", records)
    )


def _accepted(app: web.Application, storing: _Storing) -> None:
    """Count the durable records (the store's listeners have heard of them already)."""
    app[METRICS].inc("events_total", None, len(storing.records))
    if storing.new_visit is not None:
        app[METRICS].inc("visits_total")


async def _warm_parser(app: web.Application) -> AsyncIterator[None]:
    """Compile the user-agent parser's patterns before serving (the first parse takes ~1 s)."""
    await asyncio.to_thread(enrich.parse_user_agent, "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0")
    yield


def mount(app: web.Application, settings: Settings) -> None:
    """Add the two Ahoy endpoints (with and without a trailing slash) and their state."""
    app[AHOY] = AhoyState(settings)
    app[INTAKE] = EventIntake(app)
    app.cleanup_ctx.append(_warm_parser)
    for path in ("/ahoy/visits", "/ahoy/visits/"):
        app.router.add_post(path, post_visit)
    for path in ("/ahoy/events", "/ahoy/events/"):
        app.router.add_post(path, post_events)
