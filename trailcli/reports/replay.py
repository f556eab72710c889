"""One person's trail in time order across visits: visits, events, presence and identity rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import UsageError

COLUMNS = ("time", "kind", "visit_token", "name", "detail", "gap_seconds", "new_session")
SESSION_TIMEOUT = timedelta(minutes=30)
# A followed trail remembers the rows it printed over this span (and at least MAX_KEYS of them)
MEMORY = timedelta(hours=1)
MAX_KEYS = 10_000
PERSON_FORMS = "exactly one of --user ID, --visitor TOKEN or --visit TOKEN"


@dataclass(frozen=True)
class Person:
    """Whose trail: a resolved user id, a visitor token or a visit token (exactly one)."""

    user: str | None = None
    visitor: str | None = None
    visit: str | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.user, self.visitor, self.visit) if v is not None]
        if len(given) != 1 or not given[0].strip():
            raise UsageError("Say whose trail to replay.", f"pass {PERSON_FORMS}")

    def matches(self, message: Mapping[str, Any]) -> bool:
        """True when a live message (event or presence change) belongs to this person."""
        if self.user is not None:
            return message.get("user_id") == self.user
        if self.visitor is not None:
            return message.get("visitor_token") == self.visitor
        return message.get("visit_token") == self.visit


@dataclass(frozen=True)
class ReplayQuery:
    person: Person
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    session_timeout: timedelta = SESSION_TIMEOUT


def _detail(kind: str, text: str | None) -> Any:
    """The detail object of a row; an event's properties keep their JSON types."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"properties": text}
    if isinstance(value, dict) and kind != "event":
        return {k: v for k, v in value.items() if v is not None}
    return value


def _visit_detail(stored: dict[str, Any]) -> dict[str, Any]:
    """Source, medium and channel (docs/reports.md, Referrers) plus landing page, device and location."""
    from trailcli.reports.referrers import classify_url

    utm = {k: stored.pop(k, None) for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term")}
    att = classify_url(stored.get("landing_page"), stored.get("referrer"), db=_db(), utm=utm)
    head = {"source": att.source, "medium": att.medium, "channel": att.channel}
    if att.term:
        head["term"] = att.term
    if att.campaign:
        head["campaign"] = att.campaign
    return {**head, **stored}


_DB: list[Any] = []


def _db() -> Any:
    """The package's referrer list, loaded once per process."""
    if not _DB:
        from trailcli.sources.referrer_db import load_db

        _DB.append(load_db())
    return _DB[0]


def _annotated(
    row: dict[str, Any], previous: datetime | None, timeout: timedelta
) -> dict[str, Any]:
    """The row's COLUMNS with gap_seconds (since `previous`) and new_session (no previous row,
    or a gap of at least `timeout`)."""
    when = row["time"]
    gap = None if previous is None or when is None else (when - previous).total_seconds()
    row["gap_seconds"] = gap
    row["new_session"] = gap is None or gap >= timeout.total_seconds()
    return {c: row.get(c) for c in COLUMNS}


def annotate(rows: Iterable[dict[str, Any]], timeout: timedelta) -> list[dict[str, Any]]:
    """Add gap_seconds (since the previous row) and new_session (first row, or gap >= timeout)."""
    out: list[dict[str, Any]] = []
    previous: datetime | None = None
    for row in rows:
        out.append(_annotated(row, previous, timeout))
        previous = row["time"]
    return out


# What names a row of a trail, so a followed trail prints it once: an event by its id, another
# row by its kind, time and tie-breaker (a presence row's seq, a binding's user).
Key = tuple[str, ...]


def row_key(kind: str, time: datetime | None, tie: Any) -> Key:
    if kind == "event":
        return ("event", str(tie))
    return (kind, time.isoformat() if time is not None else "", str(tie))


def stored_rows(data_dir: Path, query: ReplayQuery) -> list[tuple[Key, dict[str, Any]]]:
    """The person's stored rows in time order, not annotated, each with the key that names it
    (`row_key`)."""
    from trailcli.reports.frames import fetch_arrow
    from trailcli.store import views

    if query.session_timeout <= timedelta(0):
        raise UsageError("The session timeout must be positive.", "use e.g. --session-timeout 30m")
    con = views.connect(data_dir, start=query.start, end=query.end)
    params = {
        "user": query.person.user,
        "visitor": query.person.visitor,
        "visit": query.person.visit,
        "since": query.start,
        "until": query.end,
        "limit": query.limit,
    }
    rows = fetch_arrow(con, sql.load("replay_rows"), params).to_pylist()
    out = []
    for row in rows:
        row["detail"] = _detail(row["kind"], row["detail"])
        if row["kind"] == "visit":
            row["detail"] = _visit_detail(row["detail"])
            row["name"] = row["detail"]["source"]
        out.append((row_key(row["kind"], row["time"], row.pop("tie")), row))
    return out


def replay(data_dir: Path, query: ReplayQuery) -> list[dict[str, Any]]:
    """The person's rows (COLUMNS) in time order; [] for an unknown person."""
    return annotate((row for _, row in stored_rows(data_dir, query)), query.session_timeout)


class LiveTrail:
    """A followed trail: stored rows caught up and live rows as they come, each printed once,
    annotated as the stored trail is (gap_seconds since the row printed before, whether stored
    or live; new_session at a gap of the session timeout or more)."""

    def __init__(self, timeout: timedelta = SESSION_TIMEOUT, memory: timedelta = MEMORY) -> None:
        self.timeout = timeout
        self.memory = memory  # keys of rows older than the newest by more are forgotten
        self.previous: datetime | None = None
        self.newest: datetime | None = None
        self._seen: dict[Key, datetime | None] = {}

    def accept(self, key: Key, row: dict[str, Any]) -> dict[str, Any] | None:
        """The annotated row to print, or None when a row with this key was printed already."""
        if key in self._seen:
            return None
        when = row["time"]
        self._seen[key] = when
        out = _annotated(row, self.previous, self.timeout)
        self.previous = when or self.previous
        if when is not None and (self.newest is None or when > self.newest):
            self.newest = when
            self._forget_before(when - self.memory)
        return out

    def _forget_before(self, limit: datetime) -> None:
        if len(self._seen) > MAX_KEYS:
            self._seen = {k: t for k, t in self._seen.items() if t is None or t >= limit}


def group_by_visit(rows: list[dict[str, Any]]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Rows grouped by visit token, groups in order of their first row, rows in time order."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("visit_token"), []).append(row)
    return list(groups.items())


def live_row(channel: str, message: Mapping[str, Any]) -> tuple[Key, dict[str, Any]]:
    """A trail row, not annotated, and its key for one live message from /trail/events (the same
    values as the stored event row) or /trail/presence (a person's join or leave: kind `online`
    or `offline`, name `join` or `leave`)."""
    when = _parse_time(message.get("time"))
    if channel == "/trail/presence":
        kind = "online" if message.get("type") == "join" else "offline"
        detail = {k: message.get(k) for k in ("page", "clients", "user_id", "visitor_token")}
        name = message.get("type")
        tie = f"{name}:{message.get('user_id') or message.get('visitor_token')}"
    else:
        kind = "event"
        detail = message.get("properties") or {}
        name = message.get("name")
        tie = message.get("event_id") or f"{name}@{message.get('time')}"
    row = {"time": when, "kind": kind, "visit_token": message.get("visit_token"), "name": name}
    return row_key(kind, when, tie), {**row, "detail": detail}


def _parse_time(value: Any) -> datetime | None:
    from datetime import UTC

    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
