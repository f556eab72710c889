"""The presence tracker: Bayeux sessions become presence rows and the live per-person view.

It observes the Bayeux engine and writes one row per client transition (docs/presence.md,
"What is written") through the store writer, plus a per-node heartbeat. At start it closes the sessions a
crash left open (`node_lost`, found by `presence_recovery`). It keeps the live view
(`trailcli.presence.live`), fed also by the records the store makes durable, and publishes its
joins and leaves on `/trail/presence` and each accepted event on `/trail/events` to watchers
holding the API token (`live_guard`). Its HTTP endpoints are in `presence_http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from trailcli import channels
from trailcli.collector import identity
from trailcli.collector.ahoy_payload import loads as payload_json
from trailcli.collector.bayeux.engine import Engine, EngineObserver
from trailcli.collector.cluster import Cluster, LostNode
from trailcli.collector.live_guard import LiveChannelGuard, handshake_has_token
from trailcli.collector.metrics import Metrics
from trailcli.collector.presence_claims import REFUSAL_OF, UNSCOPED_ACCEPTED, binding_from
from trailcli.collector.presence_recovery import Recovered, as_datetime, unclosed_sessions
from trailcli.collector.redis_link import end_if_cancelled
from trailcli.collector.settings import Settings
from trailcli.errors import DiskFull, TrailError
from trailcli.presence.live import Binding, Change, LiveView
from trailcli.store import erasure
from trailcli.store.disk import QuietLog
from trailcli.store.wal import LogWriter

log = logging.getLogger("trail.presence")

PRESENCE_CHANNEL = "/trail/presence"
EVENTS_CHANNEL = "/trail/events"


@functools.cache
def _patterns(channel: str) -> tuple[str, ...]:
    """The subscriptions that receive `channel` (asked on every accepted event; two channels)."""
    return tuple(channels.expand(channel))


IDENTIFIED, UNKNOWN_CLIENT, OTHER_VISIT = "identified", "unknown_client", "other_visit"
MAX_PENDING_ROWS = 200_000  # rows waiting for the store before new ones are dropped (counted)
TICK_SECONDS = 0.5  # how often due leaves are published
MAX_OUTBOX = 10_000  # live-channel messages waiting to be published before new ones are dropped
COALESCE_SECONDS = 0.02  # rows gathered this long before an append (they answer no request)
WARN_EVERY_SECONDS = 60.0  # ignored claims are counted always, logged at most this often
MAX_DEFERRED_STEPS = 256  # subscribes etc. kept for a session's first connect

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _properties_object(record: Mapping[str, Any]) -> Any:
    """An events record's properties as stored (JSON text) turned back into a value, types kept."""
    properties = record.get("properties")
    if isinstance(properties, str):
        with contextlib.suppress(ValueError):
            properties = payload_json(properties)
    return properties


def _page_properties(record: Mapping[str, Any]) -> Any:
    """Enough of an events record's properties to find its page (`page`, `url`): orjson alone,
    cheaper than `_properties_object`, which also keeps what orjson would change (long
    integers), which a page never needs."""
    properties = record.get("properties")
    if isinstance(properties, str):
        try:
            return orjson.loads(properties)
        except orjson.JSONDecodeError:
            return _properties_object(record)
    return properties


def event_message(record: Mapping[str, Any], properties: Any) -> dict[str, Any]:
    """An accepted event as `/trail/events` carries it, properties as an object."""
    when = record.get("time")
    return {
        "event_id": record.get("event_id"),
        "visit_token": record.get("visit_token"),
        "visitor_token": record.get("visitor_token"),
        "user_id": record.get("user_id"),
        "name": record.get("name"),
        "properties": properties,
        "time": when.isoformat() if isinstance(when, datetime) else when,
    }


# --- the tracker --------------------------------------------------------------------------------


class PresenceTracker(EngineObserver):
    """Observer of the Bayeux engine that records presence and keeps the live view.

    Observer methods are synchronous and never block: rows go to an in-memory queue that one
    task appends to the store in order, and live-channel messages go to a second queue.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        app: web.Application | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.node_id = ""  # and the writer: given by `start`, once the store is open
        self.writer: LogWriter | None = None
        self.settings = settings
        self.metrics = metrics
        self.app = app
        self.clock = clock
        self.live = LiveView(
            timedelta(seconds=settings.transport_grace), max_visits=settings.visit_cache_size
        )
        self.engine: Engine | None = None
        self.cluster: Cluster | None = None  # with --redis: the node's share of the cluster
        self.watchers: set[str] = set()
        self._seq = 0
        self._rows: list[tuple[str, dict[str, Any]]] = []
        self._rows_ready = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(MAX_OUTBOX)
        self._warned_at = -WARN_EVERY_SECONDS
        self._tasks: list[asyncio.Task[None]] = []
        self._side_writes: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._last_heartbeat = 0.0
        self._from_peer = False  # handling an event another node forwarded (never forward it)
        # sessions that have not sent /meta/connect yet: what to do once they do
        self._unconnected: dict[str, list[Callable[[], Any]]] = {}
        self._erased = erasure.Erased()  # the data dir's erasure list, as last read
        self._write_errors_log = QuietLog()  # one line a period while the disk is full

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(
        self,
        writer: LogWriter,
        node_id: str,
        engine: Engine | None,
        cluster: Cluster | None = None,
    ) -> None:
        """Close what a crash left open, write the start heartbeat, then begin observing.

        In a cluster, sessions a survivor already ended (`node_lost`) are not closed again."""
        self.writer, self.node_id, self.cluster = writer, node_id, cluster
        try:
            recovered = await asyncio.to_thread(
                unclosed_sessions, self.settings.data_dir, self.node_id
            )
        except TrailError as exc:  # collecting goes on; the sessions stay open in the log
            self.metrics.inc("presence_recovery_errors_total")
            log.error("cannot close the sessions a crash left open: %s", exc)
            recovered = Recovered([], None, 0)
        now = self.clock()
        self._seq = max(recovered.max_seq + 1, _micros(now))
        if cluster is not None:
            self._seq = max(self._seq, cluster.seq_floor)
            recovered.sessions = [
                s for s in recovered.sessions if s.client_id not in cluster.lost_ids
            ]
        for session in recovered.sessions:
            self._enqueue(
                "offline",
                time=session.ended_at(recovered.last_heartbeat),
                detected_at=now,
                client_id=session.client_id,
                reason="node_lost",
                binding=session.binding,
            )
        if recovered.sessions:
            log.warning(
                "closed %d sessions left open by a crash (node_lost)", len(recovered.sessions)
            )
        self._heartbeat(now)
        await self._write_pending()  # durable before any new session is observed
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="presence-writer"),
            asyncio.create_task(self._publish_loop(), name="presence-publisher"),
            asyncio.create_task(self._tick_loop(), name="presence-ticker"),
        ]
        if engine is not None:
            self.engine = engine
            guard = LiveChannelGuard(
                engine,
                self.settings.api_token,
                self.watchers,
                self.metrics,
                remote=cluster.is_watcher if cluster is not None else None,
            )
            engine.add_extension(guard)
            engine.add_observer(self)
        if cluster is not None:
            cluster.start(self)

    def shut_down(self) -> None:
        """The server is stopping (SIGTERM): every open session ends now with `server_shutdown`.

        In a cluster the sessions live on in the Bayeux engine: each is also handed over, so
        the node its client reaches next takes it over (a new stretch under that node's id)."""
        now = self.clock()
        self._unconnected.clear()
        for client_id in self.live.session_ids():
            if self.cluster is not None:
                binding = self.live.session_binding(client_id) or Binding()
                channels_ = sorted(self.live.session_channels(client_id))
                state = [binding.visit_token, binding.visitor_token, binding.user_id, channels_]
                self.cluster.hand_over(client_id, state)
            self.client_closed(client_id, "server_shutdown", now, now)
        self._stopping = True

    async def stop(self) -> None:
        """Write every queued row, then stop the background tasks."""
        if not self._stopping:
            self.shut_down()
        writer_task, *others = self._tasks
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._rows_ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            await writer_task
        if self._side_writes:
            await asyncio.gather(*self._side_writes, return_exceptions=True)
        await self._write_pending()

    # -- engine observer --------------------------------------------------------------------------

    def client_opened(self, client_id: str, ext: dict[str, Any], now: datetime) -> None:
        watcher = handshake_has_token.get()
        if watcher:
            handshake_has_token.set(False)
            self.watchers.add(client_id)
        if self._stopping:
            return
        if self.cluster is not None:  # this node writes the session's rows, wherever it goes
            self.cluster.own(client_id, watcher)
        binding, ignored, user_id = binding_from(
            ext, self.settings.secret, self.settings.accept_unscoped_user_tokens
        )
        self.count_ignored(ignored, "handshake")
        # nothing is written or announced until the session's first /meta/connect: a flood of
        # handshakes that never connect writes no rows (the engine ends them `never_connected`)
        opening = functools.partial(self._open_session, client_id, binding, user_id, now)
        self._unconnected[client_id] = [opening]

    def client_connected(self, client_id: str, now: datetime) -> None:
        """The session's first connect: it was online from its handshake; write what it did."""
        steps = self._unconnected.pop(client_id, None)
        if steps is None:
            self._to_owner(client_id, ["connected", client_id, now.isoformat()])
            return
        for step in steps:
            step()

    def _open_session(
        self, client_id: str, binding: Binding, user_id: str | None, at: datetime
    ) -> None:
        self._enqueue("online", time=at, client_id=client_id, reason="handshake", binding=binding)
        self._announce(self.live.open(client_id, binding, at))
        if self.cluster is not None:
            self.cluster.session_opened(
                client_id, self.live.session_binding(client_id) or binding, at
            )
        self._bind_user(binding, user_id, at)

    def _deferred(self, client_id: str, step: Callable[[], Any]) -> bool:
        """Keep `step` for the first connect of a session that has not connected yet (True), or
        say it has (False). A session keeps at most MAX_DEFERRED_STEPS; more are dropped."""
        steps = self._unconnected.get(client_id)
        if steps is None:
            return False
        if len(steps) < MAX_DEFERRED_STEPS:
            steps.append(step)
        else:
            self.metrics.inc("drops_total", {"reason": "presence_unconnected_backlog"})
        return True

    def client_subscribed(self, client_id: str, channel: str, now: datetime) -> None:
        later = functools.partial(self.client_subscribed, client_id, channel, now)
        if self._deferred(client_id, later):
            return
        if not self.live.has_session(client_id):
            self._to_owner(client_id, ["subscribed", client_id, channel, now.isoformat()])
            return
        if self._stopping:
            return
        self.live.subscribe(client_id, channel)
        binding = self.live.session_binding(client_id)
        self._enqueue("subscribe", time=now, client_id=client_id, channel=channel, binding=binding)

    def client_unsubscribed(self, client_id: str, channel: str, now: datetime) -> None:
        later = functools.partial(self.client_unsubscribed, client_id, channel, now)
        if self._deferred(client_id, later):
            return
        if not self.live.has_session(client_id):
            self._to_owner(client_id, ["unsubscribed", client_id, channel, now.isoformat()])
            return
        if self._stopping:
            return
        self.live.unsubscribe(client_id, channel)
        binding = self.live.session_binding(client_id)
        self._enqueue(
            "unsubscribe", time=now, client_id=client_id, channel=channel, binding=binding
        )

    def client_closed(
        self, client_id: str, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        self.watchers.discard(client_id)
        if self._unconnected.pop(client_id, None) is not None:
            if self.cluster is not None:
                self.cluster.disown(client_id)
            return  # never connected, so never online: nothing was written, nothing is
        binding = self.live.session_binding(client_id)
        if binding is None:  # opened on another node, or already closed (e.g. by shut_down)
            event = ["closed", client_id, reason, last_alive.isoformat(), now.isoformat()]
            self._to_owner(client_id, event)
            return
        self._enqueue(
            "offline",
            time=last_alive,
            detected_at=now,
            client_id=client_id,
            reason=reason,
            binding=binding,
        )
        self._announce(self.live.close(client_id, last_alive, now))
        if self.cluster is not None:
            self.cluster.session_closed(client_id)
            self.cluster.disown(client_id)

    # -- sessions opened on another node of the cluster ------------------------------------------

    def _to_owner(self, client_id: str, event: list[Any]) -> None:
        """An event of a session this node does not hold: to the node that opened it."""
        if self.cluster is not None and not self._from_peer and not self._stopping:
            self.cluster.forward(client_id, event)

    def forwarded(self, event: list[Any]) -> None:
        """Handle an event another node heard for a session opened here, as if heard here."""
        kind, client_id, *args = event
        self._from_peer = True
        try:
            if kind == "connected":
                self.client_connected(client_id, datetime.fromisoformat(args[0]))
            elif kind == "subscribed":
                self.client_subscribed(client_id, args[0], datetime.fromisoformat(args[1]))
            elif kind == "unsubscribed":
                self.client_unsubscribed(client_id, args[0], datetime.fromisoformat(args[1]))
            elif kind == "closed":
                last, now = datetime.fromisoformat(args[1]), datetime.fromisoformat(args[2])
                self.client_closed(client_id, args[0], last, now)
            elif kind == "identify":
                visit, visitor, user, user_id = args
                self.identify(client_id, Binding(visit, visitor, user), user_id)
        finally:
            self._from_peer = False

    def live_channels(self) -> dict[str, tuple[str, ...]]:
        return {c: _patterns(c) for c in (PRESENCE_CHANNEL, EVENTS_CHANNEL)}

    def client_active(self, client_id: str, now: datetime) -> None:
        if (
            self.cluster is not None
            and not self._stopping
            and client_id not in self._unconnected
            and not self.live.has_session(client_id)
        ):
            self.cluster.active_elsewhere(client_id, now)

    def take_over(self, client_id: str, state: list[Any], now: datetime) -> None:
        """A session whose node stopped cleanly goes on here: a new stretch (`online`, reason
        `handover`) under this node's id, with the binding and subscriptions it had."""
        if self._stopping or self.live.has_session(client_id):
            return
        visit, visitor, user, channels_ = state
        binding = Binding(visit, visitor, user)
        assert self.cluster is not None
        self.cluster.own(client_id, False)
        self._enqueue("online", time=now, client_id=client_id, reason="handover", binding=binding)
        self._announce(self.live.open(client_id, binding, now))
        self.cluster.session_opened(client_id, self.live.session_binding(client_id) or binding, now)
        for channel in channels_:
            self.live.subscribe(client_id, channel)
            self._enqueue(
                "subscribe", time=now, client_id=client_id, channel=channel, binding=binding
            )

    async def identify_anywhere(self, client_id: str, binding: Binding, user_id: str | None) -> str:
        """`identify`, handed to the node that opened the session when it is not this one."""
        outcome = self.identify(client_id, binding, user_id)
        if outcome != UNKNOWN_CLIENT or self.cluster is None or self._stopping:
            return outcome
        from redis.exceptions import RedisError

        try:
            if not await self.cluster.has_owner(client_id):
                return UNKNOWN_CLIENT
        except (RedisError, OSError) as exc:
            self.cluster.link.failed(exc)
            return UNKNOWN_CLIENT
        fields = [binding.visit_token, binding.visitor_token, binding.user_id, user_id]
        self.cluster.forward(client_id, ["identify", client_id, *fields])
        return IDENTIFIED

    # -- identify (POST /api/presence/identify) --------------------------------------------------

    def identify(self, client_id: str, binding: Binding, user_id: str | None) -> str:
        """Bind a live session to a visit: `IDENTIFIED`, or why not (`UNKNOWN_CLIENT` when the
        session is not open on this node, `OTHER_VISIT` when it is bound to another visit).
        A session that has not connected yet is bound when it does."""
        if self._deferred(client_id, functools.partial(self.identify, client_id, binding, user_id)):
            return IDENTIFIED
        before = self.live.session_binding(client_id)
        if before is None or self._stopping:
            return UNKNOWN_CLIENT
        if before.visit_token and binding.visit_token not in (None, before.visit_token):
            return OTHER_VISIT
        now = self.clock()
        changes = self.live.bind(client_id, binding, now)
        after = self.live.session_binding(client_id)
        if after != before:
            self._enqueue("identify", time=now, client_id=client_id, binding=after)
            if self.cluster is not None and after is not None:
                self.cluster.session_bound(client_id, after, now)
        self._announce(changes)
        self._bind_user(after or binding, user_id, now)
        return IDENTIFIED

    # -- records the store has made durable (visits, events, identities) ------------------------

    def on_durable(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Feed the live view and `/trail/events` with records the store has just made durable
        (those of erased people are left out: their WAL commit drops them too)."""
        if self.cluster is not None:
            self.cluster.touched()
        erased = self._erased
        if erased:
            records = [r for r in records if not erased.record_erased(r)]
        if kind == "visits":
            for r in records:
                if r.get("visit_token"):
                    self.live.record_visit(r["visit_token"], r)
        elif kind == "events":
            self._events_durable(records)
        elif kind == "identities":
            now = self.clock()
            for r in records:
                if r.get("visit_token") and r.get("user_id"):
                    self._announce(self.live.identify_visit(r["visit_token"], r["user_id"], now))

    def _events_durable(self, records: Sequence[Mapping[str, Any]]) -> None:
        watched = self._has_watchers(EVENTS_CHANNEL)
        for r in records:
            view = r.get("name") == "$view"
            if not (view or watched):
                continue
            if view and (when := as_datetime(r.get("time"))):
                self.live.record_event(r.get("visit_token"), "$view", _page_properties(r), when)
            if watched:
                self._publish_later(EVENTS_CHANNEL, event_message(r, _properties_object(r)))

    # -- internals --------------------------------------------------------------------------------

    def _forget_erased(self, now: datetime) -> None:
        """When the erasure list changed (`trail forget` ran), drop its people from the view."""
        try:
            current = erasure.load(self.settings.data_dir)
        except OSError as exc:
            log.warning("cannot read the erasure list: %s", exc)
            return
        if current is self._erased:
            return
        self._erased = current
        if current:
            self._announce(self.live.forget(_binding_erased(current), now))

    def _bind_user(self, binding: Binding, user_id: str | None, now: datetime) -> None:
        """A signed user token on a session bound to a visit: an identity row (source presence)."""
        if user_id and binding.visit_token and self.app is not None:
            task = identity.bind(
                self.app, binding.visit_token, user_id, "presence", binding.visitor_token, now
            )
            side = asyncio.create_task(_logged(task, "identity row"))
            self._side_writes.add(side)
            side.add_done_callback(self._side_writes.discard)

    def count_ignored(self, ignored: list[str], where: str) -> None:
        if UNSCOPED_ACCEPTED in ignored:
            self.metrics.inc("user_tokens_unscoped_total", {"where": where})
            ignored = [c for c in ignored if c != UNSCOPED_ACCEPTED]
        for claim in ignored:
            self.metrics.inc("presence_ignored_claims_total", {"claim": claim, "where": where})
            reason = REFUSAL_OF.get(claim)
            if reason is not None:
                self.metrics.inc("user_tokens_refused_total", {"reason": reason, "where": where})
        if ignored and _time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = _time.monotonic()
            log.warning(
                "ignored %s in a presence %s (only signed user tokens bind users; counted in "
                "trail_presence_ignored_claims_total, logged at most once a minute)",
                ", ".join(ignored),
                where,
            )

    def _enqueue(
        self,
        transition: str,
        *,
        time: datetime,
        detected_at: datetime | None = None,
        client_id: str | None = None,
        reason: str | None = None,
        channel: str | None = None,
        binding: Binding | None = None,
        node_id: str | None = None,
        seq: int | None = None,
    ) -> None:
        if len(self._rows) >= MAX_PENDING_ROWS:
            self.metrics.inc("drops_total", {"reason": "presence_backlog"})
            return
        b = binding or Binding()
        if seq is None:
            self._seq += 1
            seq = self._seq
        row = {
            "time": time,
            "seq": seq,
            "node_id": node_id or self.node_id,
            "client_id": client_id,
            "transition": transition,
            "reason": reason,
            "channel": channel,
            "visit_token": b.visit_token,
            "visitor_token": b.visitor_token,
            "user_id": b.user_id,
            "detected_at": detected_at or time,
        }
        self._rows.append(("presence", row))
        self._rows_ready.set()
        self.metrics.inc("presence_rows_total", {"transition": transition})

    def _heartbeat(self, now: datetime) -> None:
        self._last_heartbeat = _time.monotonic()
        self._enqueue("heartbeat", time=now)

    def _announce(self, changes: list[Change]) -> None:
        for change in changes:
            self.metrics.inc("presence_changes_total", {"type": change.type})
        if self.cluster is not None and self.cluster.link.up:
            self.cluster.changes(changes)  # announced by announce_cluster if cluster-wide
        else:
            self.announce_cluster(changes)

    # -- the cluster's questions (trailcli.collector.cluster.Member) ------------------------------

    def announce_cluster(self, changes: list[Change]) -> None:
        if changes and self._has_watchers(PRESENCE_CHANNEL):
            for change in changes:
                self._publish_later(PRESENCE_CHANNEL, change.message())

    def cluster_state(self) -> tuple[list[tuple[str, Binding, datetime]], list[Change]]:
        return self.live.sessions(), self.live.present()

    def online_rows(self) -> list[dict[str, Any]]:
        rows = self.live.online()
        for row in rows:
            row["online_since"] = row["online_since"].isoformat()
        return rows

    def end_lost(self, lost: LostNode) -> None:
        """A dead node's sessions end at its last heartbeat, in rows under its node id (as its
        own restart would have written them), with seqs the cluster reserved for this claim."""
        now = self.clock()
        for i, session in enumerate(lost.sessions):
            self._enqueue(
                "offline",
                time=session.ended_at(lost.last_heartbeat),
                detected_at=now,
                client_id=session.client_id,
                reason="node_lost",
                binding=session.binding,
                node_id=lost.node_id,
                seq=lost.first_seq + i,
            )
        self.announce_cluster(lost.left)

    def forget(self, client_ids: set[str]) -> None:
        now = self.clock()
        for client_id in client_ids:
            self.watchers.discard(client_id)
            self._unconnected.pop(client_id, None)
            if self.live.has_session(client_id):
                self._announce(self.live.close(client_id, now, now))

    def _publish_later(self, channel: str, data: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.metrics.inc("drops_total", {"reason": "live_channel_backlog"})

    def _has_watchers(self, channel: str) -> bool:
        if self.engine is None:
            return False
        if self.cluster is not None and (
            channel == PRESENCE_CHANNEL or self.cluster.watched.get(channel)
        ):
            # a session on some node of the cluster: joins and leaves are few, always published;
            # each event is published only while the cluster has a watcher (checked each tick)
            return True
        patterns = _patterns(channel)  # Bayeux subscribers, then in-process listeners
        return any(map(self.engine.subscribers.get, patterns)) or any(
            map(self.engine.listeners.get, patterns)
        )

    async def _write_loop(self) -> None:
        while not (self._stopping and not self._rows):
            await self._rows_ready.wait()
            if not self._stopping:
                await asyncio.sleep(COALESCE_SECONDS)  # fewer, larger appends under load
            self._rows_ready.clear()
            await self._write_pending()

    async def settle(self) -> None:
        """Wait until every row queued so far is durable in the WAL."""
        await self._write_pending()

    async def _write_pending(self) -> None:
        """Append queued rows in order; on a store error keep them and retry (keys dedupe repeats)."""
        while self._rows:
            batch, self._rows = self._rows, []
            assert self.writer is not None, "start() gives the writer"
            try:
                for kind, records in _runs(batch):
                    await self.writer.append_async(kind, records)
                if self.cluster is not None:
                    beats = [r["time"] for _, r in batch if r["transition"] == "heartbeat"]
                    if beats:
                        self.cluster.beat(max(beats))
            except Exception as exc:
                self._rows = batch + self._rows
                self.metrics.inc("presence_write_errors_total")
                count = self._write_errors_log.due() if isinstance(exc, DiskFull) else 1
                if count is not None:
                    log.error(
                        "presence rows not written yet (%s); retrying (%d failed attempt(s) "
                        "since the last report)",
                        exc,
                        count,
                    )
                if self._stopping:
                    return
                await asyncio.sleep(1.0)

    async def _publish_loop(self) -> None:
        while True:
            channel, data = await self._outbox.get()
            assert self.engine is not None, "messages are queued only with an engine"
            try:
                await self.engine.publish(channel, data)
            except Exception:
                log.exception("publishing on %s failed", channel)
            end_if_cancelled()

    async def _tick_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(min(TICK_SECONDS, interval))
            now = self.clock()
            self._announce(self.live.due(now))
            self._forget_erased(now)
            if _time.monotonic() - self._last_heartbeat >= interval:
                self._heartbeat(now)


def _binding_erased(erased: erasure.Erased) -> Callable[[Binding], bool]:
    def check(b: Binding) -> bool:
        return (
            erased.matches("visitor_token", b.visitor_token)
            or erased.matches("visit_token", b.visit_token)
            or erased.matches("user_id", b.user_id)
        )

    return check


def _runs(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive rows of one kind grouped, order kept."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for kind, row in batch:
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(row)
        else:
            runs.append((kind, [row]))
    return runs


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


async def _logged(work: Any, what: str) -> None:
    try:
        await work
    except DiskFull:
        pass  # refused on a full disk: the store counts and logs the refusals
    except Exception:
        log.exception("writing the %s failed", what)
