"""The Bayeux engine of a cluster: sessions, subscriptions and queues kept in Redis.

With `--redis`, every node runs a `ClusterEngine` on the same Redis database, and any node can
serve any request of any client (no sticky sessions): a client may handshake on node A,
subscribe on B and long-poll on A and C in turn.

What Redis holds (every key under `trail:bayeux:`):

- `c:<id>` a hash per session (ext, opened, alive, ping, why, gen, connected, addr, node), and
  `s:<id>` its channels, `q:<id>` its queue of encoded messages (capped at
  `max_queued_messages`, oldest dropped); each with a TTL renewed by the session's requests,
  so the keys of a session nobody ends still go away;
- `ch:<channel or pattern>` the set of sessions subscribed to it (members of gone sessions are
  removed by the next publish that meets them);
- `clients` a sorted set of every session by the moment it ends unless heard from (the
  silence, grace and first-connect deadlines of one node's engine), read by every node's reaper;
- `addrs` live sessions per client address, `gone:<id>` a short-lived mark of an ended session.

A publish is one Lua script: it appends the message to the queue of every session subscribed
to the channel or a pattern matching it (each session once), then PUBLISHes one event naming
them on `trail:bayeux:events`, which every node hears; a node holding a connect or a socket of
one of them takes its queue (another script, so each message is taken once) and answers.
Scripts run one at a time in Redis, so the messages of one publisher are queued in the order
it published them. Each `/meta/connect` numbers the session's connects (`gen`): a hold whose
connect is no longer the latest, on any node, takes nothing and is answered, so messages go to
the connect the client is waiting on.

Observer guarantees (what presence relies on): `client_opened` fires once, on the node that
served the handshake; `client_connected` once, on the node that served the session's first
successful connect; `client_active`, `client_subscribed`, `client_unsubscribed` and
`client_published` on the node serving the request (subscribed/unsubscribed only when the
subscription changed); `client_closed` exactly once cluster-wide, on the node whose script
removed the session (a disconnect, or the reaper that found its deadline passed). When Redis
lost a session (restarted without its data), the first node to notice claims `gone:<id>` and
ends it `timeout` at the last request it saw; its client gets `401::Unknown client` with
`reconnect: handshake` advice, and Faye clients handshake and subscribe again by themselves.

While Redis is unreachable, requests that need it are answered unsuccessfully with `retry`
advice (clients try again after a second); the node's link (`RedisLink`) reports it in /health.
Limits hold cluster-wide: sessions (`max_clients`), sessions per address, subscriptions per
session, queue length, message size; the handshake rate per address is counted per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from trailcli import channels
from trailcli.collector.bayeux.engine import (
    BATCH_DELAY,
    CONNECTION_TYPES,
    DISCONNECT,
    NEVER_CONNECTED,
    SESSIONS_RETRY_SECONDS,
    TIMEOUT,
    TRANSPORT_CLOSED,
    Batch,
    Client,
    Clock,
    Context,
    Delivery,
    Engine,
    EngineConfig,
    Message,
    Outgoing,
    PendingConnect,
    _reply,
    _resolve,
    _settled,
    _wake,
    dumps,
    error,
    new_client_id,
    strip_secrets,
    subscription_problem,
)
from trailcli.collector.limits import MemoryAddressLimiter

log = logging.getLogger("trail.bayeux")

PREFIX = "trail:bayeux:"
EVENTS = PREFIX + "events"
REAP_BATCH = 200  # sessions one reaper call ends at most
RETRY_MS = 1000  # advice.interval while Redis is unreachable
POOL_SIZE = 64  # connections to Redis a node's engine uses at most
COMMAND_TIMEOUT = 10.0  # seconds a command (or the wait for a connection) may take
CHECK_SECONDS = 5.0  # how often a node checks that the sessions it caches still exist
STOP_SECONDS = 2.0  # how long a stopping node spends telling Redis its transports closed

# ARGV: prefix, id, ext, now, deadline, max clients, address key, max per address, ttl ms, node
_HANDSHAKE = """
local p, cid = ARGV[1], ARGV[2]
if redis.call('ZCARD', p..'clients') >= tonumber(ARGV[6]) then return 1 end
local addr = ARGV[7]
if addr ~= '' then
  local n = tonumber(redis.call('HGET', p..'addrs', addr) or '0')
  if n >= tonumber(ARGV[8]) then return 2 end
  redis.call('HINCRBY', p..'addrs', addr, 1)
end
local key = p..'c:'..cid
redis.call('HSET', key, 'ext', ARGV[3], 'opened', ARGV[4], 'alive', ARGV[4], 'ping', ARGV[4],
  'why', 'never_connected', 'gen', 0, 'addr', addr, 'node', ARGV[10])
redis.call('PEXPIRE', key, ARGV[9])
redis.call('ZADD', p..'clients', ARGV[5], cid)
return 0
"""

# A request from a session: it is alive. ARGV: prefix, id, now, silence s, ttl ms, connect?, node
# Returns nil for an unknown session, else {ext, opened, gen, first connect?, connected, queue}:
# a connect takes the queue at once (one round trip for a long-poll answered at once).
_ENTER = """
local p, cid, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = p..'c:'..cid
if redis.call('EXISTS', key) == 0 then return nil end
local ttl = ARGV[5]
redis.call('HSET', key, 'alive', ARGV[3])
local gen, first = tonumber(redis.call('HGET', key, 'gen')), 0
local why = redis.call('HGET', key, 'why')
if ARGV[6] == '1' then
  gen = redis.call('HINCRBY', key, 'gen', 1)
  first = redis.call('HSETNX', key, 'connected', '1')
  redis.call('HSET', key, 'ping', ARGV[3], 'why', 'timeout')
  redis.call('ZADD', p..'clients', now + tonumber(ARGV[4]), cid)
  local prev = redis.call('HGET', key, 'node')
  redis.call('HSET', key, 'node', ARGV[7])
  if prev ~= ARGV[7] then redis.call('PUBLISH', p..'events', 'w\\n'..cid) end
elseif why == 'transport_closed' then
  local ping = tonumber(redis.call('HGET', key, 'ping'))
  redis.call('HSET', key, 'why', 'timeout')
  redis.call('ZADD', p..'clients', ping + tonumber(ARGV[4]), cid)
end
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', p..'s:'..cid, ttl)
local q, items = p..'q:'..cid, {}
if ARGV[6] == '1' then
  items = redis.call('LRANGE', q, 0, -1)
  if #items > 0 then redis.call('DEL', q) end
else
  redis.call('PEXPIRE', q, ttl)
end
return {redis.call('HGET', key, 'ext'), redis.call('HGET', key, 'opened'), gen, first,
  redis.call('HGET', key, 'connected') or '0', items}
"""

# A hold ended (the client is alive now). ARGV: prefix, id, now, silence s
_PING = """
local key = ARGV[1]..'c:'..ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
if redis.call('HGET', key, 'why') ~= 'timeout' then return 0 end
redis.call('HSET', key, 'ping', ARGV[3])
redis.call('ZADD', ARGV[1]..'clients', 'XX', tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[2])
return 1
"""

# The session's transport here went away. ARGV: prefix, id, now, grace s, gen
_TRANSPORT_CLOSED = """
local key = ARGV[1]..'c:'..ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
if redis.call('HGET', key, 'gen') ~= ARGV[5] then return 0 end
if redis.call('HGET', key, 'why') ~= 'timeout' then return 0 end
redis.call('HSET', key, 'why', 'transport_closed', 'alive', ARGV[3])
redis.call('ZADD', ARGV[1]..'clients', 'XX', tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[2])
return 1
"""

# ARGV: prefix, id, channel, max subscriptions, ttl ms. 1 added, 0 had it, -1 unknown, -2 full
_SUBSCRIBE = """
local p, cid, ch = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', p..'c:'..cid) == 0 then return -1 end
local subs = p..'s:'..cid
if redis.call('SISMEMBER', subs, ch) == 1 then return 0 end
if redis.call('SCARD', subs) >= tonumber(ARGV[4]) then return -2 end
redis.call('SADD', subs, ch)
redis.call('PEXPIRE', subs, ARGV[5])
redis.call('SADD', p..'ch:'..ch, cid)
return 1
"""

# ARGV: prefix, id, channel. 1 removed, 0 was not subscribed, -1 unknown
_UNSUBSCRIBE = """
local p, cid, ch = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', p..'c:'..cid) == 0 then return -1 end
if redis.call('SREM', p..'s:'..cid, ch) == 0 then return 0 end
redis.call('SREM', p..'ch:'..ch, cid)
return 1
"""

# ARGV: prefix, text, queue limit, ttl ms, channel, patterns...  Returns {recipients, dropped}.
_PUBLISH = """
local p, text, limit, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local seen, ids, dropped = {}, {}, 0
for i = 6, #ARGV do
  local set = p..'ch:'..ARGV[i]
  for _, cid in ipairs(redis.call('SMEMBERS', set)) do
    if not seen[cid] then
      seen[cid] = true
      if redis.call('EXISTS', p..'c:'..cid) == 1 then
        local q = p..'q:'..cid
        local n = redis.call('RPUSH', q, text)
        if n > limit then
          redis.call('LTRIM', q, n - limit, -1)
          dropped = dropped + n - limit
        end
        redis.call('PEXPIRE', q, ttl)
        ids[#ids + 1] = cid
      else
        redis.call('SREM', set, cid)
      end
    end
  end
end
redis.call('PUBLISH', p..'events', 'p\\n'..table.concat(ids, ',')..'\\n'..ARGV[5]..'\\n'..text)
return {#ids, dropped}
"""

# Take the queue for the latest connect. ARGV: prefix, id, gen ('*': any connect, for an
# EventSource stream, whose connects may go to other nodes). nil when superseded or gone.
_TAKE = """
local p, cid = ARGV[1], ARGV[2]
local gen = redis.call('HGET', p..'c:'..cid, 'gen')
if not gen or (ARGV[3] ~= '*' and gen ~= ARGV[3]) then return nil end
local q = p..'q:'..cid
local items = redis.call('LRANGE', q, 0, -1)
if #items > 0 then redis.call('DEL', q) end
return items
"""

# Put messages a node took but could not deliver back at the head of the queue, and wake the
# nodes. ARGV: prefix, id, queue limit, ttl ms, messages oldest first
_GIVE_BACK = """
local p, cid = ARGV[1], ARGV[2]
if redis.call('EXISTS', p..'c:'..cid) == 0 then return 0 end
local q = p..'q:'..cid
for i = #ARGV, 5, -1 do redis.call('LPUSH', q, ARGV[i]) end
redis.call('LTRIM', q, -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', q, ARGV[4])
redis.call('PUBLISH', p..'events', 'p\\n'..cid..'\\n\\n')
return 1
"""

# Removing a session, shared by the disconnect and the reaper; only the caller that finds it
# gets its fields back, which is what makes its end fire once.
_DESTROY_FN = """
local function destroy(p, cid)
  local key = p..'c:'..cid
  redis.call('ZREM', p..'clients', cid)
  if redis.call('EXISTS', key) == 0 then return nil end
  local h = redis.call('HMGET', key, 'why', 'alive', 'addr')
  for _, ch in ipairs(redis.call('SMEMBERS', p..'s:'..cid)) do
    redis.call('SREM', p..'ch:'..ch, cid)
  end
  redis.call('DEL', key, p..'s:'..cid, p..'q:'..cid)
  local addr = h[3]
  if addr and addr ~= '' then
    if redis.call('HINCRBY', p..'addrs', addr, -1) <= 0 then redis.call('HDEL', p..'addrs', addr) end
  end
  redis.call('SET', p..'gone:'..cid, '1', 'EX', ARGV[#ARGV])
  return h
end
"""

# ARGV: prefix, id, gone s. Returns nil or {why, alive, addr}.
_DESTROY = (
    _DESTROY_FN
    + """
local h = destroy(ARGV[1], ARGV[2])
if h then redis.call('PUBLISH', ARGV[1]..'events', 'c\\n'..ARGV[2]) end
return h
"""
)

# Sessions whose deadline passed. ARGV: prefix, now, batch, silence s, gone s.
# Returns a flat list: id, why, alive, ...
_REAP = (
    _DESTROY_FN
    + """
local p = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', p..'clients', '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3]))
local out, ids = {}, {}
for i = 1, #due, 2 do
  local cid = due[i]
  local h = destroy(p, cid)
  if h then
    out[#out + 1] = cid; out[#out + 1] = h[1]; out[#out + 1] = h[2]
    ids[#ids + 1] = cid
  elseif redis.call('SET', p..'gone:'..cid, '1', 'NX', 'EX', ARGV[5]) then
    -- its keys expired with no node to end it: it timed out at its deadline
    out[#out + 1] = cid; out[#out + 1] = 'timeout'
    out[#out + 1] = tostring(tonumber(due[i + 1]) - tonumber(ARGV[4]))
  end
end
if #ids > 0 then redis.call('PUBLISH', p..'events', 'c\\n'..table.concat(ids, ',')) end
return out
"""
)


class _RateOnly(MemoryAddressLimiter):
    """The node's handshake rate per address; the sessions per address are counted in Redis."""

    def sessions(self, key: str) -> int:
        return 0

    def session_opened(self, key: str) -> None:
        return None

    def session_closed(self, key: str) -> None:
        return None


class ClusterEngine(Engine):
    """An `Engine` whose sessions, subscriptions and queues are shared through Redis.

    `self.clients` holds only the sessions this node is serving or served lately (a cache);
    Redis has the truth. `attach(link)` at start, then `hear_events()` runs while the node serves.
    """

    def __init__(
        self, config: EngineConfig | None = None, node_id: str = "node", clock: Clock | None = None
    ) -> None:
        config = config or EngineConfig()
        super().__init__(
            config, clock, _RateOnly(config.handshakes_per_minute, config.handshake_burst)
        )
        self.node_id = node_id
        self.link: Any = None  # trailcli.collector.redis_link.RedisLink
        self.redis: Any = None  # the engine's redis.asyncio client (attach)
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scripts: dict[str, Any] = {}
        # sessions with messages to take, gathered from events and taken in one pipeline
        self._to_take: dict[str, Client] = {}
        self._fresh: set[str] = set()  # sessions whose connect just took their queue
        self._taker: asyncio.Future[None] | None = None
        self._next_check = 0.0  # loop time of the next check of the cached sessions
        timeouts = 2 * self.config.timeout + self.config.grace + self.config.first_connect_timeout
        self.ttl_ms = int((timeouts + 60) * 1000)
        # how long an ended session's `gone:` mark stays: longer than any node keeps a copy of
        # the session after it ended (until the end's event or the next upkeep check)
        self.gone_seconds = int(2 * self.config.timeout + self.config.grace) + 1

    # ---- Redis plumbing -----------------------------------------------------------------

    def attach(self, link: Any) -> None:
        """Use `link` (a RedisLink) for every command."""
        self.link = link
        import redis.asyncio as aioredis

        # its own pool, waiting for a free connection rather than failing when every one is
        # busy (a burst of requests must not look like Redis lost); the same server as the link
        pool = aioredis.BlockingConnectionPool.from_url(
            link.url,
            max_connections=POOL_SIZE,
            timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
        )
        self.redis = client = aioredis.Redis(connection_pool=pool)
        for name, text in (
            ("handshake", _HANDSHAKE),
            ("enter", _ENTER),
            ("ping", _PING),
            ("transport_closed", _TRANSPORT_CLOSED),
            ("subscribe", _SUBSCRIBE),
            ("unsubscribe", _UNSUBSCRIBE),
            ("publish", _PUBLISH),
            ("take", _TAKE),
            ("give_back", _GIVE_BACK),
            ("destroy", _DESTROY),
            ("reap", _REAP),
        ):
            self._scripts[name] = client.register_script(text)

    async def _run(self, name: str, *args: Any) -> Any:
        """Run script `name`; a Redis failure marks the link down and is raised."""
        from redis.exceptions import RedisError

        try:
            return await self._scripts[name](keys=[], args=[PREFIX, *args])
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            raise RedisDown(str(exc)) from exc

    def _spawn(self, work: Awaitable[Any]) -> None:
        """Run `work` in the background (a Redis update nothing waits for)."""

        async def run() -> None:
            with contextlib.suppress(RedisDown):
                await work

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the request pipeline -----------------------------------------------------------

    async def handle(self, messages: list[Message], context: Context) -> Batch:
        batch = Batch(replies=[])
        entered: set[str] = set()
        for message in messages:
            if self.extensions:
                await self._run_extensions("incoming", message, context)
            try:
                await self._handle_shared(message, context, batch, entered)
            except RedisDown:
                reply = _unavailable(message)
                self._count_error(reply)
                batch.replies.append(reply)
        if self._has_hook("outgoing"):
            batch.replies = await self._outgoing_replies(batch.replies, messages, context)
        return batch

    async def _handle_shared(
        self, message: Message, context: Context, batch: Batch, entered: set[str]
    ) -> None:
        now = self.clock()
        channel = message.get("channel")
        self.stats["messages"] += 1
        reply: Message | None
        if message.get("error"):
            batch.replies.append(self._rejected(message))
            return
        if channel == "/meta/handshake":
            reply = await self._shared_handshake(message, context, now)
            self._count_error(reply)
            batch.replies.append(reply)
            return
        client_id = message.get("clientId")
        is_connect = (
            channel == "/meta/connect" and message.get("connectionType") in CONNECTION_TYPES
        )
        if isinstance(client_id, str) and client_id and (is_connect or client_id not in entered):
            await self._enter(client_id, now, is_connect)
            entered.add(client_id)
        if channel == "/meta/connect":
            reply, pending = self._connect(message, context)
            if pending is not None:
                self._supersede(batch)
                batch.connect = pending
                reply = None
        elif channel in ("/meta/subscribe", "/meta/unsubscribe"):
            reply = await self._shared_subscription(message, now, channel == "/meta/subscribe")
        elif channel == "/meta/disconnect":
            reply = await self._shared_disconnect(message, now)
        else:
            reply = await self._shared_publish(message, context, now)
        if reply is not None:
            self._count_error(reply)
            batch.replies.append(reply)

    async def _enter(self, client_id: str, now: datetime, connect: bool) -> None:
        """Tell Redis of a request from `client_id`; keep the session here if it is live, end
        it here if Redis lost it."""
        silence = 2 * self.config.timeout
        found = await self._run(
            "enter", client_id, now.timestamp(), silence, self.ttl_ms, int(connect), self.node_id
        )
        client = self.clients.get(client_id)
        if found is None:
            if client is not None:
                await self._lost(client, now)
            return
        ext_text, opened, gen, first, connected, items = found
        if client is None:
            ext = _loads(ext_text)
            opened_at = datetime.fromtimestamp(float(opened), UTC)
            client = Client(
                id=client_id, ext=ext, opened_at=opened_at, last_request=now, ping_at=now
            )
            self.clients[client_id] = client
        if connect:
            client.gen = int(gen)
            self._queue_taken(client, items)
            self._fresh.add(client_id)
            # the first connect cluster-wide makes `_connect` tell observers; later ones do not
            client.connected = not int(first)
        else:
            client.connected = connected in (b"1", "1")
        self._touch(client_id, now)

    async def _lost(self, client: Client, now: datetime) -> None:
        """`client`'s session is gone from Redis without an end (Redis restarted empty): the
        first node to notice ends it."""
        from redis.exceptions import RedisError

        try:
            won = await self.redis.set(
                PREFIX + "gone:" + client.id, "1", nx=True, ex=self.gone_seconds
            )
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            raise RedisDown(str(exc)) from exc
        if won:
            self.close_client(client, TIMEOUT, client.last_request, now)
        else:
            self._forget(client)

    def _forget(self, client: Client) -> None:
        """Drop this node's copy of a session that ended elsewhere (no observer hears of it)."""
        if client.ended:
            return
        client.ended = True
        self.clients.pop(client.id, None)
        client.queue.clear()
        _wake(client)
        if client.socket is not None:
            client.socket.wake()
            client.socket = None

    # ---- handshake ----------------------------------------------------------------------

    async def _shared_handshake(self, message: Message, context: Context, now: datetime) -> Message:
        reply, problem, wait, key = self._handshake_checks(message, context, now)
        if problem:
            return self._refused(reply, problem, wait)
        ext = strip_secrets(message.get("ext") or {})
        ext = ext if isinstance(ext, dict) else {}
        client_id = new_client_id()
        deadline = now.timestamp() + self.config.first_connect_timeout
        result = await self._run(
            "handshake",
            client_id,
            dumps(ext),
            now.timestamp(),
            deadline,
            self.config.max_clients,
            key or "",
            self.config.max_sessions_per_address,
            self.ttl_ms,
            self.node_id,
        )
        if result == 1:
            self.stats["refused_clients"] += 1
            limit = self.config.max_clients
            text = f"Too many clients in the cluster (limit {limit})"
            return self._refused(reply, error(503, None, text), SESSIONS_RETRY_SECONDS)
        if result == 2:
            self.stats["refused_sessions_per_address"] += 1
            limit = self.config.max_sessions_per_address
            text = f"Too many sessions from this address (limit {limit})"
            return self._refused(reply, error(429, None, text), SESSIONS_RETRY_SECONDS)
        client = Client(id=client_id, ext=ext, opened_at=now, last_request=now, ping_at=now)
        self.clients[client_id] = client
        self.stats["handshakes"] += 1
        self._notify(lambda o: o.client_opened(client_id, ext, now))
        return self._opened(reply, client)

    # ---- subscribe / unsubscribe --------------------------------------------------------

    async def _shared_subscription(self, message: Message, now: datetime, add: bool) -> Message:
        reply, client, channels, problem = self._subscription_request(message)
        for channel in channels:
            assert client is not None  # channels only for a known client
            if add:
                problem = await self._subscribe_shared(client, channel, now)
            else:
                problem = await self._unsubscribe_shared(client, channel, now)
            if problem:
                break
        return _settled(reply, problem)

    async def _subscribe_shared(self, client: Client, channel: Any, now: datetime) -> str | None:
        problem = subscription_problem(channel)
        if problem:
            return problem
        limit = self.config.max_subscriptions
        result = await self._run("subscribe", client.id, channel, limit, self.ttl_ms)
        if result == -1:
            return error(401, client.id, "Unknown client")
        if result == -2:
            self.stats["refused_subscriptions"] += 1
            return error(403, channel, f"Too many subscriptions for one client (limit {limit})")
        client.subscriptions.add(channel)
        if result == 1:
            self.stats["subscribes"] += 1
            self._notify(lambda o: o.client_subscribed(client.id, channel, now))
        return None

    async def _unsubscribe_shared(self, client: Client, channel: Any, now: datetime) -> str | None:
        if not isinstance(channel, str) or not channels.is_valid(channel):
            return error(405, str(channel), "Invalid channel")
        result = await self._run("unsubscribe", client.id, channel)
        if result == -1:
            return error(401, client.id, "Unknown client")
        client.subscriptions.discard(channel)
        if result == 1:
            self._notify(lambda o: o.client_unsubscribed(client.id, channel, now))
        return None

    # ---- disconnect and session ends ----------------------------------------------------

    async def _shared_disconnect(self, message: Message, now: datetime) -> Message:
        reply = _reply(message)
        problem = self._known_client_problem(message)
        if problem:
            reply.pop("clientId", None)
            reply["error"] = problem
            reply["successful"] = False
            return reply
        client = self.clients[message["clientId"]]
        if await self._run("destroy", client.id, self.gone_seconds) is not None:
            self.close_client(client, DISCONNECT, now, now)
        else:
            self._forget(client)
        reply["successful"] = True
        return reply

    def close_client(
        self, client: Client, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        client.subscriptions.clear()  # kept in Redis, not in the node's index
        super().close_client(client, reason, last_alive, now)

    def _ended(self, client_id: str, reason: str, last_alive: datetime, now: datetime) -> None:
        """A session this node's reaper removed from Redis: it ends here, once."""
        client = self.clients.get(client_id)
        if client is not None:
            self.close_client(client, reason, last_alive, now)
            return
        self.stats[f"closed_{reason}"] += 1
        self._notify(lambda o: o.client_closed(client_id, reason, last_alive, now))

    def sweep(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """Sessions end through `upkeep` (the reaper in Redis) in a cluster."""
        return []

    async def upkeep(self) -> None:
        """End the sessions whose deadline passed (any node may; each ends once), check that
        the sessions cached here still exist, and drop the ones this node no longer serves."""
        if self.link is None or not self.link.up:
            return
        now = self.clock()
        try:
            await self._reap(now)
            tick = asyncio.get_running_loop().time()
            if tick >= self._next_check:
                self._next_check = tick + CHECK_SECONDS
                await self._check_cached(now)
        except RedisDown:
            return

    async def _reap(self, now: datetime) -> None:
        silence = 2 * self.config.timeout
        while True:
            rows = await self._run("reap", now.timestamp(), REAP_BATCH, silence, self.gone_seconds)
            for i in range(0, len(rows), 3):
                client_id, why, alive = (_text(rows[i]), _text(rows[i + 1]), rows[i + 2])
                last_alive = datetime.fromtimestamp(float(alive), UTC)
                reason = why if why in (TIMEOUT, TRANSPORT_CLOSED, NEVER_CONNECTED) else TIMEOUT
                self._ended(client_id, reason, last_alive, now)
            if len(rows) < 3 * REAP_BATCH:
                return

    async def _check_cached(self, now: datetime) -> None:
        from redis.exceptions import RedisError

        cached = list(self.clients.values())
        if not cached:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for client in cached:
                    pipe.exists(PREFIX + "c:" + client.id)
                found = await pipe.execute()
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            raise RedisDown(str(exc)) from exc
        idle = 2 * self.config.timeout + self.config.grace
        for client, exists in zip(cached, found, strict=True):
            if client.ended:
                continue
            if not exists:
                await self._lost(client, now)
            elif (
                not client.held
                and client.socket is None
                and (now - client.last_request).total_seconds() > idle
            ):
                self._forget(client)  # served elsewhere now

    async def stop(self) -> None:
        """This node stops; the sessions live on: their transports here closed, so each has
        `grace` to come back on another node (told to Redis in one pipeline, given at most
        `STOP_SECONDS`: a node whose Redis is gone still stops at once)."""
        self.stopping = True
        serving = [c for c in self.clients.values() if c.held or c.socket is not None]
        if serving and self.link is not None and self.link.up:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._closed_here(serving), STOP_SECONDS)
        for client in list(self.clients.values()):
            _wake(client)
            if client.socket is not None:
                client.socket.close()
                client.socket = None
        for task in list(self._tasks):
            task.cancel()

    async def _closed_here(self, clients: list[Client]) -> None:
        at = self.clock().timestamp()
        async with self.redis.pipeline(transaction=False) as pipe:
            for client in clients:
                args = [PREFIX, client.id, at, self.config.grace, client.gen]
                await self._scripts["transport_closed"](keys=[], args=args, client=pipe)
            await pipe.execute()

    def transport_closed(self, client_id: str, socket: Any = None) -> None:
        client = self.clients.get(client_id)
        if client is None or client.ended or self.stopping:
            return
        if socket is not None:
            if client.socket is not socket:
                return
            client.socket = None
        if client.transport_closed_at is None:
            client.transport_closed_at = self.clock()
            self.stats["transport_closed"] += 1
            at = client.transport_closed_at.timestamp()
            self._spawn(self._run("transport_closed", client_id, at, self.config.grace, client.gen))
            self._give_back(client)

    # ---- connects and deliveries --------------------------------------------------------

    async def hold(
        self, pending: PendingConnect, stop: asyncio.Event | None = None
    ) -> list[Outgoing]:
        started = asyncio.get_running_loop().time()
        try:
            return await super().hold(pending, stop)
        finally:
            client = pending.client
            self._fresh.discard(client.id)
            held = asyncio.get_running_loop().time() - started
            # the connect set the silence deadline; a long hold moves it on (a short one,
            # answered with messages, leaves it: the next connect follows at once)
            if not client.ended and held > self.config.timeout / 2:
                silence = 2 * self.config.timeout
                self._spawn(self._run("ping", client.id, self.clock().timestamp(), silence))

    async def _wait_for_messages(self, client: Client, token: object, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not client.ended and client.hold_token is token and not self.stopping:
            waiter: asyncio.Future[None] = loop.create_future()
            client.waiter = waiter  # before taking: a publish from now on wakes it
            timer = None
            try:
                # the taker fills the queue of a waiting connect; a connect takes for itself
                # when it starts and when woken with nothing (moved elsewhere, Redis back)
                fresh = client.id in self._fresh
                self._fresh.discard(client.id)
                if not client.queue and not fresh and not await self._take(client):
                    break
                if client.queue:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                timer = loop.call_later(remaining, _resolve, waiter)
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                if client.waiter is waiter:
                    client.waiter = None

    async def load(self, client_id: str) -> None:
        if client_id not in self.clients:
            with contextlib.suppress(RedisDown):
                await self._enter(client_id, self.clock(), False)

    async def fill(self, client: Client) -> None:
        if not client.queue:
            await self._take(client)

    def _schedule_take(self, client: Client) -> None:
        """Take `client`'s queue soon, in one pipeline with the others woken meanwhile."""
        self._to_take[client.id] = client
        if self._taker is None or self._taker.done():
            self._taker = asyncio.ensure_future(self._take_woken())

    async def _take_woken(self) -> None:
        from redis.exceptions import RedisError

        # let the publishes arriving just after join the same answers (as one node does)
        await asyncio.sleep(BATCH_DELAY)
        while self._to_take:
            woken = list(self._to_take.values())
            self._to_take.clear()
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for client in woken:
                        await self._scripts["take"](
                            keys=[], args=[PREFIX, client.id, _taker_gen(client)], client=pipe
                        )
                    results = await pipe.execute()
            except (RedisError, OSError) as exc:
                self.link.failed(exc)
                results = [None] * len(woken)
            for client, items in zip(woken, results, strict=True):
                if items:
                    self._queue_taken(client, items)
                    if not client.held and client.socket is None:
                        self._give_back(client)  # its connect ended meanwhile
                        continue
                self._wake_client(client)

    def _queue_taken(self, client: Client, items: list[bytes]) -> None:
        limit = self.config.max_queued_messages
        for item in items:
            if len(client.queue) >= limit:
                client.queue.popleft()
                client.dropped += 1
                self.stats["dropped_queue_full"] += 1
            client.queue.append(Delivery.from_text(_text(item)))

    def _give_back(self, client: Client) -> None:
        """Return what this node took for `client` but no longer has a connect to answer with."""
        if not client.queue:
            return
        texts = [d.text() for d in self.take(client)]
        limit = self.config.max_queued_messages
        self._spawn(self._run("give_back", client.id, limit, self.ttl_ms, *texts))

    async def _take(self, client: Client) -> bool:
        """Move the session's queue from Redis to `client.queue`; False when this node's
        connect is no longer the client's latest (or Redis is down): the hold should end."""
        try:
            items = await self._run("take", client.id, _taker_gen(client))
        except RedisDown:
            return False
        if items is None:
            return False
        self._queue_taken(client, items)
        return True

    def bind_socket(self, client_id: str, socket: Any) -> Client | None:
        client = super().bind_socket(client_id, socket)
        if client is not None:
            socket.wake()  # take what was queued while it was elsewhere
        return client

    # ---- publishing ---------------------------------------------------------------------

    async def _shared_publish(self, message: Message, context: Context, now: datetime) -> Message:
        reply, delivery = self._publish_checked(message, context)
        if delivery is not None:
            channel = message["channel"]
            await self._fan_out_shared(channel, delivery)
            sender = message.get("clientId")
            self._notify(lambda o: o.client_published(sender, channel, now))
        return reply

    async def publish(self, channel: str, data: Any) -> int:
        if not channels.is_name(channel) or channels.is_meta(channel):
            raise ValueError(f"cannot publish to {channel!r}")
        self.stats["server_publishes"] += 1
        return await self._fan_out_shared(channel, Delivery({"channel": channel, "data": data}))

    async def _fan_out_shared(self, channel: str, delivery: Delivery) -> int:
        """Queue `delivery` for every matching session in the cluster and wake their nodes.
        `/service/**` reaches nobody; in-process listeners of every node hear it."""
        patterns = [] if channels.is_service(channel) else channels.expand(channel)
        count, dropped = await self._run(
            "publish",
            delivery.text(),
            self.config.max_queued_messages,
            self.ttl_ms,
            channel,
            *patterns,
        )
        self.stats["deliveries"] += int(count)
        self.stats["dropped_queue_full"] += int(dropped)
        return int(count)

    # ---- the events every node hears ----------------------------------------------------

    async def hear_events(self) -> None:
        """Hear the cluster's events until cancelled, resubscribing after Redis comes back."""
        from redis.exceptions import RedisError

        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(EVENTS)
                self._wake_all()  # anything published while this node was deaf is queued
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        self._on_event(item["data"])
            except (RedisError, OSError) as exc:
                self.link.failed(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await self.link.wait_up()
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Close the engine's connections to Redis (after `hear_events` was cancelled)."""
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    def _wake_all(self) -> None:
        for client in list(self.clients.values()):
            self._wake_client(client)

    def _wake_client(self, client: Client) -> None:
        if client.socket is not None:
            client.socket.wake()
        elif client.waiter is not None:
            _wake(client)

    def _on_event(self, raw: bytes | str) -> None:
        text = _text(raw)
        kind, _, rest = text.partition("\n")
        if kind == "p":
            ids, _, rest = rest.partition("\n")
            channel, _, body = rest.partition("\n")
            if ids:
                for client_id in ids.split(","):
                    client = self.clients.get(client_id)
                    if client is not None and (client.held or client.socket is not None):
                        self._schedule_take(client)
            if self.listeners and channel:
                patterns = channels.expand(channel)
                if any(p in self.listeners for p in patterns):
                    data = Delivery.from_text(body).message.get("data")
                    self._tell_listeners(patterns, channel, data)
        elif kind == "w":
            client = self.clients.get(rest)
            if client is not None and client.waiter is not None:
                _wake(client)  # its connect here is superseded by one on another node
        elif kind == "c":
            for client_id in rest.split(","):
                client = self.clients.get(client_id)
                if client is not None:
                    self._forget(client)


def _taker_gen(client: Client) -> int | str:
    """The connect number a take for `client` must match: its latest connect served here, or
    any while an EventSource stream is bound here (its connects come as separate requests,
    which a load balancer may send to other nodes; the stream stays the client's)."""
    return "*" if getattr(client.socket, "takes_for_any_connect", False) else client.gen


class RedisDown(Exception):
    """A Redis command failed; the link is marked down."""


def _unavailable(message: Message) -> Message:
    """The reply to a message that needs Redis while it is unreachable: try again soon."""
    reply = _reply(message)
    reply["successful"] = False
    reply["error"] = error(503, None, "Cluster state unavailable, try again")
    if message.get("channel") in ("/meta/handshake", "/meta/connect"):
        reply["advice"] = {"reconnect": "retry", "interval": RETRY_MS}
    return reply


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _loads(value: bytes | str | None) -> dict[str, Any]:
    import json

    if value is None:
        return {}
    try:
        loaded = json.loads(value)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
