"""The presence tracker on the app: its lifecycle, `GET /api/online` and `POST /api/presence/identify`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from trailcli.collector import identity, keys
from trailcli.collector.bayeux.engine import Engine
from trailcli.collector.cluster import CLUSTER
from trailcli.collector.http import json_error, request_fields
from trailcli.collector.presence_claims import binding_from
from trailcli.collector.presence_tracker import (
    OTHER_VISIT,
    UNKNOWN_CLIENT,
    PresenceTracker,
)

MAX_CLIENT_ID = 64

TRACKER = web.AppKey("presence_tracker", PresenceTracker)


async def identify_session(request: web.Request) -> web.Response:
    """POST /api/presence/identify {client_id, visit_token[, visitor_token, user_token]}.

    The browser binds its own Bayeux session to its visit. Knowing the (unguessable) client id is
    the authorisation, as with the endpoint it replaces; the session must be open on this node.
    """
    tracker = request.app[TRACKER]
    limit = request.app[keys.SETTINGS].max_content_length
    if request.content_length is not None and request.content_length > limit:
        raise json_error(413, f"Body over {limit} bytes.", "send only client_id and visit_token")
    fields = await request_fields(request)
    if fields is None:
        raise json_error(
            400, "Body must be a JSON object or a form.", '{"client_id", "visit_token"}'
        )
    client_id = fields.get("client_id")
    settings = tracker.settings
    binding, ignored, user_id = binding_from(
        fields, settings.secret, settings.accept_unscoped_user_tokens
    )
    tracker.count_ignored(ignored, "identify")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise json_error(400, "client_id is required.", "the Faye client's clientId")
    if not binding.visit_token:
        raise json_error(
            400, "visit_token is required.", "ahoy.js keeps it in the ahoy_visit cookie"
        )
    outcome = await tracker.identify_anywhere(client_id, binding, user_id)
    if outcome == UNKNOWN_CLIENT:
        raise json_error(404, "No open session with this client_id.", "handshake first")
    if outcome == OTHER_VISIT:
        raise json_error(
            409, "This session is already bound to another visit.", "handshake a new session"
        )
    return web.json_response({"client_id": client_id, "visit_token": binding.visit_token})


async def online_now(request: web.Request) -> web.Response:
    """GET /api/online (API token): who is online now, as `trail online --at now --format json`."""
    identity.require_api_token(request)
    tracker = request.app[TRACKER]
    rows = tracker.online_rows()
    cluster = request.app.get(CLUSTER)
    if cluster is not None and cluster.link.up:
        from redis.exceptions import RedisError

        try:  # the whole cluster; this node's own rows alone while Redis is away
            rows = await cluster.online(tracker.live.online())
        except (RedisError, OSError) as exc:
            cluster.link.failed(exc)
    return web.json_response(rows, headers={"Cache-Control": "no-store"})


COUNTERS = {
    "presence_rows_total": "Presence rows written, by transition.",
    "presence_changes_total": "Per-person joins and leaves of the live view.",
    "presence_ignored_claims_total": "Unsigned or badly signed user claims ignored, by claim.",
    "user_tokens_refused_total": "User tokens refused, by reason and place.",
    "user_tokens_unscoped_total": "User tokens accepted in the older format naming no visit.",
    "presence_refused_watchers_total": "Subscriptions to /trail/** refused for lack of the token.",
    "presence_write_errors_total": "Failed appends of presence rows (retried).",
    "presence_recovery_errors_total": "Starts where the node_lost recovery could not read the log.",
}


def _tracker_ctx(
    tracker: PresenceTracker, engine: Engine
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def tracker_ctx(app: web.Application) -> AsyncIterator[None]:
        metrics = app[keys.METRICS]
        metrics.gauge_fn(
            "presence_sessions", lambda: len(tracker.live.session_ids()), "Open Bayeux sessions."
        )
        metrics.gauge_fn("presence_persons", tracker.live.persons_count, "Persons online now.")
        for name, help in COUNTERS.items():
            metrics.describe(name, "counter", help)
        cluster = app.get(CLUSTER)
        if cluster is not None:
            metrics.gauge_fn(
                "presence_forwards_dropped",
                lambda: cluster.forward_drops,
                "Session events for another node that found no owner (the session had ended, or "
                "its node died) or were lost with Redis.",
            )
        await tracker.start(app[keys.WRITER], app[keys.NODE_ID], engine, cluster)
        yield
        await tracker.stop()

    return tracker_ctx


def mount(app: web.Application, tracker: PresenceTracker, engine: Engine) -> None:
    """Add the presence tracker: its lifecycle, `/api/online` and `/api/presence/identify`."""
    app[TRACKER] = tracker
    app.cleanup_ctx.append(_tracker_ctx(tracker, engine))
    app.on_shutdown.append(_on_shutdown)
    app.router.add_post("/api/presence/identify", identify_session)
    app.router.add_get("/api/online", online_now)


async def _on_shutdown(app: web.Application) -> None:
    app[TRACKER].shut_down()
