"""What one client connection may hold of the server: a deadline for each request head, a cap on
connections, the open-file limit raised, and accept errors logged without flooding the log.

aiohttp closes a connection left idle between requests after its `keepalive_timeout`, but it
waits as long for a request head that arrives a byte at a time. `GuardedSite` wraps each
connection's protocol in a `GuardedConnection` that closes it when a request head (from its first
byte, or from the connection's start) takes longer than `header_timeout`, and refuses connections
beyond `max_connections` at once. A request being handled (a held long-poll, a WebSocket, an
EventSource stream) is never subject to either timeout.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from trailcli.collector.metrics import Metrics

log = logging.getLogger("trail.collect")

FD_RESERVE = 256  # open files kept for the WAL, the tables and compaction, beyond connections
MAX_BACKLOG = 1024
ACCEPT_LOG_EVERY = 10.0  # seconds between log lines about failing accepts
ACCEPT_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each connection is a file); returns the
    (soft, hard) limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit some kernels refuse
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft, hard


def connection_cap(max_connections: int, open_files: int) -> int:
    """The connections that may be open at once: `max_connections`, but never so many that the
    process runs out of files for anything else."""
    room = open_files - FD_RESERVE if open_files > 2 * FD_RESERVE else open_files // 2
    return max(1, min(max_connections, room))


def listen_backlog(open_files: int, cap: int) -> int:
    """The listen backlog: asyncio accepts up to this many connections in a row before the
    guard refuses those over the cap, so it must fit in the files the cap leaves free."""
    return max(16, min(MAX_BACKLOG, open_files - cap - FD_RESERVE // 2))


class ConnectionGuard:
    """The open connections of one server, the limits they are held to, and their counters."""

    def __init__(
        self, metrics: Metrics, *, header_timeout: float, max_connections: int, backlog: int = 1024
    ) -> None:
        self.metrics = metrics
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.backlog = backlog
        self.open: set[GuardedConnection] = set()
        self._refused = metrics.counter("connections_refused_total", {"reason": "max_connections"})
        self._timed_out = metrics.counter("connections_closed_total", {"reason": "header_timeout"})
        metrics.describe("connections_refused_total", "counter", "Connections refused, by reason.")
        metrics.describe(
            "connections_closed_total", "counter", "Connections closed by a limit, by reason."
        )
        metrics.gauge_fn("connections_open", lambda: len(self.open), "Open client connections.")

    def factory(self, make_protocol: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        """A protocol factory for `loop.create_server` that guards what `make_protocol` makes."""
        return lambda: GuardedConnection(self, make_protocol())

    def admit(self, connection: GuardedConnection) -> bool:
        if len(self.open) >= self.max_connections:
            self._refused.inc()
            return False
        self.open.add(connection)
        return True

    def timed_out(self) -> None:
        self._timed_out.inc()


class GuardedConnection(asyncio.Protocol):
    """One connection's protocol (aiohttp's request handler), with a deadline on request heads.

    A head is due `header_timeout` after the connection opens, or after the first byte that
    arrives while no request is being handled; it is done once the handler has parsed another
    request. The handler's progress is read from two attributes of aiohttp's RequestHandler
    (`_request_count`, `_request_in_progress`); a test pins them to the installed version.
    """

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.head_since: float | None = None
        self.head_count = 0
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol, passed on to the handler -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self.guard.admit(self):
            transport.abort()  # over the cap: refused before aiohttp sees it
            return
        self.admitted = True
        self.transport = transport
        self.inner.connection_made(transport)
        self._expect_head(0)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self.head_since is not None or self._busy():
            self.inner.data_received(data)
            if self.head_since is not None and self._requests() > self.head_count:
                self._head_done()
            return
        # the first bytes of a request: time its head, unless it arrived whole (the usual case)
        before = self._requests()
        self.inner.data_received(data)
        if self._requests() == before and self.transport is not None:
            self._expect_head(before)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self.guard.open.discard(self)
        self._head_done()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- the head deadline ----------------------------------------------------------------------

    def _requests(self) -> int:
        return int(getattr(self.inner, "_request_count", 0))

    def _busy(self) -> bool:
        """A request is being handled (or parsed and waiting for the handler)."""
        inner = self.inner
        return bool(
            getattr(inner, "_request_in_progress", False) or getattr(inner, "_messages", ())
        )

    def _expect_head(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        self.head_since = loop.time()
        self.head_count = count
        if self.timer is None:
            self.timer = loop.call_at(self.head_since + self.guard.header_timeout, self._check)

    def _head_done(self) -> None:
        self.head_since = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        self.timer = None
        if self.head_since is None:
            return
        if self._requests() > self.head_count or self._busy():
            self.head_since = None
            return
        loop = asyncio.get_running_loop()
        due = self.head_since + self.guard.header_timeout
        if loop.time() < due:
            self.timer = loop.call_at(due, self._check)
            return
        self.guard.timed_out()
        if self.transport is not None:
            self.transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        host: str,
        port: int,
        *,
        backlog: int = 1024,
        reuse_address: bool = True,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.reuse_port = reuse_port
        self.guard = guard
        self.host = host
        self.port = port
        self.reuse_address = reuse_address

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.factory(server),
            self.host,
            self.port,
            backlog=self._backlog,
            reuse_address=self.reuse_address,
            reuse_port=self.reuse_port or None,
        )


class AcceptErrors:
    """An event-loop exception handler that counts failed accepts (out of files, buffers or
    memory) and logs them at most once per ACCEPT_LOG_EVERY seconds; anything else goes to the
    loop's default handler. (asyncio logs each failed accept, up to a backlog's worth a second.)"""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.logged_at = -ACCEPT_LOG_EVERY
        self.unlogged = 0
        metrics.describe("accept_errors_total", "counter", "Failed accepts, by errno name.")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS):
            loop.default_exception_handler(context)
            return
        self.metrics.inc("accept_errors_total", {"errno": errno.errorcode.get(exc.errno or 0, "?")})
        now = time.monotonic()
        if now - self.logged_at < ACCEPT_LOG_EVERY:
            self.unlogged += 1
            return
        log.error(
            "cannot accept connections: %s (%d more since the last report; counted in "
            "trail_accept_errors_total, reported at most every %ds)",
            exc.strerror or exc,
            self.unlogged,
            ACCEPT_LOG_EVERY,
        )
        self.logged_at, self.unlogged = now, 0
