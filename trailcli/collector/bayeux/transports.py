"""aiohttp handlers for `/faye`: long-polling, callback-polling (JSON-P), WebSocket and CORS."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from trailcli.collector.bayeux.engine import (
    Client,
    Context,
    Engine,
    Message,
    Outgoing,
    encode,
)
from trailcli.collector.enrich import client_ip
from trailcli.collector.untrusted import json_depth_exceeds, known_charset

log = logging.getLogger("trail.bayeux")
# TRAIL_BAYEUX_TRACE=1 writes every frame in and out to stderr: time, direction, transport,
# connection, text (for debugging a client's conversation with the server)
_TRACING = bool(os.environ.get("TRAIL_BAYEUX_TRACE"))


def _trace(direction: str, transport: str, conn: object, text: str) -> None:
    if _TRACING:
        stamp = f"{time.time():.3f}"
        print(stamp, direction, transport, f"{id(conn) & 0xFFFFFF:x}", text, file=sys.stderr)


JSONP_CALLBACK = "jsonpcallback"
_JSONP_NAME = re.compile(r"[a-z_$][a-z0-9_$]*(\.[a-z_$][a-z0-9_$]*)*", re.IGNORECASE | re.ASCII)
_JSON_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Cache-Control": "no-cache, no-store",
    "X-Content-Type-Options": "nosniff",
}
# Faye's preflight answer, given to the origins the collector allows (`--allow-origin`)
_PREFLIGHT = {
    "methods": "POST, GET",
    "default_headers": "Accept, Authorization, Content-Type, Pragma, X-Requested-With",
    "max_age": "86400",
}


class BadRequest(Exception):
    """A request whose body or parameters cannot be read as Bayeux messages."""


class TooDeep(BadRequest):
    """JSON nested deeper than the configured limit."""


class UnsupportedCharset(Exception):
    """A form body in a charset Python has no codec for."""


class FayeEndpoint:
    """The handlers of one mount path, sharing one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        client_js: Path | None = None,
        allow_origins: tuple[str, ...] = (),
        trust_proxy: bool = False,
    ) -> None:
        self.engine = engine
        self.client_js = client_js
        self.allow_origins = allow_origins  # page origins whose preflights are answered
        self.trust_proxy = (
            trust_proxy  # the client address of per-address limits from X-Forwarded-For
        )
        self.sockets: set[SocketSession] = set()
        # held long-polls by the task serving them, watched for clients that went away
        self.held: dict[asyncio.Task[Any], asyncio.BaseTransport] = {}
        # A whole request may hold a batch of messages; each one is limited by the engine.
        self.max_body = engine.config.max_message_bytes * 4 + 4096

    # ---- routing ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every method on `/faye` and `/faye/...`."""
        if request.method == "OPTIONS" or "Access-Control-Request-Method" in request.headers:
            return self._preflight(request)
        if request.method == "GET" and _is_websocket(request):
            return await self.websocket(request)
        if request.method == "GET" and "text/event-stream" in request.headers.get("Accept", ""):
            return await self.eventsource(request)
        if request.method not in ("GET", "POST"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "OPTIONS"])
        try:
            messages, jsonp = await self._read(request)
        except BadRequest as exc:
            self.count_bad_request(exc)
            return _text(request, 400, f"Bad request: {exc}")
        except UnsupportedCharset as exc:
            self.engine.stats["bad_requests"] += 1
            return _text(request, 415, f"Unsupported charset {str(exc)[:40]!r}: send UTF-8.")
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(request)
        transport = "callback-polling" if jsonp else "long-polling"
        _trace("in", transport, request, json.dumps(messages))
        items = await self._process(messages, self._context(request, transport), request)
        body = encode(items)
        _trace("out", transport, request, body)
        return self._respond(request, body, jsonp)

    async def client_script(self, request: web.Request) -> web.StreamResponse:
        """The browser Faye client, `client/faye-browser-min.js` of the npm `faye` package."""
        if self.client_js is None or not self.client_js.is_file():
            return _text(
                request,
                404,
                "The Faye browser client is not configured: pass --faye-client-js "
                "pointing at node_modules/faye/client/faye-browser-min.js.",
            )
        return web.FileResponse(
            self.client_js, headers={"Content-Type": "text/javascript; charset=utf-8"}
        )

    # ---- HTTP transports ----------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[list[Message], str | None]:
        """The request's messages and, for callback-polling, the JSON-P callback name."""
        if request.method == "GET":
            jsonp = request.query.get("jsonp", JSONP_CALLBACK)
            if not _JSONP_NAME.fullmatch(jsonp):
                raise BadRequest("invalid jsonp callback name")
            return self.decode_messages(request.query.get("message")), jsonp
        if request.content_length is not None and request.content_length > self.max_body:
            raise web.HTTPRequestEntityTooLarge(self.max_body, request.content_length)
        body = await self._body(request)
        if request.content_type == "application/json":
            return self.decode_messages(body), None  # JSON is UTF-8 whatever the charset says
        charset = request.charset or "utf-8"
        if not known_charset(charset):
            raise UnsupportedCharset(charset)
        try:
            form = _form_message(body, charset)
        except UnicodeDecodeError as exc:
            raise BadRequest("the body is not text") from exc
        return self.decode_messages(form), None

    def decode_messages(self, raw: str | bytes | None) -> list[Message]:
        return _decode(raw, self.engine.config.max_json_depth)

    def count_bad_request(self, exc: BadRequest) -> None:
        self.engine.stats["refused_json_depth" if isinstance(exc, TooDeep) else "bad_requests"] += 1

    async def _body(self, request: web.Request) -> bytes:
        """The whole body, up to `max_body` bytes (the app's client_max_size does not apply)."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > self.max_body:
                raise web.HTTPRequestEntityTooLarge(self.max_body, size)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _process(
        self, messages: list[Message], context: Context, request: web.Request | None = None
    ) -> list[Outgoing]:
        """Handle a request's messages; holds its connect, if any, until it is answered."""
        batch = await self.engine.handle(messages, context)
        if batch.connect is None:
            return batch.replies
        pending = batch.connect
        task = self._watch(request)
        try:
            return batch.replies + await self.engine.hold(pending)
        except asyncio.CancelledError:
            # the client went away during the hold
            self.engine.transport_closed(pending.client.id)
            raise
        finally:
            if task is not None:
                self.held.pop(task, None)

    def _watch(self, request: web.Request | None) -> asyncio.Task[Any] | None:
        """Watch the connection of a long-poll about to be held, unless aiohttp already cancels
        its handler when the connection is lost; returns the task to cancel then."""
        task = asyncio.current_task()
        if request is None or task is None or _cancels_on_close(request):
            return None
        transport = request.transport
        if transport is None:
            return None
        self.held[task] = transport
        return task

    def cancel_abandoned_holds(self) -> int:
        """Cancel held long-polls whose connection closed; returns how many.

        aiohttp cancels them itself when run with `handler_cancellation=True`; this check makes
        the close noticed within a watch period without it.
        """
        gone = [task for task, transport in self.held.items() if transport.is_closing()]
        for task in gone:
            self.held.pop(task, None)
            task.cancel()
        return len(gone)

    def _respond(self, request: web.Request, body: str, jsonp: str | None) -> web.Response:
        headers = dict(_JSON_HEADERS)
        if jsonp:
            body = body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
            body = f"/**/{jsonp}({body});"
            headers["Content-Type"] = "text/javascript; charset=utf-8"
            headers["Content-Disposition"] = "attachment; filename=f.txt"
        headers.update(_cors(request))
        return web.Response(body=body.encode(), headers=headers)

    def _too_large(self, request: web.Request) -> web.Response:
        self.engine.stats["refused_too_large"] += 1
        return _text(request, 413, f"Payload too large: a request may hold {self.max_body} bytes.")

    def _preflight(self, request: web.Request) -> web.Response:
        """Faye's preflight answer for an origin of `--allow-origin`; 403 without CORS headers
        for any other (or none), as on the collector's other routes."""
        from trailcli.collector.cors import origin_allowed, preflight_headers

        origin = request.headers.get("Origin", "")
        if not origin_allowed(origin, self.allow_origins):
            return web.Response(status=403, text="Origin not allowed\n")
        requested = request.headers.get("Access-Control-Request-Headers")
        return web.Response(status=200, headers=preflight_headers(origin, requested, **_PREFLIGHT))

    def _context(self, request: web.Request, transport: str) -> Context:
        return Context(
            headers=request.headers,
            has_secret=_bearer_matches(request.headers, self.engine.config.secret),
            remote=request.remote,
            transport=transport,
            address=self._client_address(request),
        )

    def _client_address(self, request: web.Request) -> str | None:
        forwarded = request.headers.get("X-Forwarded-For") if self.trust_proxy else None
        return client_ip(request.remote, forwarded, self.trust_proxy) or request.remote

    # ---- WebSocket ----------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One socket: each text frame is a JSON array of messages; deliveries are pushed."""
        ws = web.WebSocketResponse(max_msg_size=self.max_body, heartbeat=30.0)
        await ws.prepare(request)
        session = SocketSession(ws, self, self._context(request, "websocket"))
        self.sockets.add(session)
        try:
            await session.run()
        finally:
            self.sockets.discard(session)
        return ws

    # ---- EventSource ----------------------------------------------------------------------

    async def eventsource(self, request: web.Request) -> web.StreamResponse:
        """`GET /faye/<clientId>` as `text/event-stream`: the client's messages, pushed."""
        client_id = request.path.rstrip("/").rsplit("/", 1)[-1]
        stream = EventStream(self.engine, self._context(request, "eventsource"))
        await self.engine.load(client_id)
        client = self.engine.bind_socket(client_id, stream)
        if client is None:
            self.engine.stats["bad_requests"] += 1
            return _text(request, 400, f"Bad request: unknown client {client_id[:64]!r}")
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store"}
        response = web.StreamResponse(headers={**headers, **_cors(request)})
        task = self._watch(request)
        try:
            await response.prepare(request)
            await stream.run(response, client)
        except (ConnectionError, RuntimeError):
            pass  # the browser went away
        finally:
            if task is not None:
                self.held.pop(task, None)
            self.engine.transport_closed(client.id, stream)
        return response

    async def close_sockets(self) -> None:
        """Close every open socket (server shutdown)."""
        for session in list(self.sockets):
            await session.ws.close()


class SocketSession:
    """A WebSocket and the client bound to it by its last `/meta/connect`."""

    def __init__(self, ws: web.WebSocketResponse, endpoint: FayeEndpoint, context: Context) -> None:
        self.ws = ws
        self.endpoint = endpoint
        self.engine = endpoint.engine
        self.context = context
        self.client: Client | None = None
        self.stop = asyncio.Event()
        self.closing = False
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._holds: set[asyncio.Task[None]] = set()

    # SocketBinding, called by the engine
    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self.closing = True
        self.stop.set()
        self._wake.set()

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_deliveries())
        try:
            async for frame in self.ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                async with self.lock:
                    await self._handle_frame(frame.data)
                if self.closing:
                    break
        finally:
            self.stop.set()
            if self.client is not None:
                self.engine.transport_closed(self.client.id, self)
            writer.cancel()
            for task in list(self._holds):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _handle_frame(self, text: str) -> None:
        _trace("in", "websocket", self, text)
        try:
            messages = self.endpoint.decode_messages(text)
        except BadRequest as exc:
            self.endpoint.count_bad_request(exc)
            # no message id to answer: a reply the Faye client ignores, readable when debugging
            await self._send(encode([{"successful": False, "error": f"400::Bad request: {exc}"}]))
            return
        try:
            batch = await self.engine.handle(messages, self.context)
        except Exception:
            # a fault handling one frame must not end the socket (and every session on it)
            log.exception("Bayeux: handling a WebSocket frame failed")
            await self._send(encode([{"successful": False, "error": "500::Internal error"}]))
            return
        if batch.connect is not None:
            self._bind(batch.connect.client)
            task = asyncio.create_task(self._answer_connect(batch))
            self._holds.add(task)
            task.add_done_callback(self._holds.discard)
        if batch.replies:
            await self._send(encode(batch.replies))

    def _bind(self, client: Client) -> None:
        if self.client is not None and self.client is not client:
            self.engine.transport_closed(self.client.id, self)
        self.client = client
        self.engine.bind_socket(client.id, self)

    async def _answer_connect(self, batch: Any) -> None:
        items = await self.engine.hold(batch.connect, stop=self.stop)
        if not self.ws.closed:
            await self._send(encode(items))

    async def _write_deliveries(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.closing:
                async with self.lock:  # let the reply being sent (e.g. a disconnect ack) go first
                    await self.ws.close()
                return
            client = self.client
            if client is not None and client.socket is self:
                await self.engine.fill(client)
            if client is None or client.socket is not self or not client.queue:
                continue  # nothing queued, or the client moved to another socket
            items = await self.engine.outgoing_deliveries(self.engine.take(client), self.context)
            await self._send(encode(items))

    async def _send(self, text: str) -> None:
        _trace("out", "websocket", self, text)
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            # the socket is closing: the client resends what it got no reply to
            _trace("unsent", "websocket", self, repr(exc))


class EventStream:
    """An EventSource stream bound to one client: `data: [messages]` frames and comment pings."""

    PING_SECONDS = 10.0
    # in a cluster, the stream receives whatever is queued for its client, whichever node
    # served the client's latest connect
    takes_for_any_connect = True

    def __init__(self, engine: Engine, context: Context) -> None:
        self.engine = engine
        self.context = context
        self.closing = False
        self._wake = asyncio.Event()

    # SocketBinding, called by the engine
    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self.closing = True
        self._wake.set()

    async def run(self, response: web.StreamResponse, client: Client) -> None:
        """Write until the session ends, the client moves elsewhere or the browser leaves."""
        await response.write(b"retry: 5000\r\n\r\n")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.PING_SECONDS)
            self._wake.clear()
            if self.closing or client.socket is not self:
                return
            await self.engine.fill(client)
            if not client.queue:
                await response.write(b":\r\n\r\n")
                continue
            items = await self.engine.outgoing_deliveries(self.engine.take(client), self.context)
            await response.write(f"data: {encode(items)}\r\n\r\n".encode())


def _decode(raw: str | bytes | None, max_depth: int) -> list[Message]:
    """Bayeux messages from JSON text: one object or an array of objects, nested at most
    `max_depth` levels (TooDeep otherwise)."""
    if raw is None or raw == "" or raw == b"":
        raise BadRequest("no message")
    too_deep = TooDeep(f"the message is nested deeper than {max_depth} levels")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the message is not valid JSON") from exc
    if json_depth_exceeds(value, max_depth):
        raise too_deep
    messages = value if isinstance(value, list) else [value]
    if not all(isinstance(m, dict) for m in messages):
        raise BadRequest("each message must be a JSON object")
    return messages


def _form_message(body: bytes, charset: str) -> str | None:
    """The `message` field of a form-encoded body."""
    from urllib.parse import parse_qs

    fields = parse_qs(body.decode(charset), keep_blank_values=True)
    values = fields.get("message")
    return values[0] if values else None


def _cancels_on_close(request: web.Request) -> bool:
    """Whether aiohttp itself cancels this request's handler when its connection is lost
    (the server runs with `handler_cancellation=True`)."""
    manager = getattr(request.protocol, "_manager", None)
    return bool(getattr(manager, "handler_cancellation", False))


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _bearer_matches(headers: Mapping[str, str], secret: str | None) -> bool:
    header = headers.get("Authorization", "")
    if not secret or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), secret.encode())


def _cors(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}


def _text(request: web.Request, status: int, text: str) -> web.Response:
    headers = {"Cache-Control": "no-cache, no-store", **_cors(request)}
    return web.Response(status=status, text=text, headers=headers)
