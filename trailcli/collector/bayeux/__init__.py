"""The Faye-compatible Bayeux server at `/faye`: `mount(app, settings)` adds it to the collector.

A held long-poll whose client goes away is noticed at once when the runner has
`handler_cancellation=True`, and within `WATCH_PERIOD` otherwise (DESIGN.md `transport_closed`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from trailcli.collector.bayeux.engine import Engine, EngineConfig
from trailcli.collector.bayeux.transports import FayeEndpoint

MOUNT = "/faye"
BAYEUX_ENGINE = web.AppKey("bayeux_engine", Engine)
BAYEUX_ENDPOINT = web.AppKey("bayeux_endpoint", FayeEndpoint)
WATCH_PERIOD = 0.1  # seconds between checks for held long-polls whose client went away
DEFAULT_CLIENT_JS = Path("node_modules/faye/client/faye-browser-min.js")


def config_from_settings(settings: Any) -> EngineConfig:
    """The engine's settings from the collector's settings object (missing fields: defaults)."""
    defaults = EngineConfig()
    names = {  # engine field: collector setting
        "timeout": "bayeux_timeout",
        "grace": "grace",
        "open_publish": "open_publish",
        "max_message_bytes": "bayeux_max_message_bytes",
        "max_queued_messages": "bayeux_max_queued",
        "max_clients": "bayeux_max_clients",
        "max_subscriptions": "bayeux_max_subscriptions",
    }
    values = {f: getattr(settings, s, getattr(defaults, f)) for f, s in names.items()}
    return EngineConfig(secret=getattr(settings, "secret", None) or None, **values)


def mount(app: web.Application, settings: Any) -> Engine:
    """Serve Bayeux at `/faye` on `app`; the engine is `app[BAYEUX_ENGINE]`."""
    engine = Engine(config_from_settings(settings))
    client_js = getattr(settings, "faye_client_js", None) or DEFAULT_CLIENT_JS
    endpoint = FayeEndpoint(engine, client_js=Path(client_js))
    app[BAYEUX_ENGINE] = engine
    app[BAYEUX_ENDPOINT] = endpoint
    app.router.add_get(f"{MOUNT}/client.js", endpoint.client_script)
    app.router.add_get(f"{MOUNT}.js", endpoint.client_script)
    app.router.add_route("*", MOUNT, endpoint.handle)
    app.router.add_route("*", MOUNT + "/{tail:.*}", endpoint.handle)
    app.cleanup_ctx.append(_sweeping)
    app.on_shutdown.append(_end_sessions)
    return engine


async def _sweeping(app: web.Application) -> AsyncIterator[None]:
    """End sessions whose transport closed or that went silent, while the app runs."""
    task = asyncio.create_task(_sweep_forever(app[BAYEUX_ENGINE], app[BAYEUX_ENDPOINT]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _end_sessions(app: web.Application) -> None:
    """On shutdown (before in-flight requests are awaited): every session ends with
    `server_shutdown`, held connects are answered and sockets closed."""
    app[BAYEUX_ENGINE].shutdown()
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
            engine.sweep()
