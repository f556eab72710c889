"""The node as one of a cluster: its membership, heartbeats and live presence kept in Redis.

A node with `--redis` joins by taking `trail:live:<node-id>` (SET NX with a TTL of three
heartbeats, renewed with every heartbeat); a second node with an id that is live is refused.
Each node keeps in Redis what the others need of its live presence:

- `trail:nodes` (hash): node id -> its incarnation and last durable heartbeat;
- `trail:sessions:<node>` (hash): its open sessions (client id -> binding and start);
- `trail:persons:<node>` (hash): the persons it has online (key -> their last binding);
- `trail:person:<key>` (set): the nodes a person is online on, so a person's join and leave are
  announced once cluster-wide (by the node that adds the first member or removes the last);
- `trail:online:<node>` (string, TTL): its `/api/online` rows, merged by any node's endpoint.

When a node's live key expires (it died: SIGKILL, power loss), a survivor claims it with one
script run atomically (`CLAIM`): the first to run it gets the dead node's sessions and ends them
`node_lost` at its last heartbeat; every later attempt finds nothing. The claimed client ids stay
in `trail:lost:<node>` (a week), so the dead node, restarted, does not close them a second time.
Redis being lost does not stop the node: rows go to the WAL as always; what failed is rewritten
whole (`resync`) once Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time as _time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web

from trailcli.collector.redis_link import REDIS, RedisLink, end_if_cancelled, redacted_url
from trailcli.errors import TrailError
from trailcli.presence.live import Binding, Change
from trailcli.presence.rules import person_key

log = logging.getLogger("trail.cluster")

PREFIX = "trail:"
NODES = PREFIX + "nodes"
LOST_DAYS = 7  # how long the client ids a survivor closed are remembered for the dead node
MAX_OPS = 100_000  # Redis updates waiting; beyond, they are dropped and the next resync fixes it

# A dead node's sessions and persons, taken at most once. KEYS: nodes, live, sessions, persons,
# lost, seq floor. ARGV: node id, its incarnation, 1 to remember the client ids as closed by
# another node, the first seq the claimer writes with, the person-set prefix, how long (s) the
# closed ids and the seq floor are kept, 1 when a node leaves itself (its live key still held),
# the owner-key prefix (the sessions' owner keys go with them).
CLAIM = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return false end
if cjson.decode(rec)['inc'] ~= ARGV[2] then return false end
if ARGV[7] ~= '1' and redis.call('GET', KEYS[2]) == ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local sessions = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[3])
for i = 1, #sessions, 2 do redis.call('DEL', ARGV[8] .. sessions[i]) end
if ARGV[3] == '1' and #sessions > 0 then
  for i = 1, #sessions, 2 do redis.call('SADD', KEYS[5], sessions[i]) end
  redis.call('EXPIRE', KEYS[5], ARGV[6])
  local floor = tonumber(ARGV[4]) + #sessions
  local old = tonumber(redis.call('GET', KEYS[6]) or '0')
  if floor > old then redis.call('SET', KEYS[6], string.format('%.0f', floor), 'EX', ARGV[6]) end
end
local persons = redis.call('HGETALL', KEYS[4])
redis.call('DEL', KEYS[4])
local left = {}
for i = 1, #persons, 2 do
  local key = ARGV[5] .. persons[i]
  redis.call('SREM', key, ARGV[1])
  if redis.call('SCARD', key) == 0 then
    table.insert(left, persons[i]); table.insert(left, persons[i + 1])
  end
end
return {rec, sessions, left}
"""
LOST_SECONDS = LOST_DAYS * 86400

# The heartbeat: renew the live key unless another incarnation holds it, record the beat.
# KEYS: live, nodes. ARGV: incarnation, ttl ms, node id, record. Returns 0 when the id was taken,
# 2 when this node's record had gone (Redis restarted, or the node was declared lost), else 1.
BEAT = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local had = redis.call('HGET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if not had then return 2 end
return 1
"""

# A person online on this node: returns 1 when no other node had them (announce the join).
JOIN = """
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local added = redis.call('SADD', KEYS[1], ARGV[1])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0
"""

# A person gone from this node: returns 1 when no other node has them (announce the leave).
LEAVE = """
redis.call('HDEL', KEYS[2], ARGV[2])
local removed = redis.call('SREM', KEYS[1], ARGV[1])
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def live_key(node_id: str) -> str:
    return f"{PREFIX}live:{node_id}"


def _keys(node_id: str) -> list[str]:
    """The CLAIM script's KEYS for `node_id`."""
    return [
        NODES,
        live_key(node_id),
        f"{PREFIX}sessions:{node_id}",
        f"{PREFIX}persons:{node_id}",
        f"{PREFIX}lost:{node_id}",
        f"{PREFIX}seqfloor:{node_id}",
    ]


PERSON = PREFIX + "person:"
OWNER = PREFIX + "owner:"  # client id -> the node that opened the session (writes its rows)
INBOX = PREFIX + "presence-to:"  # + node id: the session events other nodes forward to it
WATCHER = PREFIX + "watcher:"  # client id -> 1: its handshake showed the API token
HANDOVER = PREFIX + "handover:"  # client id -> its state, left by a node that stopped cleanly
HANDOVER_SECONDS = 3600  # a session not heard of again within this is not taken over
KNOWN_SECONDS = 10.0  # how long a node trusts that a session it does not hold has an owner
OWNER_SECONDS = 7 * 86400  # a bound for owner keys nobody deleted (sessions end long before)
FORWARD_TRIES, FORWARD_WAIT = 4, 0.05  # an owner key may be a moment behind its handshake


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


@dataclass(frozen=True)
class LostSession:
    client_id: str
    binding: Binding
    opened_at: datetime

    def ended_at(self, last_heartbeat: datetime | None) -> datetime:
        return self.opened_at if last_heartbeat is None else max(last_heartbeat, self.opened_at)


@dataclass(frozen=True)
class LostNode:
    """What a survivor took over from a dead node: its sessions to end, the persons it left."""

    node_id: str
    last_heartbeat: datetime | None
    sessions: list[LostSession]
    left: list[Change]  # persons no node has any more: their leave, announced once
    first_seq: int


class Member(Protocol):
    """What the cluster asks of the node's presence tracker."""

    def cluster_state(self) -> tuple[list[tuple[str, Binding, datetime]], list[Change]]:
        """The open sessions (client id, binding, opened at) and one join per person online."""
        ...

    def online_rows(self) -> list[dict[str, Any]]: ...

    def announce_cluster(self, changes: list[Change]) -> None:
        """Publish joins and leaves the cluster decided are the first or the last."""
        ...

    def end_lost(self, lost: LostNode) -> None:
        """Write the dead node's offline rows (`node_lost`) and announce its leaves."""
        ...

    def forget(self, client_ids: set[str]) -> None:
        """Drop sessions another node already ended (this node was declared lost)."""
        ...

    def forwarded(self, event: list[Any]) -> None:
        """A session event another node's engine heard for a session this node opened."""
        ...

    def live_channels(self) -> dict[str, tuple[str, ...]]:
        """The live channels and the subscriptions that receive each."""
        ...

    def take_over(self, client_id: str, state: list[Any], now: datetime) -> None:
        """Hold a session whose node stopped cleanly while its client went on with another."""
        ...


def _binding_json(binding: Binding, at: datetime) -> bytes:
    return _dumps([binding.visit_token, binding.visitor_token, binding.user_id, at.isoformat()])


def _lost_session(client_id: bytes, value: bytes) -> LostSession:
    visit, visitor, user, at = orjson.loads(value)
    return LostSession(_text(client_id), Binding(visit, visitor, user), datetime.fromisoformat(at))


def _change_json(change: Change) -> bytes:
    return _dumps([change.user_id, change.visitor_token, change.visit_token, change.page])


def _leave(key: bytes, value: bytes, at: datetime) -> Change:
    user, visitor, visit, page = orjson.loads(value)
    return Change("leave", _text(key), user, visitor, visit, at, page, 0)


class Cluster:
    """This node's membership and shared presence; updates go through one ordered task."""

    def __init__(self, link: RedisLink, node_id: str, heartbeat: float) -> None:
        self.link = link
        self.redis = link.client
        self.node_id = node_id
        self.incarnation = secrets.token_hex(8)
        self.heartbeat = heartbeat
        self.ttl_ms = int(max(3 * heartbeat, 1.0) * 1000)
        self.member: Member | None = None
        self.seq_floor = 0
        self.lost_ids: set[str] = set()
        self._ops: asyncio.Queue[Callable[[], Awaitable[object]]] = asyncio.Queue(MAX_OPS)
        self._forwards: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue(MAX_OPS)
        self.watched: dict[str, bool] = {}  # channel -> whether any node's client subscribed
        self.forward_drops = 0
        self._owned_elsewhere: dict[str, float] = {}  # client id -> monotonic time last checked
        self._resync = False
        self._online_dirty = True
        self._tasks: list[asyncio.Task[None]] = []
        self._claim = self.redis.register_script(CLAIM)
        self._beat = self.redis.register_script(BEAT)
        self._join = self.redis.register_script(JOIN)
        self._leave_script = self.redis.register_script(LEAVE)
        self._release = self.redis.register_script(RELEASE)
        self.last_beat: datetime | None = None

    # -- joining and leaving -------------------------------------------------------------------

    async def join(self) -> None:
        """Take the node id (refused, exit 1, when it is live), take back a previous run's entry."""
        ok = await self.redis.set(live_key(self.node_id), self.incarnation, nx=True, px=self.ttl_ms)
        if not ok:
            raise TrailError(
                f"Node id {self.node_id!r} is already live in the cluster at "
                f"{redacted_url(self.link.url)}.",
                "give this node another --node-id, or stop the node using it (a node that died "
                f"is forgotten {self.ttl_ms / 1000:g} s after its last heartbeat)",
            )
        previous = await self.redis.hget(NODES, self.node_id)
        if previous is not None:  # this id's last run died: its sessions are ours to close
            old = orjson.loads(previous)["inc"]
            await self._claim(
                keys=_keys(self.node_id),
                args=[self.node_id, old, 0, 0, PERSON, LOST_SECONDS, 0, OWNER],
            )
        lost = await self.redis.smembers(f"{PREFIX}lost:{self.node_id}")
        self.lost_ids = {_text(x) for x in lost}
        self.seq_floor = int(await self.redis.get(f"{PREFIX}seqfloor:{self.node_id}") or 0)
        await self._record(None)

    async def leave(self) -> None:
        """A clean stop: the node's shared state goes (its sessions were ended by its own rows)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._drain_ops()
        with contextlib.suppress(Exception):
            # the same script a survivor runs, on our own entry: persons lose this node
            await self._claim(
                keys=_keys(self.node_id),
                args=[self.node_id, self.incarnation, 0, 0, PERSON, LOST_SECONDS, 1, OWNER],
            )
        with contextlib.suppress(Exception):
            await self.redis.delete(f"{PREFIX}online:{self.node_id}")
            await self._release(keys=[live_key(self.node_id)], args=[self.incarnation])

    def start(self, member: Member) -> None:
        self.member = member
        self._tasks = [
            asyncio.create_task(self._apply_loop(), name="cluster-updates"),
            asyncio.create_task(self._watch_loop(), name="cluster-watch"),
            asyncio.create_task(self._forward_loop(), name="cluster-forwards"),
            asyncio.create_task(self._inbox_loop(), name="cluster-inbox"),
        ]

    # -- updates from the tracker (synchronous, never blocking) --------------------------------

    def _queue(self, op: Callable[[], Awaitable[object]]) -> None:
        self._online_dirty = True
        try:
            self._ops.put_nowait(op)
        except asyncio.QueueFull:
            self._resync = True

    def session_opened(self, client_id: str, binding: Binding, at: datetime) -> None:
        value = _binding_json(binding, at)
        self._queue(lambda: self.redis.hset(f"{PREFIX}sessions:{self.node_id}", client_id, value))

    session_bound = session_opened

    def session_closed(self, client_id: str) -> None:
        self._queue(lambda: self.redis.hdel(f"{PREFIX}sessions:{self.node_id}", client_id))

    def changes(self, changes: list[Change]) -> None:
        """This node's joins and leaves: announced by the tracker only when cluster-wide."""
        for change in changes:
            self._queue(functools_partial(self._person_change, change))

    def beat(self, at: datetime) -> None:
        """A heartbeat row of this node is durable: record it (and renew the live key)."""
        self._queue(functools_partial(self._record, at))

    def touched(self) -> None:
        self._online_dirty = True

    def own(self, client_id: str, watcher: bool) -> None:
        """This node opened the session: events of it heard elsewhere are forwarded here."""
        key, node = OWNER + client_id, self.node_id
        self._queue(lambda: self.redis.set(key, node, ex=OWNER_SECONDS))
        if watcher:
            mark = WATCHER + client_id
            self._queue(lambda: self.redis.set(mark, 1, ex=OWNER_SECONDS))

    def hand_over(self, client_id: str, state: list[Any]) -> None:
        """This node stops: the session (still alive in the cluster's Bayeux engine) may be taken
        over by the node its client reaches next (`take_over`)."""
        key, value = HANDOVER + client_id, _dumps(state)
        self._queue(lambda: self.redis.set(key, value, ex=HANDOVER_SECONDS))

    def active_elsewhere(self, client_id: str, now: datetime) -> None:
        """A request of a session this node does not hold: take it over if its node handed it
        over (checked at most every KNOWN_SECONDS per session)."""
        at = _time.monotonic()
        last = self._owned_elsewhere.get(client_id)
        if last is not None and at - last < KNOWN_SECONDS:
            return
        if len(self._owned_elsewhere) > MAX_OPS:
            self._owned_elsewhere.clear()
        self._owned_elsewhere[client_id] = at
        self.forward(client_id, ["active", client_id, now.isoformat()])

    def disown(self, client_id: str) -> None:
        keys = [OWNER + client_id, WATCHER + client_id]
        self._queue(lambda: self.redis.delete(*keys))

    def forward(self, client_id: str, event: list[Any]) -> None:
        """Send a session event heard here to the node that opened the session (in order)."""
        try:
            self._forwards.put_nowait((client_id, event))
        except asyncio.QueueFull:
            self.forward_drops += 1

    async def is_watcher(self, client_id: str) -> bool:
        """Whether the session's handshake (on any node) showed the API token."""
        from redis.exceptions import RedisError

        try:
            return bool(await self.redis.exists(WATCHER + client_id))
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            return False

    async def has_owner(self, client_id: str) -> bool:
        return await self._owner(client_id) is not None

    async def _owner(self, client_id: str, tries: int | None = None) -> str | None:
        tries = tries or FORWARD_TRIES
        for attempt in range(tries):
            owner = await self.redis.get(OWNER + client_id)
            if owner is not None:
                return _text(owner)
            if attempt + 1 < tries:
                await asyncio.sleep(FORWARD_WAIT)
        return None

    async def _unowned(self, client_id: str, event: list[Any]) -> None:
        """An event of a session no node holds: take it over if its node handed it over (one
        node gets it: GETDEL), else it had ended or its node died (dropped, counted)."""
        state = await self.redis.getdel(HANDOVER + client_id)
        if state is None:
            if event[0] != "active":
                self.forward_drops += 1
            return
        if event[0] == "closed" or self.member is None:
            return  # it ended before coming back: its rows were closed at the handover
        self.member.take_over(client_id, orjson.loads(state), datetime.now(UTC))
        if event[0] != "active":
            self.member.forwarded(event)

    async def _forward_loop(self) -> None:
        from redis.exceptions import RedisError

        while True:
            client_id, event = await self._forwards.get()
            try:
                owner = await self._owner(client_id, tries=1 if event[0] == "active" else None)
                if owner is None:
                    await self._unowned(client_id, event)
                elif owner == self.node_id:
                    if self.member is not None:
                        self.member.forwarded(event)
                else:
                    await self.redis.publish(INBOX + owner, _dumps(event))
            except (RedisError, OSError) as exc:
                self.forward_drops += 1
                self.link.failed(exc)
            end_if_cancelled()

    async def _inbox_loop(self) -> None:
        """Hear the events other nodes forward to this node (re-subscribing after a loss)."""
        from redis.exceptions import RedisError

        while True:
            await self.link.wait_up()
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(INBOX + self.node_id)
                async for message in pubsub.listen():
                    if message.get("type") == "message" and self.member is not None:
                        with contextlib.suppress(ValueError, TypeError):
                            self.member.forwarded(orjson.loads(message["data"]))
            except (RedisError, OSError) as exc:
                self.link.failed(exc)
                await asyncio.sleep(0.2)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _refresh_watched(self, channels_: dict[str, tuple[str, ...]]) -> None:
        """Whether any session of the cluster is subscribed to each live channel (or a pattern
        covering it), as the cluster's Bayeux engine keeps its subscriber sets."""
        from trailcli.collector.bayeux.cluster import PREFIX as BAYEUX

        for channel, patterns in channels_.items():
            found = await self.redis.exists(*[f"{BAYEUX}ch:{p}" for p in patterns])
            self.watched[channel] = bool(found)

    async def _person_change(self, change: Change) -> None:
        script = self._join if change.type == "join" else self._leave_script
        keys = [PERSON + change.person, f"{PREFIX}persons:{self.node_id}"]
        first_or_last = await script(
            keys=keys, args=[self.node_id, change.person, _change_json(change)]
        )
        if first_or_last and self.member is not None:
            self.member.announce_cluster([change])

    async def _record(self, at: datetime | None) -> None:
        if at is not None:
            self.last_beat = at
        record = _dumps(
            {
                "inc": self.incarnation,
                "beat": self.last_beat.isoformat() if self.last_beat else None,
            }
        )
        outcome = await self._beat(
            keys=[live_key(self.node_id), NODES],
            args=[self.incarnation, self.ttl_ms, self.node_id, record],
        )
        if outcome == 0:
            log.error("node id %s was taken by another node while Redis was away", self.node_id)
        elif outcome == 2 and self.member is not None and at is not None:
            await self._declared_lost()

    async def _declared_lost(self) -> None:
        """Our entry had gone: a survivor may have ended our sessions; forget those, resync."""
        lost = await self.redis.smembers(f"{PREFIX}lost:{self.node_id}")
        ids = {_text(x) for x in lost} - self.lost_ids
        if ids and self.member is not None:
            log.warning("%d sessions of this node were ended by another node", len(ids))
            self.lost_ids |= ids
            self.member.forget(ids)
        self._resync = True

    # -- background -------------------------------------------------------------------------

    async def _apply_loop(self) -> None:
        from redis.exceptions import RedisError

        while True:
            op = await self._ops.get()
            if self._resync:
                continue  # the resync rewrites everything; the watch runs it
            try:
                await op()
            except (RedisError, OSError) as exc:
                self.link.failed(exc)
                self._resync = True
            end_if_cancelled()

    async def _drain_ops(self) -> None:
        while not self._ops.empty():
            await self._ops.get_nowait()()

    async def _watch_loop(self) -> None:
        """Every heartbeat: resync after a loss, publish the online rows, claim dead nodes."""
        from redis.exceptions import RedisError

        tick = min(0.5, self.heartbeat)
        last_sweep = 0.0
        while True:
            end_if_cancelled()
            await asyncio.sleep(tick)
            if not self.link.up:
                self._resync = True
                continue
            try:
                if self._resync:
                    await self._resync_all()
                if self._online_dirty:
                    await self._publish_online()
                if self.member is not None:
                    await self._refresh_watched(self.member.live_channels())
                if _time.monotonic() - last_sweep >= self.heartbeat:
                    last_sweep = _time.monotonic()
                    await self._sweep()
            except (RedisError, OSError) as exc:
                self.link.failed(exc)
                self._resync = True

    async def _publish_online(self) -> None:
        assert self.member is not None
        self._online_dirty = False
        rows = self.member.online_rows()
        await self.redis.set(f"{PREFIX}online:{self.node_id}", _dumps(rows), px=self.ttl_ms)

    async def _resync_all(self) -> None:
        """Rewrite this node's shared state from the tracker, announcing what changed."""
        assert self.member is not None
        while not self._ops.empty():
            self._ops.get_nowait()
        self._resync = False
        await self._record(self.last_beat)
        sessions, persons = self.member.cluster_state()
        skey, pkey = f"{PREFIX}sessions:{self.node_id}", f"{PREFIX}persons:{self.node_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(skey)
            if sessions:
                pipe.hset(skey, mapping={c: _binding_json(b, at) for c, b, at in sessions})
            for client_id, _, _ in sessions:  # events heard elsewhere find this node again
                pipe.set(OWNER + client_id, self.node_id, ex=OWNER_SECONDS)
            await pipe.execute()
        present = {change.person for change in persons}
        for key in await self.redis.hkeys(pkey):
            person = _text(key)
            if person not in present:
                gone = Change("leave", person, None, None, None, datetime.now(UTC), None, 0)
                await self._person_change(gone)
        for change in persons:
            await self._person_change(change)
        self._online_dirty = True

    async def _sweep(self) -> None:
        """Claim every node whose live key has expired (a survivor's duty, run by all)."""
        nodes = await self.redis.hgetall(NODES)
        for raw_id, raw in nodes.items():
            node_id = _text(raw_id)
            if node_id == self.node_id or await self.redis.exists(live_key(node_id)):
                continue
            await self.claim(node_id, orjson.loads(raw)["inc"])

    async def claim(self, node_id: str, incarnation: str) -> LostNode | None:
        """End `node_id`'s sessions if this node is the first to claim it (else None)."""
        first_seq = _micros(datetime.now(UTC))
        taken = await self._claim(
            keys=_keys(node_id),
            args=[node_id, incarnation, 1, first_seq, PERSON, LOST_SECONDS, 0, OWNER],
        )
        if not taken:
            return None
        record, flat_sessions, flat_left = taken
        beat = orjson.loads(record).get("beat")
        last = datetime.fromisoformat(beat) if beat else None
        at = last or datetime.now(UTC)
        lost = LostNode(
            node_id,
            last,
            [
                _lost_session(flat_sessions[i], flat_sessions[i + 1])
                for i in range(0, len(flat_sessions), 2)
            ],
            [_leave(flat_left[i], flat_left[i + 1], at) for i in range(0, len(flat_left), 2)],
            first_seq,
        )
        log.warning(
            "node %s stopped heartbeating (last %s): ending its %d sessions (node_lost)",
            node_id,
            beat,
            len(lost.sessions),
        )
        if self.member is not None:
            self.member.end_lost(lost)
        return lost

    # -- reading --------------------------------------------------------------------------------

    async def online(self, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`local` merged with every other live node's rows, one row per person."""
        ids = [_text(k) for k in await self.redis.hkeys(NODES) if _text(k) != self.node_id]
        blobs = await self.redis.mget([f"{PREFIX}online:{i}" for i in ids]) if ids else []
        rows = [dict(r) for r in local]
        for row in rows:
            row["online_since"] = row["online_since"].isoformat()
        for blob in blobs:
            if blob:
                rows.extend(orjson.loads(blob))
        return merge_online(rows)


def functools_partial(
    fn: Callable[..., Awaitable[None]], *args: Any
) -> Callable[[], Awaitable[object]]:
    return lambda: fn(*args)


def merge_online(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several nodes, one per person: the earliest stretch start, clients summed,
    channels joined; the other fields from the node where the person is online longest."""
    merged: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["online_since"]):
        key = person_key(row.get("user_id"), row.get("visitor_token")) or ""
        kept = merged.get(key)
        if kept is None:
            merged[key] = dict(row)
            continue
        kept["clients"] += row.get("clients") or 0
        kept["channels"] = sorted(set(kept.get("channels") or ()) | set(row.get("channels") or ()))
        kept["last_page"] = kept.get("last_page") or row.get("last_page")
    return sorted(
        merged.values(),
        key=lambda r: (r["online_since"], r["user_id"] or "", r["visitor_token"] or ""),
    )


CLUSTER = web.AppKey("cluster", Cluster)


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """Join the cluster before the node opens its WAL; leave it after the tracker stopped."""
    from trailcli.collector.keys import SETTINGS
    from trailcli.store.layout import resolve_node_id

    settings = app[SETTINGS]
    node_id = resolve_node_id(settings.data_dir, settings.node_id)
    cluster = Cluster(app[REDIS], node_id, settings.heartbeat_interval)
    await cluster.join()
    app[CLUSTER] = cluster
    yield
    await cluster.leave()
