"""The node's connection to the cluster's Redis: opened at start, watched, and reported when down.

Every part that shares state through Redis uses `app[REDIS].client` and tells the link when a
command failed (`failed`), so the node's health flips at once; the watch pings while it is down,
with backoff, and logs the loss and the return once each (never once per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from trailcli.collector.metrics import Metrics
from trailcli.errors import TrailError

log = logging.getLogger("trail.collect")

CONNECT_TIMEOUT = 2.0  # seconds to reach Redis before a command fails
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0  # seconds between pings while Redis is down


def redacted_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def end_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled while a Redis command ran.

    Call it after each round of a loop that talks to Redis: a cancel that arrives during a command
    can be absorbed by the client (seen here: the presence publisher went back to waiting for work
    after shutdown had cancelled it, and the node never exited on SIGTERM)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisLink:
    """One Redis client for the node and whether Redis answers (`up`), with its reconnects."""

    def __init__(self, url: str, metrics: Metrics) -> None:
        self.url = url
        self.metrics = metrics
        self.up = False
        self.reason = "not connected yet"
        self.down_since: float | None = None
        self.reconnects = 0
        self._recovered = asyncio.Event()
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT * 2,
            health_check_interval=30,
        )
        metrics.describe("redis_up", "gauge", "1 while the cluster's Redis answers, else 0.")
        metrics.describe("redis_reconnects_total", "counter", "Times Redis came back after a loss.")
        metrics.on_scrape(lambda m: m.set("redis_up", 1.0 if self.up else 0.0))

    async def open(self) -> None:
        """Reach Redis once at start; a node that cannot is refused (TrailError, exit 1)."""
        from redis.exceptions import RedisError

        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            await self.close()
            raise TrailError(
                f"Cannot reach Redis at {redacted_url(self.url)}: {exc}.",
                "start Redis there, or fix --redis / $TRAIL_REDIS_URL / the config's 'redis' key",
            ) from None
        self.up, self.reason = True, ""

    def failed(self, exc: BaseException) -> None:
        """A command failed: mark Redis down (logged once) until the watch reaches it again."""
        if not self.up:
            return
        self.up, self.reason = False, f"redis unreachable: {exc}"
        self.down_since = time.monotonic()
        self._recovered.clear()
        log.warning("lost Redis at %s (%s); retrying with backoff", redacted_url(self.url), exc)

    def health(self) -> str | None:
        """None while Redis answers, else why the node is degraded."""
        return None if self.up else self.reason

    async def wait_up(self) -> None:
        """Return once Redis answers again (at once if it does)."""
        if not self.up:
            await self._recovered.wait()

    async def watch(self, interval: float = 1.0) -> None:
        """Ping Redis: every `interval` while up, with backoff while down; flip `up` both ways."""
        from redis.exceptions import RedisError

        delay = BACKOFF_FIRST
        while True:
            await asyncio.sleep(interval if self.up else delay)
            try:
                await self.client.ping()
            except (RedisError, OSError) as exc:
                self.failed(exc)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_FIRST
            if not self.up:
                self._back()

    def _back(self) -> None:
        lost = time.monotonic() - (self.down_since or time.monotonic())
        self.up, self.reason, self.down_since = True, "", None
        self.reconnects += 1
        self.metrics.inc("redis_reconnects_total")
        self._recovered.set()
        log.warning("Redis at %s is back after %.1f s", redacted_url(self.url), lost)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


REDIS = web.AppKey("redis", RedisLink)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the link before anything that needs it, watch it while serving, close it last."""
    from trailcli.collector.keys import HEALTH_CHECKS, METRICS, SETTINGS

    url = app[SETTINGS].redis
    assert url is not None
    link = RedisLink(url, app[METRICS])
    await link.open()
    app[REDIS] = link
    app[HEALTH_CHECKS].append(link.health)
    watch = asyncio.create_task(link.watch())
    yield
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    await link.close()
