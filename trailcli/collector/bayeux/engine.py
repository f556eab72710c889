"""The Bayeux engine: Faye-compatible message handling, sessions, queues and fan-out, without I/O.

Transports hand it decoded messages and a `Context`; it answers with replies and, for
`/meta/connect`, a `PendingConnect` the transport holds open with `hold()`. Time comes from the
clock passed in; `sweep(now)` ends sessions whose transport closed or that went silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from trailcli import channels
from trailcli.collector.limits import AddressLimiter, MemoryAddressLimiter, address_key
from trailcli.collector.secret_fields import without_secrets

log = logging.getLogger("trail.bayeux")

BAYEUX_VERSION = "1.0"
# What the handshake advertises (Faye's list).
CONNECTION_TYPES = [
    "long-polling",
    "cross-origin-long-polling",
    "callback-polling",
    "websocket",
    "eventsource",
    "in-process",
]
# How long a client refused for a full node or too many sessions from its address is advised to
# wait before handshaking again (advice.interval); a rate refusal says when its next one is due.
SESSIONS_RETRY_SECONDS = 10.0
# How long a long-poll answer waits after its first queued message, so that messages published
# just after go in the same reply: fewer round trips under load, for a millisecond of latency.
BATCH_DELAY = 0.001
# Reasons a session ends (docs/presence.md, "What is written").
DISCONNECT = "disconnect"
TRANSPORT_CLOSED = "transport_closed"
TIMEOUT = "timeout"
SERVER_SHUTDOWN = "server_shutdown"
# A session that handshook but never sent /meta/connect; it never counted as online, so presence
# writes nothing for it.
NEVER_CONNECTED = "never_connected"

Message = dict[str, Any]
Clock = Callable[[], datetime]
# An in-process subscriber: called with the channel and the data of each matching publish.
Listener = Callable[[str, Any], None]


@dataclass(frozen=True)
class EngineConfig:
    """Protocol timing and the limits of one node; every field is a collector setting."""

    timeout: float = 45.0
    grace: float = 15.0
    interval: float = 0.0
    open_publish: bool = False
    secret: str | None = None
    max_message_bytes: int = 32 * 1024
    max_queued_messages: int = 1000
    max_clients: int = 50_000
    max_subscriptions: int = 100
    max_json_depth: int = 64
    # per client address (see trailcli.collector.limits)
    handshakes_per_minute: float = 120.0
    handshake_burst: int = 60
    max_sessions_per_address: int = 1000
    first_connect_timeout: float = 20.0


@dataclass
class Context:
    """What extensions and the engine know about the request a message came in on."""

    headers: Mapping[str, str] = field(default_factory=dict)
    has_secret: bool = False
    remote: str | None = None
    transport: str = "long-polling"
    # The client's address for per-address limits: the peer, or the X-Forwarded-For client
    # behind a trusted proxy (None: an in-process caller, not limited).
    address: str | None = None
    # For outgoing extensions: the incoming message a reply answers (None for deliveries).
    message: Message | None = None


class Extension(Protocol):
    """Faye-style extension; both hooks are optional. Setting `message["error"]` rejects it."""

    async def incoming(self, message: Message, context: Context) -> None: ...

    async def outgoing(self, message: Message, context: Context) -> None: ...


class Delivery:
    """One published message as subscribers receive it, encoded once for every recipient."""

    __slots__ = ("_message", "_text")

    def __init__(self, message: Message | None = None, text: str | None = None) -> None:
        self._message = message
        self._text = text

    @classmethod
    def from_text(cls, text: str) -> Delivery:
        """A delivery already encoded (as a cluster's queue holds it); decoded only if read."""
        return cls(None, text)

    @property
    def message(self) -> Message:
        if self._message is None:
            assert self._text is not None
            self._message = json.loads(self._text)
        return self._message

    def text(self) -> str:
        if self._text is None:
            self._text = dumps(self.message)
        return self._text


Outgoing = Message | Delivery


class SocketBinding(Protocol):
    """A WebSocket a client is bound to: woken when messages are queued, closed with the session."""

    def wake(self) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False, slots=True)
class Client:
    """One Bayeux session (a Faye `clientId`)."""

    id: str
    ext: Message
    opened_at: datetime
    last_request: datetime
    ping_at: datetime
    subscriptions: set[str] = field(default_factory=set)
    queue: deque[Delivery] = field(default_factory=deque)
    # the held long-poll waiting for messages, resolved to answer it
    waiter: asyncio.Future[None] | None = None
    held: int = 0
    hold_token: object = None
    transport_closed_at: datetime | None = None
    socket: SocketBinding | None = None
    dropped: int = 0
    ended: bool = False
    address_key: str | None = None  # what per-address limits count it under
    connected: bool = False  # has sent a successful /meta/connect
    gen: int = 0  # cluster mode: the number of the client's latest connect served here


@dataclass
class PendingConnect:
    """A successful `/meta/connect` the transport holds for up to `hold` seconds."""

    client: Client
    reply: Message
    hold: float
    context: Context


@dataclass
class Batch:
    """The engine's answer to one request: replies now, plus a connect to hold if there was one."""

    replies: list[Outgoing]
    connect: PendingConnect | None = None


def dumps(value: Any) -> str:
    """Compact JSON, as Faye writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode(items: Iterable[Outgoing]) -> str:
    """A JSON array of replies and deliveries; deliveries reuse their cached text."""
    return "[" + ",".join(i.text() if isinstance(i, Delivery) else dumps(i) for i in items) + "]"


def error(code: int, params: Iterable[str] | str | None, text: str) -> str:
    """A Bayeux error string, `<code>:<params>:<message>` as Faye formats it."""
    if params is None:
        joined = ""
    elif isinstance(params, str):
        joined = params
    else:
        joined = ",".join(str(p) for p in params)
    return f"{code}:{joined}:{text}"


def new_client_id() -> str:
    """160 random bits in base 36, 31 characters: the shape of Faye's ids."""
    number = secrets.randbits(160)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while number:
        number, rest = divmod(number, 36)
        out.append(digits[rest])
    return "".join(reversed(out)).rjust(31, "0")


def strip_secrets(ext: Any) -> Any:
    """`ext` without `auth` (the server secret) and `trail.token` (the read token)."""
    if not isinstance(ext, dict):
        return ext
    clean = {k: v for k, v in ext.items() if k != "auth"}
    trail = clean.get("trail")
    if isinstance(trail, dict) and "token" in trail:
        clean["trail"] = {k: v for k, v in trail.items() if k != "token"}
    return clean


def _secret_matches(candidate: Any, secret: str | None) -> bool:
    if not secret or not isinstance(candidate, str):
        return False
    return hmac.compare_digest(candidate.encode(), secret.encode())


def _settled(reply: Message, problem: str | None) -> Message:
    """`reply` marked successful, or failed with `problem`."""
    if problem:
        reply["error"] = problem
    reply["successful"] = problem is None
    return reply


def _reply(message: Message) -> Message:
    """Faye's response skeleton: id, clientId, channel and error copied, then `successful`."""
    reply: Message = {}
    for key in ("id", "clientId", "channel", "error"):
        value = message.get(key)
        if value:
            reply[key] = value
    return reply


class EngineObserver(Protocol):
    """Hears of session changes, synchronously on the loop (it must not block). Each method does
    nothing unless overridden, so an observer subclasses this and implements what it needs.

    In a cluster (`cluster.ClusterEngine`, one per node) each session's `client_opened`,
    `client_connected` and `client_closed` fire exactly once cluster-wide: on the node that
    served the handshake, the node that served the first successful connect, and the node that
    removed the session from Redis (a disconnect or the reaper; a node stopping ends none of
    its sessions). `client_active`, `client_subscribed`/`client_unsubscribed` (only when the
    subscription changed) and `client_published` fire on the node serving the request."""

    def client_opened(self, client_id: str, ext: dict[str, Any], now: datetime) -> None:
        """A handshake opened a session (`ext` without secrets)."""
        return None

    def client_active(self, client_id: str, now: datetime) -> None:
        """A request came from the session (it is alive, and back if its transport had closed)."""
        return None

    def client_connected(self, client_id: str, now: datetime) -> None:
        """The session's first successful `/meta/connect` (a session that never sends one ends
        `never_connected`)."""
        return None

    def client_subscribed(self, client_id: str, channel: str, now: datetime) -> None:
        """The session subscribed to `channel`."""
        return None

    def client_unsubscribed(self, client_id: str, channel: str, now: datetime) -> None:
        """The session unsubscribed from `channel`."""
        return None

    def client_closed(
        self, client_id: str, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        """The session ended for `reason`; `last_alive` is the last moment it was known alive."""
        return None

    def client_published(self, client_id: str | None, channel: str, now: datetime) -> None:
        """A message was published on `channel` (by the session, or by the back end: None)."""
        return None


class Engine:
    """A node's Bayeux state: clients, subscriptions, queues, extensions and observers."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        clock: Clock | None = None,
        limiter: AddressLimiter | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.clock: Clock = clock or _utc_now
        self.limiter: AddressLimiter = limiter or MemoryAddressLimiter(
            self.config.handshakes_per_minute, self.config.handshake_burst
        )
        self.clients: dict[str, Client] = {}
        self.subscribers: dict[str, set[str]] = {}
        self.extensions: list[Any] = []
        self.observers: list[EngineObserver] = []
        self.listeners: dict[str, list[Listener]] = {}
        self.stats: Counter[str] = Counter()

    # ---- registration -------------------------------------------------------------------

    def add_extension(self, extension: Any) -> None:
        """Run `extension.incoming`/`outgoing` (either optional) on every message, in order added."""
        self.extensions.append(extension)

    def add_observer(self, observer: EngineObserver) -> None:
        """Tell `observer` about session changes."""
        self.observers.append(observer)

    def listen(self, pattern: str, listener: Listener) -> Callable[[], None]:
        """Call `listener(channel, data)` for every message published on a channel matching
        `pattern`, in this process and without a Bayeux session (the server's own readers of
        `/trail/**`, such as the dashboard). Returns the function that stops it."""
        if not channels.is_valid(pattern):
            raise ValueError(f"not a channel or pattern: {pattern!r}")
        self.listeners.setdefault(pattern, []).append(listener)

        def stop() -> None:
            kept = [x for x in self.listeners.get(pattern, []) if x is not listener]
            if kept:
                self.listeners[pattern] = kept
            else:
                self.listeners.pop(pattern, None)

        return stop

    def _notify(self, tell: Callable[[EngineObserver], None]) -> None:
        for observer in self.observers:
            try:
                tell(observer)
            except Exception:
                log.exception("Bayeux observer %r failed", observer)

    # ---- the request pipeline -----------------------------------------------------------

    async def handle(self, messages: list[Message], context: Context) -> Batch:
        """Handle one request's messages in order; returns replies and any connect to hold."""
        batch = Batch(replies=[])
        for message in messages:
            if self.extensions:
                await self._run_extensions("incoming", message, context)
            self._handle_one(message, context, batch)
        if self._has_hook("outgoing"):
            batch.replies = await self._outgoing_replies(batch.replies, messages, context)
        return batch

    def _handle_one(self, message: Message, context: Context, batch: Batch) -> None:
        client_id = message.get("clientId")
        now = self.clock()
        if isinstance(client_id, str):
            self._touch(client_id, now)
        channel = message.get("channel")
        self.stats["messages"] += 1
        reply: Message | None
        if message.get("error"):
            reply = self._rejected(message)
        elif channel == "/meta/handshake":
            reply = self._handshake(message, context, now)
        elif channel == "/meta/connect":
            reply, pending = self._connect(message, context)
            if pending is not None:
                self._supersede(batch)
                batch.connect = pending
                reply = None
        elif channel == "/meta/subscribe":
            reply = self._subscribe(message, now)
        elif channel == "/meta/unsubscribe":
            reply = self._unsubscribe(message, now)
        elif channel == "/meta/disconnect":
            reply = self._disconnect(message, now)
        else:
            reply = self._publish(message, context, now)
        if reply is not None:
            self._count_error(reply)
            batch.replies.append(reply)

    def _rejected(self, message: Message) -> Message:
        """A message an incoming extension rejected by setting `error`."""
        reply = _reply(message)
        reply["successful"] = False
        if message.get("channel") in ("/meta/handshake", "/meta/connect"):
            reply["advice"] = {"reconnect": "handshake"}
        return reply

    def _count_error(self, reply: Message) -> None:
        err = reply.get("error")
        if isinstance(err, str):
            self.stats[f"errors_{err.split(':', 1)[0]}"] += 1

    def _touch(self, client_id: str, now: datetime) -> None:
        """A request from a known client: it is alive, and back if its transport had closed."""
        client = self.clients.get(client_id)
        if client is None:
            return
        client.last_request = now
        client.transport_closed_at = None
        if self.observers:
            self._notify(lambda o: o.client_active(client_id, now))

    def _supersede(self, batch: Batch) -> None:
        """Two connects in one batch: the earlier one is answered at once."""
        if batch.connect is not None:
            batch.replies.append(batch.connect.reply)

    # ---- /meta/handshake ----------------------------------------------------------------

    def _handshake(self, message: Message, context: Context, now: datetime) -> Message:
        reply, problem, wait, key = self._handshake_checks(message, context, now)
        if problem is None and len(self.clients) >= self.config.max_clients:
            self.stats["refused_clients"] += 1
            problem = error(
                503, None, f"Too many clients on this node (limit {self.config.max_clients})"
            )
            wait = SESSIONS_RETRY_SECONDS
        if problem:
            return self._refused(reply, problem, wait)
        client = self._open(strip_secrets(message.get("ext") or {}), now, key)
        return self._opened(reply, client)

    def _handshake_checks(
        self, message: Message, context: Context, now: datetime
    ) -> tuple[Message, str | None, float, str | None]:
        """The handshake's reply skeleton, what is wrong with it (None: nothing), how long to
        wait before trying again, and the address key its session counts under."""
        reply = _reply(message)
        reply["version"] = BAYEUX_VERSION
        reply["supportedConnectionTypes"] = CONNECTION_TYPES
        types = message.get("supportedConnectionTypes")
        key = address_key(context.address)
        problem, wait = None, 0.0
        if message.get("version") is None:
            problem = error(402, "version", "Missing required parameter")
        elif not isinstance(types, list) or not types:
            problem = error(402, "supportedConnectionTypes", "Missing required parameter")
        elif not any(t in CONNECTION_TYPES for t in types):
            problem = error(301, [str(t) for t in types], "Connection types not supported")
        elif key is not None:
            problem, wait = self._address_problem(key, now)
        return reply, problem, wait, key

    def _refused(self, reply: Message, problem: str, wait: float) -> Message:
        """A refused handshake's reply."""
        reply["error"] = problem
        reply["successful"] = False
        if wait:
            # "retry", not "handshake": the Faye client then handshakes again after its own
            # `retry` delay, keeping the subscribes it deferred; "handshake" would make it
            # start a second handshake of its own, which drops them if that one gets in first
            reply["advice"] = {"reconnect": "retry", "interval": int(wait * 1000)}
        else:
            reply["advice"] = {"reconnect": "handshake"}
        return reply

    def _opened(self, reply: Message, client: Client) -> Message:
        """A successful handshake's reply."""
        reply["clientId"] = client.id
        reply["successful"] = True
        reply["advice"] = self._advice()
        return reply

    def _address_problem(self, key: str, now: datetime) -> tuple[str | None, float]:
        """Why the address `key` may not open a session now (None if it may), and how long
        it should wait before trying again (seconds)."""
        limit = self.config.max_sessions_per_address
        if self.limiter.sessions(key) >= limit:
            self.stats["refused_sessions_per_address"] += 1
            text = f"Too many sessions from this address (limit {limit})"
            return error(429, None, text), SESSIONS_RETRY_SECONDS
        wait = self.limiter.take_handshake(key, now.timestamp())
        if wait > 0:
            self.stats["refused_handshake_rate"] += 1
            per_minute = self.config.handshakes_per_minute
            text = f"Too many handshakes from this address (limit {per_minute:g} a minute)"
            return error(429, None, text), max(wait, 1.0)
        return None, 0.0

    def _open(self, ext: Any, now: datetime, key: str | None = None) -> Client:
        client_id = new_client_id()
        while client_id in self.clients:
            client_id = new_client_id()
        ext = ext if isinstance(ext, dict) else {}
        client = Client(id=client_id, ext=ext, opened_at=now, last_request=now, ping_at=now)
        client.address_key = key
        if key is not None:
            self.limiter.session_opened(key)
        self.clients[client_id] = client
        self.stats["handshakes"] += 1
        self._notify(lambda o: o.client_opened(client_id, ext, now))
        return client

    def _advice(self) -> Message:
        return {
            "reconnect": "retry",
            "interval": int(self.config.interval * 1000),
            "timeout": int(self.config.timeout * 1000),
        }

    # ---- /meta/connect ------------------------------------------------------------------

    def _connect(self, message: Message, context: Context) -> tuple[Message, PendingConnect | None]:
        reply = _reply(message)
        client_id = message.get("clientId")
        connection_type = message.get("connectionType")
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        problem = None
        if not connection_type:
            problem = error(402, "connectionType", "Missing required parameter")
        elif connection_type not in CONNECTION_TYPES:
            problem = error(301, str(connection_type), "Connection types not supported")
        elif not client_id:
            problem = error(402, "clientId", "Missing required parameter")
        elif client is None:
            problem = error(401, str(client_id), "Unknown client")
        if problem or client is None:
            reply.pop("clientId", None)
            reply["error"] = problem
            reply["successful"] = False
            reply["advice"] = {"reconnect": "handshake"}
            return reply, None
        self.stats["connects"] += 1
        client.ping_at = self.clock()
        reply["successful"] = True
        if not client.connected:
            client.connected = True
            at = client.ping_at
            self._notify(lambda o: o.client_connected(client.id, at))
        if connection_type == "eventsource":
            # messages flow on the stream; the connect is a heartbeat answered at once, and the
            # client comes back after `interval`
            timeout_ms = int(self.config.timeout * 1000)
            reply["advice"] = {"reconnect": "retry", "interval": timeout_ms, "timeout": 0}
            return reply, PendingConnect(client, reply, 0.0, context)
        reply["advice"] = self._advice()
        return reply, PendingConnect(client, reply, self._hold_seconds(message), context)

    def _hold_seconds(self, message: Message) -> float:
        """The request's `advice.timeout` (ms) if given, clamped to the server timeout."""
        advice = message.get("advice")
        requested = advice.get("timeout") if isinstance(advice, dict) else None
        if isinstance(requested, int | float) and not isinstance(requested, bool):
            return max(0.0, min(requested / 1000.0, self.config.timeout))
        return self.config.timeout

    async def hold(
        self, pending: PendingConnect, stop: asyncio.Event | None = None
    ) -> list[Outgoing]:
        """Hold a connect; returns `[connect reply, *queued messages]` when it is answered.

        Long-polling (no `stop`): answered when messages are queued for the client, when its
        session ends, when a newer connect replaces it, or after the hold time. WebSocket
        (`stop` is the socket's close signal): messages go out on the socket, so the connect is
        only a heartbeat answered after the hold time or when the socket or session ends.
        """
        client = pending.client
        token = object()
        if client.held:
            _wake(client)  # a newer connect answers the one still held
        client.hold_token = token
        client.held += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pending.hold
        try:
            if stop is not None:
                await _wait(stop, deadline - loop.time())
            else:
                await self._wait_for_messages(client, token, deadline)
        finally:
            client.held -= 1
            if not client.ended:
                client.ping_at = self.clock()
        out: list[Outgoing] = [pending.reply]
        if stop is None:
            out.extend(self.take(client))
        if self._has_hook("outgoing"):
            out = await self._outgoing_replies(out, [], pending.context)
        return out

    async def _wait_for_messages(self, client: Client, token: object, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not client.queue and not client.ended and client.hold_token is token:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            client.waiter = waiter
            timer = loop.call_later(remaining, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if client.waiter is waiter:
                    client.waiter = None
        if client.queue and not client.ended:
            # let publishes arriving right after join this reply (Faye waits for the next tick)
            await asyncio.sleep(BATCH_DELAY)

    def take(self, client: Client) -> list[Delivery]:
        """Remove and return everything queued for `client`."""
        items = list(client.queue)
        client.queue.clear()
        return items

    def bind_socket(self, client_id: str, socket: SocketBinding) -> Client | None:
        """Route `client_id`'s messages to a WebSocket; returns the client, None if unknown."""
        client = self.clients.get(client_id)
        if client is None:
            return None
        if client.socket is not None and client.socket is not socket:
            client.socket.wake()
        client.socket = socket
        client.transport_closed_at = None
        if client.queue:
            socket.wake()
        return client

    def transport_closed(self, client_id: str, socket: SocketBinding | None = None) -> None:
        """The client's socket or held long-poll went away; the session ends after `grace`
        unless the same client comes back."""
        client = self.clients.get(client_id)
        if client is None or client.ended:
            return
        if socket is not None:
            if client.socket is not socket:
                return
            client.socket = None
        if client.transport_closed_at is None:
            client.transport_closed_at = self.clock()
            self.stats["transport_closed"] += 1

    # ---- subscribe / unsubscribe --------------------------------------------------------

    def _known_client_problem(self, message: Message) -> str | None:
        client_id = message.get("clientId")
        if not client_id:
            return error(402, "clientId", "Missing required parameter")
        if not isinstance(client_id, str) or client_id not in self.clients:
            return error(401, str(client_id), "Unknown client")
        return None

    def _subscribe(self, message: Message, now: datetime) -> Message:
        return self._for_each_subscription(message, lambda c, ch: self._subscribe_one(c, ch, now))

    def _for_each_subscription(
        self, message: Message, apply: Callable[[Client, Any], str | None]
    ) -> Message:
        """The reply to a subscribe or unsubscribe: `apply` runs on each named channel in order
        until one gives an error (Faye's codes for a missing client or subscription come first)."""
        reply, client, channels, problem = self._subscription_request(message)
        for channel in channels:
            assert client is not None  # channels only for a known client
            problem = apply(client, channel)
            if problem:
                break
        return _settled(reply, problem)

    def _subscription_request(
        self, message: Message
    ) -> tuple[Message, Client | None, list[Any], str | None]:
        """A subscribe or unsubscribe's reply so far, its client and the channels it names, or
        Faye's error for a missing client or subscription (then no channels)."""
        reply = _reply(message)
        wanted = message.get("subscription")
        reply["subscription"] = wanted if wanted else []
        problem = self._known_client_problem(message)
        if problem is None and not wanted:
            problem = error(402, "subscription", "Missing required parameter")
        if problem is not None:
            return reply, None, [], problem
        channels = wanted if isinstance(wanted, list) else [wanted]
        return reply, self.clients[message["clientId"]], channels, None

    def _subscribe_one(self, client: Client, channel: Any, now: datetime) -> str | None:
        problem = subscription_problem(channel)
        if problem:
            return problem
        if channel in client.subscriptions:
            return None
        if len(client.subscriptions) >= self.config.max_subscriptions:
            self.stats["refused_subscriptions"] += 1
            limit = self.config.max_subscriptions
            return error(403, channel, f"Too many subscriptions for one client (limit {limit})")
        client.subscriptions.add(channel)
        self.subscribers.setdefault(channel, set()).add(client.id)
        self.stats["subscribes"] += 1
        self._notify(lambda o: o.client_subscribed(client.id, channel, now))
        return None

    def _unsubscribe(self, message: Message, now: datetime) -> Message:
        return self._for_each_subscription(message, lambda c, ch: self._unsubscribe_one(c, ch, now))

    def _unsubscribe_one(self, client: Client, channel: Any, now: datetime) -> str | None:
        if not isinstance(channel, str) or not channels.is_valid(channel):
            return error(405, str(channel), "Invalid channel")
        if self._drop_subscription(client, channel):
            self._notify(lambda o: o.client_unsubscribed(client.id, channel, now))
        return None

    def _drop_subscription(self, client: Client, channel: str) -> bool:
        if channel not in client.subscriptions:
            return False
        client.subscriptions.discard(channel)
        members = self.subscribers.get(channel)
        if members is not None:
            members.discard(client.id)
            if not members:
                del self.subscribers[channel]
        return True

    # ---- /meta/disconnect and session ends ----------------------------------------------

    def _disconnect(self, message: Message, now: datetime) -> Message:
        reply = _reply(message)
        problem = self._known_client_problem(message)
        if problem:
            reply.pop("clientId", None)
            reply["error"] = problem
            reply["successful"] = False
            return reply
        self.close_client(self.clients[message["clientId"]], DISCONNECT, now, now)
        reply["successful"] = True
        return reply

    def close_client(
        self, client: Client, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        """End a session: forget it, answer its held connect, close its socket, tell observers."""
        if client.ended:
            return
        client.ended = True
        self.clients.pop(client.id, None)
        if client.address_key is not None:
            self.limiter.session_closed(client.address_key)
        for channel in list(client.subscriptions):
            self._drop_subscription(client, channel)
        client.queue.clear()
        _wake(client)
        if client.socket is not None:
            client.socket.close()
            client.socket = None
        self.stats[f"closed_{reason}"] += 1
        self._notify(lambda o: o.client_closed(client.id, reason, last_alive, now))

    def sweep(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """End sessions whose transport closed more than `grace` ago, that sent no handshake
        or connect for 2 × timeout while none was held, or that never sent a connect within
        `first_connect_timeout` of their handshake. Returns (client id, reason) pairs."""
        now = now or self.clock()
        grace = timedelta(seconds=self.config.grace)
        silence = timedelta(seconds=2 * self.config.timeout)
        first_connect = timedelta(seconds=self.config.first_connect_timeout)
        ended: list[tuple[str, str]] = []
        for client in list(self.clients.values()):
            if client.held:
                continue
            closed_at = client.transport_closed_at
            if not client.connected and now - client.opened_at >= first_connect:
                self.close_client(client, NEVER_CONNECTED, client.last_request, now)
                ended.append((client.id, NEVER_CONNECTED))
            elif closed_at is not None and now - closed_at >= grace:
                self.close_client(client, TRANSPORT_CLOSED, closed_at, now)
                ended.append((client.id, TRANSPORT_CLOSED))
            elif now - client.ping_at >= silence:
                self.close_client(client, TIMEOUT, client.last_request, now)
                ended.append((client.id, TIMEOUT))
        return ended

    async def upkeep(self) -> None:
        """The periodic work of the sweeper task (a cluster engine does more)."""
        self.sweep()

    async def stop(self) -> None:
        """The node is stopping (the app's shutdown): end its sessions."""
        self.shutdown()

    async def load(self, client_id: str) -> None:
        """Make a session served elsewhere known here before a transport binds to it (one
        node's engine knows every session already)."""
        return None

    async def fill(self, client: Client) -> None:
        """Bring what is queued for `client` elsewhere into `client.queue` (a socket about to
        send calls it; one node's engine has everything here already)."""
        return None

    def shutdown(self, now: datetime | None = None) -> None:
        """End every session with `server_shutdown` (SIGTERM): holds answered, sockets closed."""
        now = now or self.clock()
        for client in list(self.clients.values()):
            self.close_client(client, SERVER_SHUTDOWN, now, now)

    # ---- publishing ---------------------------------------------------------------------

    def _publish(self, message: Message, context: Context, now: datetime) -> Message:
        reply, delivery = self._publish_checked(message, context)
        if delivery is not None:
            channel = message["channel"]
            self._fan_out(channel, delivery)
            sender = message.get("clientId")
            self._notify(lambda o: o.client_published(sender, channel, now))
        return reply

    def _publish_checked(
        self, message: Message, context: Context
    ) -> tuple[Message, Delivery | None]:
        """A publish's reply and, when it may go out, its delivery (counted as published)."""
        reply = _reply(message)
        channel = message.get("channel")
        problem = self._publish_problem(message, context)
        delivery = None
        if problem is None:
            delivery = Delivery(_delivered_form(message))
            size = len(delivery.text().encode())
            if size > self.config.max_message_bytes:
                self.stats["refused_too_large"] += 1
                limit = self.config.max_message_bytes
                problem = error(
                    407,
                    str(channel),
                    f"Failed to publish: {size} bytes is over the {limit}-byte limit",
                )
                delivery = None
            else:
                self.stats["publishes"] += 1
        if problem:
            reply["error"] = problem
        reply["successful"] = problem is None
        return reply, delivery

    def _publish_problem(self, message: Message, context: Context) -> str | None:
        channel = message.get("channel")
        if channel is None:
            return error(402, "channel", "Missing required parameter")
        if isinstance(channel, str) and channels.is_meta(channel):
            return error(403, channel, "Forbidden channel")
        if not channels.is_name(channel):
            return error(405, str(channel), "Invalid channel")
        assert isinstance(channel, str)
        if "data" not in message:
            return error(402, "data", "Missing required parameter")
        if channels.is_server_only(channel):
            return error(403, channel, "Forbidden channel")
        client_id = message.get("clientId")
        if client_id:
            if not isinstance(client_id, str) or client_id not in self.clients:
                return error(401, str(client_id), "Unknown client")
            return None
        if self.config.open_publish or context.has_secret:
            return None
        ext = message.get("ext")
        if isinstance(ext, dict) and _secret_matches(ext.get("auth"), self.config.secret):
            return None
        return error(
            403, channel, "Authentication required (a publish without a client id needs the secret)"
        )

    async def publish(self, channel: str, data: Any) -> int:
        """Publish from the server itself (allowed on `/trail/**`); returns the recipient count."""
        if not channels.is_name(channel) or channels.is_meta(channel):
            raise ValueError(f"cannot publish to {channel!r}")
        self.stats["server_publishes"] += 1
        return self._fan_out(channel, Delivery({"channel": channel, "data": data}))

    def _fan_out(self, channel: str, delivery: Delivery) -> int:
        """Queue `delivery` once for every client with a matching subscription.

        `/service/**` messages are for the server alone and reach nobody.
        """
        if channels.is_service(channel):
            return 0
        recipients: set[str] = set()
        patterns = channels.expand(channel)
        for pattern in patterns:
            members = self.subscribers.get(pattern)
            if members:
                recipients.update(members)
        if self.listeners:
            self._tell_listeners(patterns, channel, delivery.message.get("data"))
        limit = self.config.max_queued_messages
        for client_id in recipients:
            client = self.clients[client_id]
            queue = client.queue
            if len(queue) >= limit:
                queue.popleft()
                client.dropped += 1
                self.stats["dropped_queue_full"] += 1
            queue.append(delivery)
            if client.socket is not None:
                client.socket.wake()
            elif client.waiter is not None:
                _wake(client)
        self.stats["deliveries"] += len(recipients)
        return len(recipients)

    def _tell_listeners(self, patterns: list[str], channel: str, data: Any) -> None:
        for pattern in patterns:
            for listener in self.listeners.get(pattern, ()):
                try:
                    listener(channel, data)
                except Exception:
                    log.exception("in-process listener on %s failed", pattern)

    # ---- extensions ---------------------------------------------------------------------

    def _has_hook(self, name: str) -> bool:
        return any(getattr(e, name, None) is not None for e in self.extensions)

    async def _run_extensions(self, hook: str, message: Message, context: Context) -> None:
        for extension in self.extensions:
            method = getattr(extension, hook, None)
            if method is not None:
                await method(message, context)

    async def _outgoing_replies(
        self, items: list[Outgoing], incoming: list[Message], context: Context
    ) -> list[Outgoing]:
        """Run outgoing extensions on each reply and on a private copy of each delivery."""
        by_id = {m.get("id"): m for m in incoming if isinstance(m, dict)}
        out: list[Outgoing] = []
        for item in items:
            if isinstance(item, Delivery):
                message = json.loads(item.text())
                item_context = replace(context, message=None)
            else:
                message = item
                item_context = replace(context, message=by_id.get(item.get("id")))
            await self._run_extensions("outgoing", message, item_context)
            out.append(message)
        return out

    async def outgoing_deliveries(self, items: list[Delivery], context: Context) -> list[Outgoing]:
        """Deliveries as a socket sends them, after outgoing extensions if any."""
        if not self._has_hook("outgoing"):
            return list(items)
        return await self._outgoing_replies(list(items), [], context)


def subscription_problem(channel: Any) -> str | None:
    """Why a client may not subscribe to `channel` (None: it may)."""
    if not isinstance(channel, str):
        return error(405, str(channel), "Invalid channel")
    if channels.is_valid(channel) and (channels.is_meta(channel) or channels.is_service(channel)):
        return error(403, channel, "Forbidden channel")
    if not channels.is_valid(channel):
        return error(405, channel, "Invalid channel")
    return None


def _delivered_form(message: Message) -> Message:
    """The whole published message minus `clientId`, without the fields of `ext` named like a
    secret (`auth`, `auth_token`, `trail.token`, `apiKey`, ...) at any depth."""
    out = {k: v for k, v in message.items() if k != "clientId"}
    if "ext" in out:
        ext = without_secrets(out["ext"])
        if ext:
            out["ext"] = ext
        else:
            del out["ext"]
    return out


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake(client: Client) -> None:
    """Answer the client's held long-poll, if one is waiting."""
    if client.waiter is not None:
        _resolve(client.waiter)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    if seconds <= 0 or event.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _utc_now() -> datetime:
    return datetime.now(UTC)
