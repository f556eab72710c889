"""The one app factory: settings, metrics, store writer, background upkeep and every mount."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from trailcli.collector import ahoy, bayeux, cors, dashboard, identity, presence_http, server_api
from trailcli.collector.allocators import tune_allocators
from trailcli.collector.dashboard import REPORTS, Reports
from trailcli.collector.keys import (
    HEALTH_CHECKS,
    METRICS,
    NODE_ID,
    SETTINGS,
    STARTED_AT,
    WRITER,
)
from trailcli.collector.metrics import Metrics, Series
from trailcli.collector.presence_tracker import PresenceTracker
from trailcli.collector.settings import Settings
from trailcli.errors import DiskFull, NoDataError, TrailError
from trailcli.presence import snapshots
from trailcli.store import maintenance
from trailcli.store.disk import is_disk_full
from trailcli.store.group_commit import DurableListener
from trailcli.store.wal import LogWriter

log = logging.getLogger("trail.collect")
# Drops the days past the retention: (data dir, now) -> a summary line. `trail collect` hands it
# over (trailcli.retention, which may use the reports the collector may not).
Purge = Callable[[Path, datetime], str]
PURGE: web.AppKey[Purge] = web.AppKey("retention_purge")


def create_app(
    settings: Settings, *, reports: Reports | None = None, purge: Purge | None = None
) -> web.Application:
    """Build the collector: shared keys, /health and /metrics, the store, maintenance, every mount.

    `reports` answers the dashboard's report questions (the collector never imports them);
    `purge` drops the days past `settings.retention` in the daily upkeep.
    """
    tune_allocators()  # before deltalake and pyarrow load
    # aiohttp's own body cap; each endpoint enforces its own, smaller limit
    app = web.Application(client_max_size=max(settings.max_content_length, 1 << 20))
    app[SETTINGS] = settings
    if reports is not None:
        app[REPORTS] = reports
    if purge is not None:
        app[PURGE] = purge
    elif settings.retention:
        log.warning("a retention is set but this app was given no purge: no day is deleted")
    app[METRICS] = _new_metrics()
    app.on_response_prepare.append(_response_hook(app[METRICS], settings.allow_origins))
    app[STARTED_AT] = time.time()
    app[HEALTH_CHECKS] = []
    if settings.redis:
        from trailcli.collector.cluster import cluster_ctx
        from trailcli.collector.redis_link import redis_ctx

        app.cleanup_ctx.append(redis_ctx)  # first: what is shared through Redis needs it
        app.cleanup_ctx.append(cluster_ctx)  # refused here when the node id is live
    tracker = PresenceTracker(settings=settings, metrics=app[METRICS], app=app)
    # the one subscription to durable records: the live view and /trail/events hear of them
    app.cleanup_ctx.append(_store_ctx(listeners=[tracker]))
    if settings.compact:
        app.cleanup_ctx.append(_maintenance_ctx)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_endpoint)
    ahoy.mount(app, settings)
    identity.mount(app, settings)
    server_api.mount(app, settings)  # after the two above: it uses their state
    engine = bayeux.mount(app, settings, app[METRICS])
    presence_http.mount(app, tracker, engine)
    dashboard.mount(app, settings)
    cors.add_preflight_routes(app)
    gc_tuning = GcTuning()
    app.on_startup.append(gc_tuning.start)  # after every startup step, warm-ups included
    app.on_cleanup.append(gc_tuning.stop)
    return app


def _new_metrics() -> Metrics:
    m = Metrics()
    m.describe("http_requests_total", "counter", "HTTP requests by route and status.")
    m.describe("drops_total", "counter", "Records or requests dropped, by reason.")
    return m


def _store_ctx(
    listeners: list[DurableListener],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def store(app: web.Application) -> AsyncIterator[None]:
        """Open the node's WAL (recovering what a previous run left), close it at the end."""
        from trailcli.store.layout import resolve_node_id

        settings = app[SETTINGS]
        try:
            node_id = resolve_node_id(settings.data_dir, settings.node_id)
            writer = await asyncio.to_thread(
                functools.partial(
                    LogWriter.open,
                    settings.data_dir,
                    node_id,
                    flush_interval=settings.flush_interval,
                    disk_headroom=settings.disk_headroom,
                )
            )
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(
                    f"The disk holding the data dir {settings.data_dir} is full: "
                    f"{exc.strerror or exc}.",
                    "free space on that disk and start again",
                ) from None
            raise TrailError(
                f"Cannot write to the data dir {settings.data_dir}: {exc.strerror or exc}.",
                "check that it exists or can be created and is writable, or pass --data-dir",
            ) from None
        for listener in listeners:
            writer.subscribe(listener)
        app[NODE_ID] = node_id
        app[WRITER] = writer
        app[HEALTH_CHECKS].append(functools.partial(disk_health, writer))
        _writer_gauges(app[METRICS], writer)
        yield
        await writer.drain()
        await asyncio.to_thread(writer.close)  # commits what the WAL holds

    return store


def disk_health(writer: LogWriter) -> str | None:
    """The /health reason while a full disk refuses writes (None otherwise)."""
    disk = writer.disk
    if not disk.full:
        return None
    return (
        f"disk full: writes refused for {disk.full_for():.0f}s ({disk.reason}) until the WAL is "
        f"committed and {writer.disk_headroom} bytes are free"
    )


def _writer_gauges(m: Metrics, writer: LogWriter) -> None:
    m.describe("wal_bytes", "gauge", "Bytes in the write-ahead log not yet committed.")
    m.describe("wal_lag_seconds", "gauge", "Age of the oldest uncommitted record.")
    m.describe("records_written", "gauge", "Records made durable in the WAL, by kind.")
    m.describe("commits", "gauge", "Commits of the WAL to the tables.")
    m.describe("commit_seconds", "gauge", "Duration of the last commit of the WAL.")
    m.describe("disk_full", "gauge", "1 while writes are refused after a full disk, else 0.")
    m.describe("disk_full_seconds", "gauge", "How long the current full-disk episode has lasted.")
    m.describe("disk_full_episodes_total", "counter", "Times the disk was found full.")
    m.describe("writes_refused_total", "counter", "Writes refused (answered 503) on a full disk.")

    def scrape(m: Metrics) -> None:
        stats = writer.stats()
        for name, key in (
            ("wal_bytes", "wal_bytes"),
            ("wal_lag_seconds", "wal_lag_seconds"),
            ("commits", "commits"),
            ("commit_seconds", "last_commit_seconds"),
            ("disk_full", "disk_full"),
            ("disk_full_seconds", "disk_full_seconds"),
            ("disk_full_episodes_total", "disk_full_episodes"),
            ("writes_refused_total", "writes_refused"),
        ):
            m.set(name, float(stats.get(key) or 0.0))
        written = stats.get("records_written") or {}
        for kind, count in written.items() if isinstance(written, dict) else []:
            m.set("records_written", float(count), {"kind": kind})

    m.on_scrape(scrape)


# Young-generation collections every 20,000 allocations instead of 700: a request allocates
# dozens of short-lived containers that reference counting frees anyway, so the default runs a
# collection every few requests for nothing.
GC_THRESHOLDS = (20_000, 20, 100)


class GcTuning:
    """While serving, what was loaded at start is left out of collections (gc.freeze) and young
    collections run less often; `stop` undoes both."""

    def __init__(self) -> None:
        self.before: tuple[int, ...] | None = None

    async def start(self, app: web.Application) -> None:
        self.before = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    async def stop(self, app: web.Application) -> None:
        if self.before is not None:
            gc.set_threshold(*self.before)
            gc.unfreeze()
            self.before = None


async def _maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bin-pack today's files and compact closed days in a thread, on their own intervals."""
    settings = app[SETTINGS]
    purge = app.get(PURGE)

    def upkeep(data_dir: Path) -> None:
        daily_upkeep(data_dir, datetime.now(UTC), purge)

    tasks = [
        asyncio.create_task(_every(settings.bin_pack_interval, "bin_pack_today", _bin_pack, app)),
        asyncio.create_task(_every(settings.compact_interval, "compact", upkeep, app)),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _one_node_at_a_time(app: web.Application) -> AsyncIterator[bool]:
    """In a cluster, the maintenance lock in Redis (renewed while held); alone, always True."""
    if not app[SETTINGS].redis:
        yield True
        return
    from trailcli.collector.maintenance_lock import held
    from trailcli.collector.redis_link import REDIS

    async with held(app[REDIS].client) as mine:
        yield mine


def _bin_pack(data_dir: Path) -> None:
    maintenance.bin_pack_today(data_dir)


def daily_upkeep(data_dir: Path, now: datetime, purge: Purge | None = None) -> None:
    """Drop the days past the retention (when `purge` is given), compact the closed days, then
    bring the presence snapshots up to date (as `trail purge` and `trail compact`)."""
    if purge is not None:
        with contextlib.suppress(NoDataError):  # no table yet
            log.info("retention: %s", purge(data_dir, now))
    summary = maintenance.compact(data_dir, older_than=now)
    if "presence" in summary.kinds:
        snapshots.build_snapshots(data_dir, today=now.astimezone(UTC).date())


async def _every(
    interval: float, job: str, run: Callable[[Path], None], app: web.Application
) -> None:
    while True:
        await asyncio.sleep(interval)
        started = time.monotonic()
        try:
            async with _one_node_at_a_time(app) as mine:
                if not mine:
                    app[METRICS].inc("maintenance_skipped_total", {"job": job})
                    continue  # another node of the cluster is at it
                await asyncio.to_thread(run, app[SETTINGS].data_dir)
        except NoDataError:
            continue  # no table yet: nothing to pack
        except Exception as exc:  # keep collecting; the next round retries
            app[METRICS].inc("maintenance_errors_total", {"job": job})
            log.warning("store maintenance %s failed: %s", job, exc)
        else:
            app[METRICS].set("maintenance_seconds", time.monotonic() - started, {"job": job})


def _response_hook(
    metrics: Metrics, allow_origins: tuple[str, ...]
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Count every response by route and status and add CORS headers for allowed origins.

    A response signal rather than a middleware: aiohttp runs a middleware as extra coroutine
    layers around every handler, which cost more than the Ahoy beacon's own parsing.
    """
    counters: dict[tuple[object, int], Series] = {}  # by route (None: unmatched) and status

    async def on_response(request: web.Request, response: web.StreamResponse) -> None:
        info = request.match_info
        key = (info.route if info.http_exception is None else None, response.status)
        counter = counters.get(key)
        if counter is None:
            labels = {"route": _route_name(request), "status": str(response.status)}
            counter = counters[key] = metrics.counter("http_requests_total", labels)
        counter.inc()
        if allow_origins:
            cors.add_response_headers(request, response, allow_origins)

    return on_response


def _route_name(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


async def health(request: web.Request) -> web.Response:
    """GET /health: node id, uptime and WAL lag; 503 "degraded" with the reasons of any part
    (and Retry-After while a full disk refuses writes)."""
    app = request.app
    writer = app.get(WRITER)
    stats = writer.stats() if writer is not None else {}
    reasons = [reason for check in app[HEALTH_CHECKS] if (reason := check())]
    full = writer is not None and writer.disk.full
    return web.json_response(
        {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "node_id": app.get(NODE_ID),
            "uptime_seconds": round(time.time() - app[STARTED_AT], 3),
            "wal_lag_seconds": stats.get("wal_lag_seconds"),
            "wal_bytes": stats.get("wal_bytes"),
        },
        status=503 if reasons else 200,
        headers={"Retry-After": str(writer.retry_after)} if writer is not None and full else None,
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text exposition."""
    return web.Response(
        text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8"
    )
