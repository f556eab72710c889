"""Run the collector: listen, announce, and on SIGTERM/SIGINT drain requests and commit the WAL."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from aiohttp import web

from trailcli.collector import dashboard
from trailcli.collector.access_log import RedactingAccessLogger
from trailcli.collector.app import Purge, create_app
from trailcli.collector.connections import (
    AcceptErrors,
    ConnectionGuard,
    GuardedSite,
    connection_cap,
    listen_backlog,
    raise_open_file_limit,
)
from trailcli.collector.dashboard import Reports
from trailcli.collector.keys import METRICS, NODE_ID
from trailcli.collector.metrics import Metrics
from trailcli.collector.settings import Settings
from trailcli.errors import TrailError


def configure_logging(stream: TextIO = sys.stderr) -> None:
    """Warnings and the access log go to stderr (stdout stays free for data)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("trail", "aiohttp.access", "aiohttp.server"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    announce: TextIO = sys.stderr,
    reports: Reports | None = None,
    purge: Purge | None = None,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until `stop` is set, then stop accepting, finish in-flight requests, close the store.

    `reuse_port` listens with SO_REUSEPORT (a `--workers` worker); `on_ready` is called once
    listening."""
    app = create_app(settings, reports=reports, purge=purge)
    guard = connection_guard(settings, app[METRICS])
    asyncio.get_running_loop().set_exception_handler(AcceptErrors(app[METRICS]))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        access_log_class=RedactingAccessLogger,  # no secrets from URLs (a JSON-P ext) in the log
        shutdown_timeout=settings.shutdown_timeout,
        # a held long-poll whose client went away is cancelled at once (its session's grace
        # starts then), rather than found by the Bayeux sweep's watch
        handler_cancellation=True,
        keepalive_timeout=settings.keepalive_timeout,
    )
    await runner.setup()
    try:
        site = GuardedSite(
            runner,
            guard,
            settings.host,
            settings.port,
            backlog=guard.backlog,
            reuse_port=reuse_port,
        )
        try:
            await site.start()
        except OSError as exc:
            raise TrailError(
                f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}.",
                "pass another --port (0 picks a free one) or stop what is using it",
            ) from None
        print(startup_line(settings, runner, app), file=announce, flush=True)
        if on_ready is not None:
            on_ready()
        await stop.wait()
    finally:
        await runner.cleanup()


def connection_guard(settings: Settings, metrics: Metrics) -> ConnectionGuard:
    """The limits on client connections, the cap held below the open-file limit (raised first)."""
    soft, _ = raise_open_file_limit()
    cap = connection_cap(settings.max_connections, soft)
    if cap < settings.max_connections:
        logging.getLogger("trail.collect").warning(
            "at most %d connections at once (max-connections %d; the open-file limit is %d)",
            cap,
            settings.max_connections,
            soft,
        )
    return ConnectionGuard(metrics, header_timeout=settings.header_timeout, max_connections=cap,
                           backlog=listen_backlog(soft, cap))  # fmt: skip


def startup_line(settings: Settings, runner: web.AppRunner, app: web.Application) -> str:
    """`trail collect: listening on http://HOST:PORT, writing to DIR (node ID)`."""
    urls = [f"http://{_host(addr[0])}:{addr[1]}" for addr in runner.addresses]
    return (
        f"trail collect: listening on {', '.join(urls)}, writing to "
        f"{settings.data_dir} (node {app[NODE_ID]}); {dashboard.startup_note(app, urls[0])}"
    )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(
    settings: Settings,
    reports: Reports | None = None,
    purge: Purge | None = None,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the daemon in this process until SIGTERM or SIGINT; returns normally after a clean stop."""
    configure_logging()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(
            settings, stop, reports=reports, purge=purge, reuse_port=reuse_port, on_ready=on_ready
        )

    asyncio.run(main())
