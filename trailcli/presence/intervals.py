"""Presence transitions to per-client sessions with channel memberships (pure; the clock is passed in).

A session runs from its `online` row to its `offline` row (half-open). A session with no offline
row is open until the later of its node's last heartbeat and its own last row, unless the node
is alive (a heartbeat within `ALIVE_HEARTBEATS` intervals of now): then it is open now (`end` is
`FOREVER`). Channel membership runs from subscribe to unsubscribe or the session's end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from trailcli.presence.rules import ALIVE_HEARTBEATS, HEARTBEAT_INTERVAL, person_key

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
ENDS = ("offline", "unsubscribe")


@dataclass
class Membership:
    """One channel subscription of a session: `[start, end)`, `end` None while undecided."""

    channel: str
    start: datetime
    end: datetime | None = None


@dataclass
class Session:
    """One Bayeux client session; `end` is None until decided (see `settle`)."""

    node_id: str
    client_id: str
    start: datetime
    last_seen: datetime
    visit_token: str | None = None
    visitor_token: str | None = None
    user_id: str | None = None
    end: datetime | None = None
    channels: list[Membership] = field(default_factory=list)
    person_start: datetime | None = None  # the person's stretch start, carried by a snapshot
    visit_start: datetime | None = None  # the visit's stretch start, carried by a snapshot

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.client_id)

    @property
    def person(self) -> str | None:
        return person_key(self.user_id, self.visitor_token)

    def ends(self) -> datetime:
        """The end as a comparable instant (FOREVER while open)."""
        return self.end if self.end is not None else FOREVER

    def open_channels(self, at: datetime) -> list[str]:
        """Channels this session is subscribed to at `at` (sorted, distinct)."""
        return sorted({m.channel for m in self.channels if m.start <= at < (m.end or self.ends())})


@dataclass
class Tracker:
    """Sessions and node heartbeats built up from transitions in log order."""

    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)
    closed: list[Session] = field(default_factory=list)
    last_beat: dict[str, datetime] = field(default_factory=dict)

    def apply(self, row: Mapping[str, Any]) -> None:
        """Apply one presence row (a mapping with the presence columns)."""
        kind, time, node = row["transition"], row["time"], row["node_id"] or ""
        if kind == "heartbeat":
            if time > self.last_beat.get(node, time - timedelta(1)):
                self.last_beat[node] = time
            return
        key = (node, row["client_id"] or "")
        session = self.sessions.get(key)
        if kind == "online":
            if session is not None:  # a reused id: the earlier session ends here
                self._close(session, time)
            session = Session(node, key[1], time, time)
            self.sessions[key] = session
        if session is None:
            return  # a row for a session that started before what we read
        session.last_seen = max(session.last_seen, time)
        for column in ("visit_token", "visitor_token", "user_id"):
            if getattr(session, column) is None and row.get(column):
                setattr(session, column, row[column])
        if kind == "subscribe" and row.get("channel"):
            if row["channel"] not in session.open_channels(time):
                session.channels.append(Membership(row["channel"], time))
        elif kind == "unsubscribe":
            for m in session.channels:
                if m.end is None and m.channel == row.get("channel"):
                    m.end = time
        elif kind == "offline":
            self._close(session, time)

    def _close(self, session: Session, time: datetime) -> None:
        session.end = time
        for m in session.channels:
            if m.end is None:
                m.end = time
        self.closed.append(session)
        del self.sessions[session.key]

    def open_sessions(self) -> list[Session]:
        return list(self.sessions.values())


def log_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Rows apply in `(time, seq)` order; node id breaks ties between nodes."""
    return (row["time"], row["node_id"] or "", row["seq"])


def track(rows: Iterable[Mapping[str, Any]], initial: Iterable[Session] = ()) -> Tracker:
    """Apply `rows` (any order) on top of `initial` sessions (from a snapshot)."""
    tracker = Tracker()
    for session in initial:
        if session.end is None:
            tracker.sessions[session.key] = session
        else:
            tracker.closed.append(session)
    for row in sorted(rows, key=log_order):
        tracker.apply(row)
    return tracker


def node_alive(last_beat: datetime | None, now: datetime) -> bool:
    """A node is alive when its last heartbeat is within three heartbeat intervals of now."""
    return last_beat is not None and now - last_beat <= ALIVE_HEARTBEATS * HEARTBEAT_INTERVAL


def settle(
    sessions: Iterable[Session], last_beat: Mapping[str, datetime], now: datetime
) -> list[Session]:
    """Decide the end of sessions without an offline row (DESIGN.md open-session rule).

    `last_beat` is each node's last heartbeat in the whole log. Open sessions of a live node stay
    open (end FOREVER); the others end at the later of the node's last heartbeat and their own
    last row.
    """
    settled = []
    for s in sessions:
        if s.end is None:
            beat = last_beat.get(s.node_id)
            if node_alive(beat, now):
                s.end = FOREVER
            else:
                s.end = max(s.last_seen, beat) if beat is not None else s.last_seen
            for m in s.channels:
                if m.end is None:
                    m.end = s.end
        settled.append(s)
    return settled
