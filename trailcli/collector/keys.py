"""Typed keys of what the collector's parts share on its aiohttp application.

Each part keeps its own state under a key of its own module (`ahoy.AHOY`, `bayeux.BAYEUX_ENGINE`,
`presence_http.TRACKER`, ...); these are the ones every part may read.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from trailcli.collector.metrics import Metrics
from trailcli.collector.settings import Settings
from trailcli.store.wal import LogWriter

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
NODE_ID = web.AppKey("node_id", str)
STARTED_AT = web.AppKey("started_at", float)  # time.time() at start
WRITER = web.AppKey("writer", LogWriter)  # durable once `append_async`'s future is done
# each returns None while its part is well, else the reason /health reports (503 "degraded")
HEALTH_CHECKS = web.AppKey("health_checks", list[Callable[[], str | None]])
