"""Presence in the collector: Bayeux sessions become presence rows, live channels and /api/online.

The tracker observes the Bayeux engine and writes one row per client transition (docs/presence.md,
Presence semantics) through the store writer, plus a per-node heartbeat. At start it closes the
sessions a crash left open (`node_lost`). It keeps the live per-person view
(`trailcli.presence.live`), publishes its joins and leaves on `/trail/presence` and each accepted
event on `/trail/events` to watchers holding the API token, and answers `GET /api/online` and
`POST /api/presence/identify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import time as _time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from trailcli.collector import identity, keys
from trailcli.collector.ahoy_payload import loads as payload_json
from trailcli.collector.ahoy_payload import sanitize_token
from trailcli.collector.bayeux import BAYEUX_ENGINE, channels
from trailcli.collector.metrics import Metrics
from trailcli.collector.settings import Settings
from trailcli.errors import TrailError
from trailcli.presence.live import Binding, Change, LiveView

log = logging.getLogger("trail.presence")

PRESENCE_CHANNEL = "/trail/presence"
EVENTS_CHANNEL = "/trail/events"


@functools.cache
def _patterns(channel: str) -> tuple[str, ...]:
    """The subscriptions that receive `channel` (asked on every accepted event; two channels)."""
    return tuple(channels.expand(channel))


MAX_CLIENT_ID = 64
IDENTIFIED, UNKNOWN_CLIENT, OTHER_VISIT = "identified", "unknown_client", "other_visit"
MAX_PENDING_ROWS = 200_000  # rows waiting for the store before new ones are dropped (counted)
TICK_SECONDS = 0.5  # how often due leaves are published
MAX_OUTBOX = 10_000  # live-channel messages waiting to be published before new ones are dropped
COALESCE_SECONDS = 0.02  # rows gathered this long before an append (they answer no request)
WARN_EVERY_SECONDS = 60.0  # ignored claims are counted always, logged at most this often

Clock = Callable[[], datetime]

# Set by the handshake's incoming extension, read by `client_opened` in the same task: whether the
# handshake carried the API token (the engine strips the token before observers see `ext`).
_handshake_has_token: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trail_handshake_has_token", default=False
)


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- pure: what a handshake or an identify request says -----------------------------------------


def binding_from(
    fields: Mapping[str, Any], secret: str | None
) -> tuple[Binding, list[str], str | None]:
    """The binding a handshake `ext` (or an identify body) claims, the claims it ignored, and the
    user id of a correctly signed `user_token` (None without one).

    Accepted: `trail.visit_token`, `trail.visitor_token`, `trail.user_token` (signed), the same
    keys at the top level, and the older `visit_id`/`visitor_id` names. A user id is taken only
    from a signed token; an unsigned `user_id` or a badly signed token is ignored and named in the
    returned claims (`unsigned_user_id`, `bad_user_token`).
    """
    trail = fields.get("trail")
    nested: Mapping[str, Any] = trail if isinstance(trail, Mapping) else {}

    def pick(*names: str) -> Any:
        for source in (nested, fields):
            for name in names:
                if source.get(name) not in (None, ""):
                    return source.get(name)
        return None

    ignored: list[str] = []
    user_token = pick("user_token")
    user_id = identity.verify_user_token(user_token, secret) if user_token is not None else None
    if user_token is not None and user_id is None:
        ignored.append("bad_user_token")
    if pick("user_id") is not None:
        ignored.append("unsigned_user_id")
    binding = Binding(
        visit_token=sanitize_token(pick("visit_token", "visit_id")),
        visitor_token=sanitize_token(pick("visitor_token", "visitor_id")),
        user_id=user_id,
    )
    return binding, ignored, user_id


def covers_live_channels(pattern: str) -> bool:
    """Whether a subscription could receive `/trail/**` messages (and so needs the API token)."""
    return pattern == "/**" or pattern == "/trail" or pattern.startswith("/trail/")


def _properties_object(record: Mapping[str, Any]) -> Any:
    """An events record's properties as stored (JSON text) turned back into a value."""
    properties = record.get("properties")
    if isinstance(properties, str):
        with contextlib.suppress(ValueError):
            properties = payload_json(properties)
    return properties


def event_message(record: Mapping[str, Any], properties: Any) -> dict[str, Any]:
    """An accepted event as `/trail/events` carries it, properties as an object."""
    when = record.get("time")
    return {
        "event_id": record.get("event_id"),
        "visit_token": record.get("visit_token"),
        "visitor_token": record.get("visitor_token"),
        "user_id": record.get("user_id"),
        "name": record.get("name"),
        "properties": properties,
        "time": when.isoformat() if isinstance(when, datetime) else when,
    }


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _as_datetime(datetime.fromisoformat(value))
    return None


# --- the tracker --------------------------------------------------------------------------------


class PresenceTracker:
    """Observer of the Bayeux engine that records presence and keeps the live view.

    Observer methods are synchronous and never block: rows go to an in-memory queue that one
    task appends to the store in order, and live-channel messages go to a second queue.
    """

    def __init__(
        self,
        *,
        node_id: str,
        writer: Any,
        settings: Settings,
        metrics: Metrics,
        app: web.Application | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.node_id = node_id
        self.writer = writer
        self.settings = settings
        self.metrics = metrics
        self.app = app
        self.clock = clock
        self.live = LiveView(
            timedelta(seconds=settings.grace), max_visits=settings.visit_cache_size
        )
        self.engine: Any = None
        self.watchers: set[str] = set()
        self._seq = 0
        self._rows: list[tuple[str, dict[str, Any]]] = []
        self._rows_ready = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(MAX_OUTBOX)
        self._warned_at = -WARN_EVERY_SECONDS
        self._tasks: list[asyncio.Task[None]] = []
        self._side_writes: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._last_heartbeat = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, engine: Any | None) -> None:
        """Close what a crash left open, write the start heartbeat, then begin observing."""
        try:
            recovered = await asyncio.to_thread(
                unclosed_sessions, self.settings.data_dir, self.node_id
            )
        except TrailError as exc:  # collecting goes on; the sessions stay open in the log
            self.metrics.inc("presence_recovery_errors_total")
            log.error("cannot close the sessions a crash left open: %s", exc)
            recovered = Recovered([], None, 0)
        now = self.clock()
        self._seq = max(recovered.max_seq + 1, _micros(now))
        for session in recovered.sessions:
            self._enqueue(
                "offline",
                time=session.ended_at(recovered.last_heartbeat),
                detected_at=now,
                client_id=session.client_id,
                reason="node_lost",
                binding=session.binding,
            )
        if recovered.sessions:
            log.warning(
                "closed %d sessions left open by a crash (node_lost)", len(recovered.sessions)
            )
        self._heartbeat(now)
        await self._write_pending()  # durable before any new session is observed
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="presence-writer"),
            asyncio.create_task(self._publish_loop(), name="presence-publisher"),
            asyncio.create_task(self._tick_loop(), name="presence-ticker"),
        ]
        if engine is not None:
            self.engine = engine
            engine.add_extension(LiveChannelGuard(self))
            engine.add_observer(self)

    def shut_down(self) -> None:
        """The server is stopping (SIGTERM): every open session ends now with `server_shutdown`."""
        now = self.clock()
        for client_id in self.live.session_ids():
            self.client_closed(client_id, "server_shutdown", now, now)
        self._stopping = True

    async def stop(self) -> None:
        """Write every queued row, then stop the background tasks."""
        if not self._stopping:
            self.shut_down()
        writer_task, *others = self._tasks
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._rows_ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            await writer_task
        if self._side_writes:
            await asyncio.gather(*self._side_writes, return_exceptions=True)
        await self._write_pending()

    # -- engine observer --------------------------------------------------------------------------

    def client_opened(self, client_id: str, ext: dict[str, Any], now: datetime) -> None:
        if _handshake_has_token.get():
            _handshake_has_token.set(False)
            self.watchers.add(client_id)
        if self._stopping:
            return
        binding, ignored, user_id = binding_from(ext, self.settings.secret)
        self.count_ignored(ignored, "handshake")
        self._enqueue("online", time=now, client_id=client_id, reason="handshake", binding=binding)
        self._announce(self.live.open(client_id, binding, now))
        self._bind_user(binding, user_id, now)

    def client_subscribed(self, client_id: str, channel: str, now: datetime) -> None:
        if self._stopping or not self.live.has_session(client_id):
            return
        self.live.subscribe(client_id, channel)
        binding = self.live.session_binding(client_id)
        self._enqueue("subscribe", time=now, client_id=client_id, channel=channel, binding=binding)

    def client_unsubscribed(self, client_id: str, channel: str, now: datetime) -> None:
        if self._stopping or not self.live.has_session(client_id):
            return
        self.live.unsubscribe(client_id, channel)
        binding = self.live.session_binding(client_id)
        self._enqueue(
            "unsubscribe", time=now, client_id=client_id, channel=channel, binding=binding
        )

    def client_closed(
        self, client_id: str, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        self.watchers.discard(client_id)
        binding = self.live.session_binding(client_id)
        if binding is None:
            return  # never seen, or already closed (e.g. by shut_down)
        self._enqueue(
            "offline",
            time=last_alive,
            detected_at=now,
            client_id=client_id,
            reason=reason,
            binding=binding,
        )
        self._announce(self.live.close(client_id, last_alive, now))

    # -- identify (POST /api/presence/identify) --------------------------------------------------

    def identify(self, client_id: str, binding: Binding, user_id: str | None) -> str:
        """Bind a live session to a visit: `IDENTIFIED`, or why not (`UNKNOWN_CLIENT` when the
        session is not open on this node, `OTHER_VISIT` when it is bound to another visit)."""
        before = self.live.session_binding(client_id)
        if before is None or self._stopping:
            return UNKNOWN_CLIENT
        if before.visit_token and binding.visit_token not in (None, before.visit_token):
            return OTHER_VISIT
        now = self.clock()
        changes = self.live.bind(client_id, binding, now)
        after = self.live.session_binding(client_id)
        if after != before:
            self._enqueue("identify", time=now, client_id=client_id, binding=after)
        self._announce(changes)
        self._bind_user(after or binding, user_id, now)
        return IDENTIFIED

    # -- records accepted by the rest of the collector (visits, events, identities) ---------------

    def records_written(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Feed the live view and `/trail/events` with records the store has just accepted."""
        if kind == "visits":
            for r in records:
                if r.get("visit_token"):
                    self.live.record_visit(r["visit_token"], r)
        elif kind == "events":
            self.events_accepted(records, [_properties_object(r) for r in records])
        elif kind == "identities":
            now = self.clock()
            for r in records:
                if r.get("visit_token") and r.get("user_id"):
                    self._announce(self.live.identify_visit(r["visit_token"], r["user_id"], now))

    def events_accepted(self, records: Sequence[Mapping[str, Any]], properties: list[Any]) -> None:
        """Events the store has just accepted, with each one's properties as a value."""
        watched = self._has_watchers(EVENTS_CHANNEL)
        for r, props in zip(records, properties, strict=True):
            if r.get("name") == "$view" and (when := _as_datetime(r.get("time"))):
                self.live.record_event(r.get("visit_token"), "$view", props, when)
            if watched:
                self._publish_later(EVENTS_CHANNEL, event_message(r, props))

    # -- internals --------------------------------------------------------------------------------

    def _bind_user(self, binding: Binding, user_id: str | None, now: datetime) -> None:
        """A signed user token on a session bound to a visit: an identity row (source presence)."""
        if user_id and binding.visit_token and self.app is not None:
            task = identity.bind(
                self.app, binding.visit_token, user_id, "presence", binding.visitor_token, now
            )
            side = asyncio.create_task(_logged(task, "identity row"))
            self._side_writes.add(side)
            side.add_done_callback(self._side_writes.discard)

    def count_ignored(self, ignored: list[str], where: str) -> None:
        for claim in ignored:
            self.metrics.inc("presence_ignored_claims_total", {"claim": claim, "where": where})
        if ignored and _time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = _time.monotonic()
            log.warning(
                "ignored %s in a presence %s (only signed user tokens bind users; counted in "
                "trail_presence_ignored_claims_total, logged at most once a minute)",
                ", ".join(ignored),
                where,
            )

    def _enqueue(
        self,
        transition: str,
        *,
        time: datetime,
        detected_at: datetime | None = None,
        client_id: str | None = None,
        reason: str | None = None,
        channel: str | None = None,
        binding: Binding | None = None,
    ) -> None:
        if len(self._rows) >= MAX_PENDING_ROWS:
            self.metrics.inc("drops_total", {"reason": "presence_backlog"})
            return
        b = binding or Binding()
        self._seq += 1
        row = {
            "time": time,
            "seq": self._seq,
            "node_id": self.node_id,
            "client_id": client_id,
            "transition": transition,
            "reason": reason,
            "channel": channel,
            "visit_token": b.visit_token,
            "visitor_token": b.visitor_token,
            "user_id": b.user_id,
            "detected_at": detected_at or time,
        }
        self._rows.append(("presence", row))
        self._rows_ready.set()
        self.metrics.inc("presence_rows_total", {"transition": transition})

    def _heartbeat(self, now: datetime) -> None:
        self._last_heartbeat = _time.monotonic()
        self._enqueue("heartbeat", time=now)

    def _announce(self, changes: list[Change]) -> None:
        if changes and self._has_watchers(PRESENCE_CHANNEL):
            for change in changes:
                self._publish_later(PRESENCE_CHANNEL, change.message())
        for change in changes:
            self.metrics.inc("presence_changes_total", {"type": change.type})

    def _publish_later(self, channel: str, data: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.metrics.inc("drops_total", {"reason": "live_channel_backlog"})

    def _has_watchers(self, channel: str) -> bool:
        if self.engine is None:
            return False
        patterns = _patterns(channel)  # Bayeux subscribers, then in-process listeners
        return any(map(self.engine.subscribers.get, patterns)) or any(
            map(self.engine.listeners.get, patterns)
        )

    async def _write_loop(self) -> None:
        while not (self._stopping and not self._rows):
            await self._rows_ready.wait()
            if not self._stopping:
                await asyncio.sleep(COALESCE_SECONDS)  # fewer, larger appends under load
            self._rows_ready.clear()
            await self._write_pending()

    async def _write_pending(self) -> None:
        """Append queued rows in order; on a store error keep them and retry (keys dedupe repeats)."""
        while self._rows:
            batch, self._rows = self._rows, []
            try:
                for kind, records in _runs(batch):
                    await self.writer.append_async(kind, records)
            except Exception as exc:
                self._rows = batch + self._rows
                self.metrics.inc("presence_write_errors_total")
                log.error("presence rows not written yet (%s); retrying", exc)
                if self._stopping:
                    return
                await asyncio.sleep(1.0)

    async def _publish_loop(self) -> None:
        while True:
            channel, data = await self._outbox.get()
            try:
                await self.engine.publish(channel, data)
            except Exception:
                log.exception("publishing on %s failed", channel)

    async def _tick_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(min(TICK_SECONDS, interval))
            now = self.clock()
            self._announce(self.live.due(now))
            if _time.monotonic() - self._last_heartbeat >= interval:
                self._heartbeat(now)


def _runs(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive rows of one kind grouped, order kept."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for kind, row in batch:
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(row)
        else:
            runs.append((kind, [row]))
    return runs


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


async def _logged(work: Any, what: str) -> None:
    try:
        await work
    except Exception:
        log.exception("writing the %s failed", what)


# --- node_lost recovery -------------------------------------------------------------------------


class UnclosedSession:
    """A session of this node with an online row and no offline row."""

    def __init__(self, client_id: str, binding: Binding, last_activity: datetime) -> None:
        self.client_id = client_id
        self.binding = binding
        self.last_activity = last_activity

    def ended_at(self, last_heartbeat: datetime | None) -> datetime:
        """The last moment known alive: the later of the node's last heartbeat and its activity."""
        if last_heartbeat is None:
            return self.last_activity
        return max(last_heartbeat, self.last_activity)


class Recovered:
    def __init__(
        self, sessions: list[UnclosedSession], last_heartbeat: datetime | None, max_seq: int
    ) -> None:
        self.sessions = sessions
        self.last_heartbeat = last_heartbeat
        self.max_seq = max_seq


def unclosed_sessions(data_dir: Any, node_id: str) -> Recovered:
    """What a previous run of `node_id` left open, read from the presence table (WAL recovered)."""
    from trailcli import sql
    from trailcli.errors import NoDataError
    from trailcli.store import views

    try:
        con = views.connect(data_dir, need=("presence",))
    except NoDataError:
        return Recovered([], None, 0)
    try:
        rows = views.run(
            con, sql.load("tracker_unclosed_sessions"), {"node_id": node_id}
        ).fetchall()
    finally:
        con.close()
    sessions = [
        UnclosedSession(
            client_id,
            Binding(visit_token, visitor_token, user_id),
            _as_datetime(last_activity) or datetime.min.replace(tzinfo=UTC),
        )
        for client_id, visit_token, visitor_token, user_id, last_activity, _, _ in rows
        if client_id is not None
    ]
    last_heartbeat = _as_datetime(rows[0][5]) if rows else None
    max_seq = int(rows[0][6]) if rows and rows[0][6] is not None else 0
    return Recovered(sessions, last_heartbeat, max_seq)


# --- the /trail/** guard ------------------------------------------------------------------------


class LiveChannelGuard:
    """Bayeux extension: subscribing to `/trail/**` (or `/**`) needs the API token in
    `ext.trail.token`, on that subscribe or on the client's handshake."""

    def __init__(self, tracker: PresenceTracker) -> None:
        self.tracker = tracker

    async def incoming(self, message: dict[str, Any], context: Any) -> None:
        channel = message.get("channel")
        if channel == "/meta/handshake":
            _handshake_has_token.set(self._has_token(message))
        elif channel == "/meta/subscribe":
            self._check_subscribe(message)

    def _has_token(self, message: dict[str, Any]) -> bool:
        ext = message.get("ext")
        trail = ext.get("trail") if isinstance(ext, dict) else None
        token = trail.get("token") if isinstance(trail, dict) else None
        return isinstance(token, str) and identity.tokens_equal(
            token, self.tracker.settings.api_token
        )

    def _check_subscribe(self, message: dict[str, Any]) -> None:
        wanted = message.get("subscription")
        patterns = wanted if isinstance(wanted, list) else [wanted]
        guarded = [p for p in patterns if isinstance(p, str) and covers_live_channels(p)]
        if not guarded:
            return
        client_id = message.get("clientId")
        if client_id in self.tracker.watchers:
            return
        if self._has_token(message) and isinstance(client_id, str):
            if client_id in getattr(self.tracker.engine, "clients", {}):
                self.tracker.watchers.add(client_id)
            return
        self.tracker.metrics.inc("presence_refused_watchers_total")
        message["error"] = (
            f"403:{guarded[0]}:Forbidden channel (the API token is required in ext.trail.token)"
        )


# --- HTTP ---------------------------------------------------------------------------------------

TRACKER = web.AppKey("presence_tracker", PresenceTracker)


def _json_error(status: int, message: str, hint: str) -> web.Response:
    return web.json_response({"error": message, "hint": hint}, status=status)


async def _request_fields(request: web.Request) -> Mapping[str, Any] | None:
    """A JSON object body, or form fields (as the old jQuery `$.post` sent them)."""
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, RecursionError):
            return None
        return body if isinstance(body, dict) else None
    try:
        form = await request.post()
    except ValueError:
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def identify_session(request: web.Request) -> web.Response:
    """POST /api/presence/identify {client_id, visit_token[, visitor_token, user_token]}.

    The browser binds its own Bayeux session to its visit. Knowing the (unguessable) client id is
    the authorisation, as with the endpoint it replaces; the session must be open on this node.
    """
    tracker = request.app[TRACKER]
    limit = request.app[keys.SETTINGS].max_content_length
    if request.content_length is not None and request.content_length > limit:
        return _json_error(413, f"Body over {limit} bytes.", "send only client_id and visit_token")
    fields = await _request_fields(request)
    if fields is None:
        return _json_error(
            400, "Body must be a JSON object or a form.", '{"client_id", "visit_token"}'
        )
    client_id = fields.get("client_id")
    binding, ignored, user_id = binding_from(fields, tracker.settings.secret)
    tracker.count_ignored(ignored, "identify")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
        return _json_error(400, "client_id is required.", "the Faye client's clientId")
    if not binding.visit_token:
        return _json_error(
            400, "visit_token is required.", "ahoy.js keeps it in the ahoy_visit cookie"
        )
    outcome = tracker.identify(client_id, binding, user_id)
    if outcome == UNKNOWN_CLIENT:
        return _json_error(
            404, "No open session with this client_id on this node.", "handshake first"
        )
    if outcome == OTHER_VISIT:
        return _json_error(
            409, "This session is already bound to another visit.", "handshake a new session"
        )
    return web.json_response({"client_id": client_id, "visit_token": binding.visit_token})


async def online_now(request: web.Request) -> web.Response:
    """GET /api/online (API token): who is online now, as `trail online --at now --format json`."""
    identity.require_api_token(request)
    rows = request.app[TRACKER].live.online()
    for row in rows:
        row["online_since"] = row["online_since"].isoformat()
    return web.json_response(rows, headers={"Cache-Control": "no-store"})


# --- mounting -----------------------------------------------------------------------------------


_OBSERVED_KINDS = frozenset(("visits", "identities"))


class _ObservedWriter:
    """The store writer, telling the tracker about every batch once it is durable."""

    def __init__(self, inner: Any, tracker: PresenceTracker) -> None:
        self._inner = inner
        self._tracker = tracker

    def append_async(self, kind: str, records: Sequence[Mapping[str, Any]]) -> Awaitable[Any]:
        if kind not in _OBSERVED_KINDS:  # events reach the tracker through keys.EVENT_HOOKS
            return self._inner.append_async(kind, records)
        return self._append_observed(kind, records)

    async def _append_observed(self, kind: str, records: Sequence[Mapping[str, Any]]) -> Any:
        result = await self._inner.append_async(kind, records)
        self._notify(kind, records)
        return result

    def append(self, kind: str, records: Sequence[Mapping[str, Any]]) -> Any:
        result = self._inner.append(kind, records)
        self._notify(kind, records)
        return result

    def close(self) -> Any:
        return self._inner.close()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._inner.stats()
        return stats

    def _notify(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        if kind in _OBSERVED_KINDS:
            try:
                self._tracker.records_written(kind, records)
            except Exception:
                log.exception("live view update for %s failed", kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


COUNTERS = {
    "presence_rows_total": "Presence rows written, by transition.",
    "presence_changes_total": "Per-person joins and leaves of the live view.",
    "presence_ignored_claims_total": "Unsigned or badly signed user claims ignored, by claim.",
    "presence_refused_watchers_total": "Subscriptions to /trail/** refused for lack of the token.",
    "presence_write_errors_total": "Failed appends of presence rows (retried).",
    "presence_recovery_errors_total": "Starts where the node_lost recovery could not read the log.",
}


def _tracker_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def tracker_ctx(app: web.Application) -> AsyncIterator[None]:
        writer = app[keys.WRITER]
        tracker = PresenceTracker(
            node_id=app[keys.NODE_ID],
            writer=writer,
            settings=settings,
            metrics=app[keys.METRICS],
            app=app,
        )
        app[TRACKER] = tracker
        observed: keys.RecordWriter = _ObservedWriter(writer, tracker)
        app[keys.WRITER] = observed
        metrics = app[keys.METRICS]
        metrics.gauge_fn(
            "presence_sessions", lambda: len(tracker.live.session_ids()), "Open Bayeux sessions."
        )
        metrics.gauge_fn("presence_persons", tracker.live.persons_count, "Persons online now.")
        for name, help in COUNTERS.items():
            metrics.describe(name, "counter", help)
        await tracker.start(app.get(BAYEUX_ENGINE))
        yield
        await tracker.stop()

    return tracker_ctx


def _events_hook(app: web.Application) -> keys.EventHook:
    def accepted(records: list[dict[str, Any]], properties: list[Any]) -> None:
        tracker = app.get(TRACKER)
        if tracker is not None:
            tracker.events_accepted(records, properties)

    return accepted


async def _on_shutdown(app: web.Application) -> None:
    tracker = app.get(TRACKER)
    if tracker is not None:
        tracker.shut_down()


def mount(app: web.Application, settings: Settings) -> None:
    """Add the presence tracker: its lifecycle, `/api/online` and `/api/presence/identify`."""
    app.cleanup_ctx.append(_tracker_ctx(settings))
    if keys.EVENT_HOOKS in app:
        app[keys.EVENT_HOOKS].append(_events_hook(app))
    app.on_shutdown.append(_on_shutdown)
    app.router.add_post("/api/presence/identify", identify_session)
    app.router.add_get("/api/online", online_now)
