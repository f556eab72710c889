"""Live updates for open dashboards: the live view's messages gathered into one frame every
quarter second, encoded once and sent to every open page as a server-sent event.

Every CLIENTS_SECONDS the frame also carries the persons whose number of open sessions (tabs)
changed, which the presence channel does not announce.

A stream starts with a snapshot (who is online now, the latest events) taken when it attaches,
or, for a page that already holds one (`after`, or the browser's Last-Event-ID on a reconnect),
with the frames it has not seen while the hub still keeps them (HISTORY_FRAMES). Then it gets
frames: the presence changes in order, the latest events (at most MAX_FRAME_EVENTS: the
activity list shows the newest, the rest are counted), and per visit its page count, latest page,
source and device. Every message is numbered and a frame says which numbers it covers, so a page
skips what its snapshot already holds. A page that cannot keep up, or a frame with more changes
than MAX_FRAME_CHANGES, gets a fresh snapshot instead of the frames it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from trailcli.collector.dashboard.lake import VisitFacts
from trailcli.collector.dashboard.notes import VisitNotes
from trailcli.collector.dashboard.ports import LiveSource
from trailcli.presence.live import view_page
from trailcli.presence.rules import person_key

log = logging.getLogger("trail.dashboard")

FRAME_SECONDS = 0.25
MAX_FRAME_EVENTS = 2_000
MAX_FRAME_CHANGES = 5_000
RECENT_EVENTS = 300  # the events a new page starts its activity list with
MAX_PROPERTIES_BYTES = 2_048  # larger properties travel as a notice, not in full
RESOLVE_SECONDS = 1.0
MAX_RESOLVE_DELAY = 30.0  # between tries while the log cannot be read
MAX_RESOLVE = 10_000  # visits read from the log per round
STREAM_BACKLOG = 40  # frames queued for a slow page before it gets a snapshot instead
HISTORY_FRAMES = 40  # the latest frames kept for pages that resume (10 s)
CLIENTS_SECONDS = 2.0  # how often tab counts are compared
IDLE_SECONDS = 60.0  # with no page open this long, stop listening (and forget the notes)

# What the page gets per person online (the columns of `trail online` it shows, and more).
PERSON_COLUMNS = (
    "person", "user_id", "visitor_token", "visit_token", "online_since", "clients", "last_page",
    "views", "source", "device_type", "browser", "os", "country", "referring_domain", "node_id",
)  # fmt: skip
Resolver = Callable[[list[str]], Awaitable[list[tuple[VisitFacts, str | None]]]]
SNAPSHOT = b""  # in a stream's queue: send a fresh snapshot here


def event_row(n: int, message: Mapping[str, Any]) -> dict[str, Any]:
    """An event for the page: ids, name, time, its page, and its properties when small."""
    properties = message.get("properties")
    encoded = orjson.dumps(properties, default=str) if properties is not None else b"null"
    large = len(encoded) > MAX_PROPERTIES_BYTES
    return {
        "n": n,
        "event_id": message.get("event_id"),
        "visit_token": message.get("visit_token"),
        "visitor_token": message.get("visitor_token"),
        "user_id": message.get("user_id"),
        "person": person_key(message.get("user_id"), message.get("visitor_token")),
        "name": message.get("name"),
        "time": message.get("time"),
        "page": view_page(message.get("name"), properties),
        "properties": None if large else orjson.Fragment(encoded),
        "properties_bytes": len(encoded) if large else None,
    }


class Stream:
    """One open page's queue: encoded frames, SNAPSHOT where it needs a fresh one, None at the end."""

    def __init__(self, first: list[bytes] | None = None) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for chunk in [SNAPSHOT] if first is None else first:
            self.queue.put_nowait(chunk)

    def offer(self, chunk: bytes) -> None:
        """Queue a frame (or SNAPSHOT); a page this far behind gets a snapshot instead."""
        if not chunk or self.queue.qsize() >= STREAM_BACKLOG:
            while not self.queue.empty():  # what it missed is in the snapshot
                self.queue.get_nowait()
            self.queue.put_nowait(SNAPSHOT)
        if chunk:
            self.queue.put_nowait(chunk)

    async def next(self) -> bytes | None:
        return await self.queue.get()

    def close(self) -> None:
        self.queue.put_nowait(None)


class Hub:
    """Gathers the live view's messages into frames for every open page."""

    def __init__(self, source: LiveSource, resolve: Resolver, notes_limit: int = 200_000) -> None:
        self.source = source
        self.resolve = resolve
        self.notes = VisitNotes(notes_limit)
        self.streams: set[Stream] = set()
        self.epoch = secrets.token_hex(8)  # message numbers start again with each hub
        self.n = 0  # number of the last message heard
        self._framed = 0  # number of the last message in a frame
        self.history: deque[tuple[int, int, bytes]] = deque(maxlen=HISTORY_FRAMES)  # from, n, chunk
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._changes: list[dict[str, Any]] = []
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_FRAME_EVENTS)
        self._skipped = 0
        self._overflow = False
        self._visits: dict[str, dict[str, Any]] = {}  # visit token -> update for the next frame
        self._clients: dict[str, int] = {}  # person -> changed tab count for the next frame
        self._clients_sent: dict[str, int] = {}
        self._clients_at = 0.0
        self._to_resolve: dict[str, None] = {}
        self._stop_listening: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._used_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    def touch(self) -> None:
        """A page is using the dashboard: listen (and run the loops) if not already."""
        self._used_at = time.monotonic()
        if self._stop_listening is None:
            self._stop_listening = self.source.listen(self.heard)
            self._clients_sent = dict(self.source.clients())  # what a snapshot now would say
            self._tasks = [
                asyncio.create_task(self._frame_loop(), name="dashboard-frames"),
                asyncio.create_task(self._resolve_loop(), name="dashboard-visits"),
            ]

    def attach(self, after: str | None = None) -> Stream:
        """A stream for a new page; `after` (`epoch:n`, from a snapshot or an earlier frame)
        resumes after message n with the kept frames when they reach back that far."""
        self.touch()
        stream = Stream(self._frames_after(after))
        self.streams.add(stream)
        return stream

    def _frames_after(self, after: str | None) -> list[bytes] | None:
        epoch, _, number = (after or "").partition(":")
        if epoch != self.epoch or not number.isdigit():
            return None
        n = int(number)
        oldest = self.history[0][0] if self.history else self._framed
        if n < oldest or n > self.n:
            return None  # older than what is kept (or not from here): a snapshot instead
        return [chunk for _, last, chunk in self.history if last > n]

    def detach(self, stream: Stream) -> None:
        self.streams.discard(stream)
        self._used_at = time.monotonic()

    async def close(self) -> None:
        """End every stream and stop listening (the collector is shutting down)."""
        for stream in list(self.streams):
            stream.close()
        await self._stop()

    async def _stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.notes.clear()
        self.recent.clear()
        self.history.clear()
        self.epoch = secrets.token_hex(8)  # what was not heard meanwhile: pages need a snapshot

    # -- what the page loads first -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Who is online now (one array per person, fields named by `columns`) with each visit's
        page count, source and device, the latest events, and the number of the last message
        they include."""
        self.touch()
        persons = []
        for row in self.source.online():
            row["person"] = person_key(row.get("user_id"), row.get("visitor_token"))
            token = row.get("visit_token")
            note = self.notes.get(token)
            if note is not None and note.resolved:
                row["views"] = note.views
                row["source"] = note.source
                for name, value in note.device.items():
                    if row.get(name) is None:
                        row[name] = value
            elif token:
                self._to_resolve[token] = None
            persons.append([row.get(c) for c in PERSON_COLUMNS])
        return {
            "epoch": self.epoch,
            "n": self.n,
            "now": datetime.now(UTC),
            "columns": PERSON_COLUMNS,
            "persons": persons,
            "events": list(self.recent),
        }

    # -- what the live view says -------------------------------------------------------------

    def heard(self, channel: str, data: Any) -> None:
        """A `/trail/presence` or `/trail/events` message (called inside the engine's publish)."""
        if not isinstance(data, dict):
            return
        self.n += 1
        if channel.endswith("/presence"):
            self._heard_change(data)
        else:
            self._heard_event(data)

    def _heard_change(self, data: dict[str, Any]) -> None:
        if len(self._changes) >= MAX_FRAME_CHANGES:
            self._overflow = True
            return
        change = {k: data.get(k) for k in ("type", "user_id", "visitor_token", "visit_token")}
        change.update(n=self.n, time=data.get("time"), page=data.get("page"))
        change.update(
            clients=data.get("clients"), node_id=data.get("node_id") or self.source.node_id
        )
        change["person"] = person_key(data.get("user_id"), data.get("visitor_token"))
        self._changes.append(change)
        token = data.get("visit_token")
        if data.get("type") == "join" and isinstance(token, str):
            note = self.notes.note(token)
            if not note.resolved:
                self._to_resolve[token] = None

    def _heard_event(self, data: dict[str, Any]) -> None:
        row = event_row(self.n, data)
        if len(self._events) == self._events.maxlen:
            self._skipped += 1
        self._events.append(row)
        self.recent.append(row)
        token = row["visit_token"]
        if row["name"] == "$view" and isinstance(token, str):
            note = self.notes.viewed(token, row["event_id"])
            update = self._visits.setdefault(token, {})
            update.update(person=row["person"], page=row["page"], time=row["time"])
            if note.resolved:
                update["views"] = note.views
            else:
                self._to_resolve[token] = None

    # -- frames ------------------------------------------------------------------------------

    def snapshot_event(self) -> bytes:
        """A snapshot as a server-sent `snapshot` event."""
        body = orjson.dumps(self.snapshot(), default=str)
        return b"event: snapshot\nid: %s:%d\ndata: %s\n\n" % (self.epoch.encode(), self.n, body)

    def take_frame(self) -> bytes | None:
        """The pending messages as one encoded server-sent event (SNAPSHOT when there were too
        many changes to send), or None when there are none."""
        if self._overflow:
            self._reset_pending()
            self._framed = self.n
            self.history.clear()  # nobody can resume across what was not sent
            return SNAPSHOT
        if not (self._changes or self._events or self._visits or self._clients):
            return None
        frame = {
            "from": self._framed,
            "n": self.n,
            "presence": self._changes,
            "events": list(self._events),
            "skipped": self._skipped,
            "visits": self._visits,
            "clients": self._clients,
        }
        self._reset_pending()
        chunk = b"id: %s:%d\ndata: %s\n\n" % (
            self.epoch.encode(),
            self.n,
            orjson.dumps(frame, default=str),
        )
        self.history.append((self._framed, self.n, chunk))
        self._framed = self.n
        return chunk

    def _reset_pending(self) -> None:
        self._changes, self._visits, self._clients = [], {}, {}
        self._events.clear()
        self._skipped = 0
        self._overflow = False

    def compare_clients(self) -> None:
        """Note the persons whose tab count changed since the last comparison (a message)."""
        now = self.source.clients()
        changed = {k: v for k, v in now.items() if self._clients_sent.get(k) != v}
        self._clients_sent = dict(now)
        if changed:
            self.n += 1
            self._clients.update(changed)

    async def _frame_loop(self) -> None:
        while True:
            await asyncio.sleep(FRAME_SECONDS)
            if time.monotonic() - self._clients_at >= CLIENTS_SECONDS:
                self._clients_at = time.monotonic()
                self.compare_clients()
            chunk = self.take_frame()
            if chunk is not None:
                for stream in list(self.streams):
                    stream.offer(chunk)
            if not self.streams and time.monotonic() - self._used_at > IDLE_SECONDS:
                await self._stop()
                return

    async def _resolve_loop(self) -> None:
        delay = RESOLVE_SECONDS
        while True:
            await asyncio.sleep(delay)
            if not self._to_resolve:
                continue
            tokens = list(self._to_resolve)[:MAX_RESOLVE]
            for token in tokens:
                del self._to_resolve[token]
            try:
                found = await self.resolve(tokens)
            except Exception as exc:  # the log may be mid-commit or damaged: try again later
                if delay == RESOLVE_SECONDS:  # once per run of failures
                    log.warning("dashboard: reading %d visits failed: %s", len(tokens), exc)
                delay = min(delay * 2, MAX_RESOLVE_DELAY)
                for token in tokens:
                    self._to_resolve.setdefault(token, None)
                continue
            delay = RESOLVE_SECONDS
            self.resolved(found)

    def resolved(self, found: list[tuple[VisitFacts, str | None]]) -> None:
        """What the log says about visits: counts and sources go out in the next frame (as a
        message of its own, so a page whose snapshot came before it applies it)."""
        if found:
            self.n += 1
        for facts, source in found:
            token = facts.visit_token
            self.notes.resolve(token, facts.found, facts.view_ids, source, facts.device)
            note = self.notes.note(token)
            if note.resolved:
                update = self._visits.setdefault(token, {})
                update.update(note.device, views=note.views, source=note.source)
            else:
                self._to_resolve.setdefault(facts.visit_token, None)
