"""Crash recovery of presence: the sessions a previous run of this node left open, read from the
presence table once the WAL is recovered, so the tracker can close them (`node_lost`)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import NoDataError
from trailcli.presence.live import Binding
from trailcli.store import views


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return as_datetime(datetime.fromisoformat(value))
    return None


class UnclosedSession:
    """A session of this node with an online row and no offline row."""

    def __init__(self, client_id: str, binding: Binding, last_activity: datetime) -> None:
        self.client_id = client_id
        self.binding = binding
        self.last_activity = last_activity

    def ended_at(self, last_heartbeat: datetime | None) -> datetime:
        """The last moment known alive: the later of the node's last heartbeat and its activity."""
        if last_heartbeat is None:
            return self.last_activity
        return max(last_heartbeat, self.last_activity)


class Recovered:
    def __init__(
        self, sessions: list[UnclosedSession], last_heartbeat: datetime | None, max_seq: int
    ) -> None:
        self.sessions = sessions
        self.last_heartbeat = last_heartbeat
        self.max_seq = max_seq


def unclosed_sessions(data_dir: Path, node_id: str) -> Recovered:
    """What a previous run of `node_id` left open, read from the presence table (WAL recovered)."""
    try:
        con = views.connect(data_dir, need=("presence",))
    except NoDataError:
        return Recovered([], None, 0)
    try:
        rows = views.run(
            con, sql.load("tracker_unclosed_sessions"), {"node_id": node_id}
        ).fetchall()
    finally:
        con.close()
    sessions = [
        UnclosedSession(
            client_id,
            Binding(visit_token, visitor_token, user_id),
            as_datetime(last_activity) or datetime.min.replace(tzinfo=UTC),
        )
        for client_id, visit_token, visitor_token, user_id, last_activity, _, _ in rows
        if client_id is not None
    ]
    last_heartbeat = as_datetime(rows[0][5]) if rows else None
    max_seq = int(rows[0][6]) if rows and rows[0][6] is not None else 0
    return Recovered(sessions, last_heartbeat, max_seq)
