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
    """Source, medium and channel (DESIGN.md "Sources") plus landing page, device and location."""
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


def annotate(rows: Iterable[dict[str, Any]], timeout: timedelta) -> list[dict[str, Any]]:
    """Add gap_seconds (since the previous row) and new_session (first row, or gap >= timeout)."""
    out: list[dict[str, Any]] = []
    previous: datetime | None = None
    for row in rows:
        gap = None if previous is None else (row["time"] - previous).total_seconds()
        row["gap_seconds"] = gap
        row["new_session"] = gap is None or gap >= timeout.total_seconds()
        previous = row["time"]
        out.append({c: row.get(c) for c in COLUMNS})
    return out


def replay(data_dir: Path, query: ReplayQuery) -> list[dict[str, Any]]:
    """The person's rows (COLUMNS) in time order; [] for an unknown person."""
    from trailcli.reports.frames import fetch_arrow
    from trailcli.store import views

    if query.session_timeout <= timedelta(0):
        raise UsageError("The session timeout must be positive.", "use e.g. --session-timeout 30m")
    con = views.connect(data_dir)
    params = {
        "user": query.person.user,
        "visitor": query.person.visitor,
        "visit": query.person.visit,
        "since": query.start,
        "until": query.end,
        "limit": query.limit,
    }
    rows = fetch_arrow(con, sql.load("replay_rows"), params).to_pylist()
    for row in rows:
        row["detail"] = _detail(row["kind"], row["detail"])
        if row["kind"] == "visit":
            row["detail"] = _visit_detail(row["detail"])
            row["name"] = row["detail"]["source"]
    return annotate(rows, query.session_timeout)


def group_by_visit(rows: list[dict[str, Any]]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Rows grouped by visit token, groups in order of their first row, rows in time order."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("visit_token"), []).append(row)
    return list(groups.items())


def live_row(channel: str, message: Mapping[str, Any], previous: datetime | None) -> dict[str, Any]:
    """A replay row for one live message from /trail/events or /trail/presence."""
    when = _parse_time(message.get("time"))
    if channel == "/trail/presence":
        kind = "online" if message.get("type") == "join" else "offline"
        detail = {k: message.get(k) for k in ("page", "clients", "user_id", "visitor_token")}
        name = message.get("type")
    else:
        kind = "event"
        detail = message.get("properties") or {}
        name = message.get("name")
    gap = None if previous is None or when is None else (when - previous).total_seconds()
    return {
        "time": when,
        "kind": kind,
        "visit_token": message.get("visit_token"),
        "name": name,
        "detail": detail,
        "gap_seconds": gap,
        "new_session": gap is None or gap >= SESSION_TIMEOUT.total_seconds(),
    }


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
