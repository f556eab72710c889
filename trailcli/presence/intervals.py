"""Per-client presence sessions with channel memberships, and when they end (pure; clock passed in).

A session runs from its `online` row to its `offline` row (half-open). A session with no offline
row is open until the later of its node's last heartbeat and its own last row, unless the node
is alive (a heartbeat within `ALIVE_HEARTBEATS` intervals of now): then it is open now (`end` is
`FOREVER`). Channel membership runs from subscribe to unsubscribe or the session's end. The
rows of one client arrive folded (first online, first offline, last row, first ids, the
subscribe/unsubscribe rows in log order; see queries/online_sessions.sql).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trailcli.presence.rules import ALIVE_HEARTBEATS, HEARTBEAT_INTERVAL, person_key

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


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
    key: tuple[str, str] = field(init=False, repr=False, compare=False)  # (node_id, client_id)

    def __post_init__(self) -> None:
        self.key = (self.node_id, self.client_id)  # looked up tens of thousands of times an answer

    @property
    def person(self) -> str | None:
        return person_key(self.user_id, self.visitor_token)

    def ends(self) -> datetime:
        """The end as a comparable instant (FOREVER while open)."""
        return self.end if self.end is not None else FOREVER

    def open_channels(self, at: datetime) -> list[str]:
        """Channels this session is subscribed to at `at` (sorted, distinct)."""
        return sorted({m.channel for m in self.channels if m.start <= at < (m.end or self.ends())})


def node_alive(last_beat: datetime | None, now: datetime) -> bool:
    """A node is alive when its last heartbeat is within three heartbeat intervals of now."""
    return last_beat is not None and now - last_beat <= ALIVE_HEARTBEATS * HEARTBEAT_INTERVAL


def settle(
    sessions: Iterable[Session], last_beat: Mapping[str, datetime], now: datetime
) -> list[Session]:
    """Decide the end of sessions without an offline row (docs/presence.md, rule 2).

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


def fold(sessions: dict[tuple[str, str], Session], row: dict[str, Any]) -> None:
    """Apply one client's folded rows to its session (new, or carried from a snapshot)."""
    key = (row["node_id"], row["client_id"])
    session = sessions.get(key)
    if session is None:
        if row["started"] is None:
            return  # rows of a session that started before what was read
        session = Session(key[0], key[1], row["started"], row["last_seen"])
        sessions[key] = session
    elif session.end is not None:
        return  # a carried session that had already ended
    session.last_seen = max(session.last_seen, row["last_seen"])
    for column in ("visit_token", "visitor_token", "user_id"):
        if getattr(session, column) is None and row[column]:
            setattr(session, column, row[column])
    end = row["ended"] if row["ended"] is not None and row["ended"] >= session.start else None
    for change in row["channel_rows"] or []:
        at, channel = change["time"], change["channel"]
        if (end is not None and at >= end) or not channel:
            continue
        open_now = [m for m in session.channels if m.end is None and m.channel == channel]
        if change["transition"] == "subscribe" and not open_now:
            session.channels.append(Membership(channel, at))
        elif change["transition"] == "unsubscribe":
            for m in open_now:
                m.end = at
    if end is not None:
        session.end = end
        for m in session.channels:
            if m.end is None:
                m.end = end
