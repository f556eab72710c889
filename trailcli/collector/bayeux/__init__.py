"""The Faye-compatible Bayeux server at `/faye`: `mount(app, settings)` adds it to the collector.

A held long-poll whose client goes away is noticed at once when the runner has
`handler_cancellation=True`, and within `WATCH_PERIOD` otherwise (docs/presence.md, `transport_closed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from trailcli.collector.bayeux.engine import Engine, EngineConfig
from trailcli.collector.bayeux.transports import FayeEndpoint
from trailcli.collector.metrics import Metrics
from trailcli.collector.settings import Settings

MOUNT = "/faye"
BAYEUX_ENGINE = web.AppKey("bayeux_engine", Engine)
BAYEUX_ENDPOINT = web.AppKey("bayeux_endpoint", FayeEndpoint)
WATCH_PERIOD = 0.1  # seconds between checks for held long-polls whose client went away
log = logging.getLogger("trail.bayeux")
DEFAULT_CLIENT_JS = Path("node_modules/faye/client/faye-browser-min.js")


def config_from_settings(settings: Settings) -> EngineConfig:
    """The engine's settings from the collector's settings."""
    return EngineConfig(
        timeout=settings.bayeux_timeout,
        grace=settings.transport_grace,
        secret=settings.secret or None,
        open_publish=settings.open_publish,
        max_message_bytes=settings.bayeux_max_message_bytes,
        max_queued_messages=settings.bayeux_max_queued,
        max_clients=settings.bayeux_max_clients,
        max_subscriptions=settings.bayeux_max_subscriptions,
        max_json_depth=settings.max_json_depth,
        handshakes_per_minute=settings.bayeux_handshakes_per_minute,
        handshake_burst=settings.bayeux_handshake_burst,
        max_sessions_per_address=settings.bayeux_max_sessions_per_address,
        first_connect_timeout=settings.bayeux_first_connect_timeout,
    )


def mount(app: web.Application, settings: Settings, metrics: Metrics | None = None) -> Engine:
    """Serve Bayeux at `/faye` on `app`; the engine is `app[BAYEUX_ENGINE]`, its counters go to
    `metrics` when given."""
    engine: Engine
    if settings.redis:
        from trailcli.collector.bayeux.cluster import ClusterEngine

        engine = ClusterEngine(config_from_settings(settings), node_id=settings.node_id or "node")
        app.cleanup_ctx.append(_clustered)
    else:
        engine = Engine(config_from_settings(settings))
    client_js = settings.faye_client_js or DEFAULT_CLIENT_JS
    endpoint = FayeEndpoint(
        engine,
        client_js=Path(client_js),
        allow_origins=settings.allow_origins,
        trust_proxy=settings.trust_proxy,
    )
    app[BAYEUX_ENGINE] = engine
    app[BAYEUX_ENDPOINT] = endpoint
    app.router.add_get(f"{MOUNT}/client.js", endpoint.client_script)
    app.router.add_get(f"{MOUNT}.js", endpoint.client_script)
    app.router.add_route("*", MOUNT, endpoint.handle)
    app.router.add_route("*", MOUNT + "/{tail:.*}", endpoint.handle)
    app.cleanup_ctx.append(_sweeping)
    app.on_shutdown.append(_end_sessions)
    if metrics is not None:
        _export_metrics(metrics, engine, endpoint)
    return engine


def _export_metrics(metrics: Metrics, engine: Engine, endpoint: FayeEndpoint) -> None:
    """Publish the engine's counters and gauges through the collector's /metrics."""
    for name, kind, text in METRICS_HELP:
        metrics.describe(name, kind, text)

    def scrape(m: Metrics) -> None:
        stats = engine.stats
        m.set("bayeux_clients", len(engine.clients))
        m.set("bayeux_subscriptions", sum(len(c) for c in engine.subscribers.values()))
        m.set("bayeux_queued_messages", sum(len(c.queue) for c in engine.clients.values()))
        m.set("bayeux_held_connects", sum(c.held for c in engine.clients.values()))
        m.set("bayeux_websockets", len(endpoint.sockets))
        for stat, (name, labels) in STAT_METRICS.items():
            m.set(name, stats.get(stat, 0), labels)
        for stat, count in list(stats.items()):
            if stat.startswith("closed_"):
                m.set("bayeux_sessions_closed_total", count, {"reason": stat[7:]})
            elif stat.startswith("errors_"):
                m.set("bayeux_errors_total", count, {"code": stat[7:]})

    metrics.on_scrape(scrape)


METRICS_HELP = [
    ("bayeux_clients", "gauge", "Bayeux sessions open on this node."),
    ("bayeux_subscriptions", "gauge", "Channel subscriptions of those sessions."),
    ("bayeux_queued_messages", "gauge", "Messages queued for delivery."),
    ("bayeux_held_connects", "gauge", "Long-poll connects being held."),
    ("bayeux_websockets", "gauge", "Open Bayeux WebSockets."),
    ("bayeux_messages_total", "counter", "Bayeux messages handled."),
    ("bayeux_sessions_opened_total", "counter", "Successful handshakes."),
    ("bayeux_sessions_closed_total", "counter", "Sessions ended, by reason."),
    ("bayeux_publishes_total", "counter", "Messages published, by source."),
    ("bayeux_deliveries_total", "counter", "Messages queued for subscribers."),
    ("bayeux_errors_total", "counter", "Bayeux error replies, by code."),
    ("bayeux_refused_total", "counter", "Requests refused by a limit, by limit."),
]
STAT_METRICS: dict[str, tuple[str, dict[str, str] | None]] = {
    "messages": ("bayeux_messages_total", None),
    "handshakes": ("bayeux_sessions_opened_total", None),
    "publishes": ("bayeux_publishes_total", {"source": "client"}),
    "server_publishes": ("bayeux_publishes_total", {"source": "server"}),
    "deliveries": ("bayeux_deliveries_total", None),
    "dropped_queue_full": ("drops_total", {"reason": "bayeux_queue_full"}),
    "refused_clients": ("bayeux_refused_total", {"limit": "max_clients"}),
    "refused_subscriptions": ("bayeux_refused_total", {"limit": "max_subscriptions"}),
    "refused_too_large": ("bayeux_refused_total", {"limit": "max_message_bytes"}),
    "bad_requests": ("bayeux_refused_total", {"limit": "bad_request"}),
    "refused_json_depth": ("bayeux_refused_total", {"limit": "max_json_depth"}),
    "refused_handshake_rate": ("bayeux_refused_total", {"limit": "handshakes_per_address"}),
    "refused_sessions_per_address": ("bayeux_refused_total", {"limit": "sessions_per_address"}),
}


async def _sweeping(app: web.Application) -> AsyncIterator[None]:
    """End sessions whose transport closed or that went silent, while the app runs."""
    task = asyncio.create_task(_sweep_forever(app[BAYEUX_ENGINE], app[BAYEUX_ENDPOINT]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _clustered(app: web.Application) -> AsyncIterator[None]:
    """A cluster node's engine: attached to the node's Redis link (opened before), hearing the
    cluster's events while the app runs."""
    from trailcli.collector.bayeux.cluster import ClusterEngine
    from trailcli.collector.redis_link import REDIS

    engine = app[BAYEUX_ENGINE]
    assert isinstance(engine, ClusterEngine)
    engine.attach(app[REDIS])
    task = asyncio.create_task(engine.hear_events())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await engine.close()


async def _end_sessions(app: web.Application) -> None:
    """On shutdown (before in-flight requests are awaited): every session ends with
    `server_shutdown`, held connects are answered and sockets closed."""
    await app[BAYEUX_ENGINE].stop()
    await app[BAYEUX_ENDPOINT].close_sockets()


async def _sweep_forever(engine: Engine, endpoint: FayeEndpoint) -> None:
    period = max(0.05, min(1.0, engine.config.grace / 4, engine.config.timeout / 4))
    watch = WATCH_PERIOD
    since_sweep = 0.0
    while True:
        await asyncio.sleep(watch)
        endpoint.cancel_abandoned_holds()
        since_sweep += watch
        if since_sweep >= period:
            since_sweep = 0.0
            try:
                await engine.upkeep()
            except Exception:
                log.exception("Bayeux upkeep failed")
