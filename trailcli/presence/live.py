"""The collector's live per-person view of presence: pure state over per-client transitions.

Sessions (Bayeux clients) open, bind to a visit, subscribe and close; the view folds them into
persons with the shared rules of `trailcli.presence.rules` (a person is the bound user id, else the
visitor token) and reports each person's `join` when their first session opens and `leave` only
once their last session has been gone for the grace period, so a reload or a second tab never
flaps. The clock is passed in; nothing here does I/O.
"""

from __future__ import annotations

import heapq
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from trailcli.presence.rules import DEFAULT_GRACE, leave_at, person_key

VISIT_FIELDS = ("browser", "os", "device_type", "country", "referring_domain")
ONLINE_COLUMNS = (
    "user_id",
    "visitor_token",
    "visit_token",
    "online_since",
    "clients",
    "channels",
    "last_page",
    *VISIT_FIELDS,
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)")


@dataclass(frozen=True)
class Binding:
    """What a session is known to belong to; every field may be missing (None)."""

    visit_token: str | None = None
    visitor_token: str | None = None
    user_id: str | None = None

    @property
    def person(self) -> str | None:
        return person_key(self.user_id, self.visitor_token)

    def merged(self, newer: Binding) -> Binding:
        """This binding with its missing fields taken from `newer`; a known field never changes
        (as `trail online` reads a session: the first value of each column wins)."""
        return Binding(
            visit_token=self.visit_token or newer.visit_token,
            visitor_token=self.visitor_token or newer.visitor_token,
            user_id=self.user_id or newer.user_id,
        )


@dataclass(frozen=True)
class Change:
    """A per-person change for `/trail/presence`: a join or a leave, with the person's state."""

    type: str  # "join" | "leave"
    person: str
    user_id: str | None
    visitor_token: str | None
    visit_token: str | None
    time: datetime
    page: str | None
    clients: int

    def message(self) -> dict[str, Any]:
        """The JSON-ready payload published on `/trail/presence` (docs/presence.md, "Live channels")."""
        return {
            "type": self.type,
            "user_id": self.user_id,
            "visitor_token": self.visitor_token,
            "visit_token": self.visit_token,
            "time": self.time.isoformat(),
            "page": self.page,
            "clients": self.clients,
        }


@dataclass
class _Session:
    client_id: str
    binding: Binding
    opened_at: datetime
    channels: set[str] = field(default_factory=set)


@dataclass
class _Person:
    key: str
    online_since: datetime
    clients: set[str] = field(default_factory=set)
    last_binding: Binding = field(default_factory=Binding)
    last_alive: datetime | None = None  # latest end among its closed sessions in this stretch
    leave_due: datetime | None = None  # set while no session is open


class _Bounded(OrderedDict[str, Any]):
    """A dict that forgets its least recently written keys beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = max(1, limit)

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)

    def first(self, key: str, value: Any) -> Any:
        """The value kept for `key`, storing `value` if there is none yet (first write wins)."""
        if key not in self:
            self.put(key, value)
        return self[key]


def view_page(name: str | None, properties: Mapping[str, Any] | None) -> str | None:
    """The page of an event (docs/data-model.md): for `$view`, `properties.page`, else the path of `url`."""
    if name != "$view" or not isinstance(properties, Mapping):
        return None
    page = properties.get("page")
    if isinstance(page, str) and page:
        return page
    url = properties.get("url")
    if not isinstance(url, str):
        return None
    match = _SCHEME.match(url)
    if match:
        return match.group(1) or "/"
    if url.startswith("/"):
        return re.split(r"[?#]", url, maxsplit=1)[0]
    return None


class LiveView:
    """Who is online now, per person, fed with per-client transitions and the current time.

    Every mutating method returns the `Change`s it caused, in order. `due(now)` returns the
    leaves whose grace has run out; call it regularly.
    """

    def __init__(self, grace: timedelta = DEFAULT_GRACE, max_visits: int = 100_000) -> None:
        self.grace = grace
        self._sessions: dict[str, _Session] = {}
        self._persons: dict[str, _Person] = {}
        # (leave due, person) for persons with no open session; stale entries are skipped
        self._leaving: list[tuple[datetime, str]] = []
        self._visits = _Bounded(max_visits)  # visit_token -> visit fields
        self._visit_users = _Bounded(max_visits)  # visit_token -> first bound user id
        self._pages = _Bounded(max_visits)  # visit_token -> (time, page)
        # erased people (docs/privacy.md): their sessions are tracked but belong to nobody
        self._erased: Callable[[Binding], bool] = lambda _b: False

    # sessions -----------------------------------------------------------------------------

    def open(self, client_id: str, binding: Binding, now: datetime) -> list[Change]:
        """A session began (handshake) at `now`, bound as far as is known."""
        changes = self.due(now)
        if client_id in self._sessions:
            return changes
        session = _Session(client_id, self._completed(binding), now)
        self._remember_user(session.binding)
        self._sessions[client_id] = session
        changes += self._attach(session, now)
        return changes

    def bind(self, client_id: str, binding: Binding, now: datetime) -> list[Change]:
        """A session learned (more of) its binding; it may move to another person."""
        changes = self.due(now)
        session = self._sessions.get(client_id)
        if session is None:
            return changes
        updated = self._completed(session.binding.merged(binding))
        self._remember_user(updated)
        return changes + self._rebind(session, updated, now)

    def identify_visit(self, visit_token: str, user_id: str, now: datetime) -> list[Change]:
        """A visit's user became known; its sessions without a user move to that person.

        The first binding of a visit wins (docs/data-model.md), so a visit already bound keeps its user.
        """
        changes = self.due(now)
        first = self._visit_users.first(visit_token, user_id)
        for session in list(self._sessions.values()):
            if session.binding.visit_token == visit_token and session.binding.user_id != first:
                changes += self._rebind(session, replace(session.binding, user_id=first), now)
        return changes

    def subscribe(self, client_id: str, channel: str) -> None:
        session = self._sessions.get(client_id)
        if session is not None:
            session.channels.add(channel)

    def unsubscribe(self, client_id: str, channel: str) -> None:
        session = self._sessions.get(client_id)
        if session is not None:
            session.channels.discard(channel)

    def close(self, client_id: str, last_alive: datetime, now: datetime) -> list[Change]:
        """A session ended; `last_alive` is the last moment it was known alive."""
        session = self._sessions.pop(client_id, None)
        if session is None:
            return self.due(now)
        self._detach(session, max(last_alive, session.opened_at))
        return self.due(now)

    def due(self, now: datetime) -> list[Change]:
        """Leaves of persons whose last session ended at least `grace` before `now`."""
        changes = []
        while self._leaving and self._leaving[0][0] <= now:
            due, key = heapq.heappop(self._leaving)
            person = self._persons.get(key)
            if person is None or person.leave_due != due:
                continue  # came back, or left later again: a newer entry stands for it
            del self._persons[key]
            assert person.last_alive is not None
            changes.append(self._change("leave", person, person.last_alive))
        return changes

    def session_binding(self, client_id: str) -> Binding | None:
        session = self._sessions.get(client_id)
        return session.binding if session else None

    def session_channels(self, client_id: str) -> set[str]:
        session = self._sessions.get(client_id)
        return set(session.channels) if session else set()

    def has_session(self, client_id: str) -> bool:
        return client_id in self._sessions

    def session_ids(self) -> list[str]:
        return list(self._sessions)

    def sessions(self) -> list[tuple[str, Binding, datetime]]:
        """Every open session: client id, binding, when it opened."""
        return [(s.client_id, s.binding, s.opened_at) for s in self._sessions.values()]

    def present(self) -> list[Change]:
        """A `join` for every person online now (their state, as a cluster resync needs it)."""
        return [self._change("join", p, p.online_since) for p in self._persons.values()]

    def forget(self, erased: Callable[[Binding], bool], now: datetime) -> list[Change]:
        """Drop every person a binding of whom `erased` names, with what the view remembers of
        their visits, and keep their sessions bound to nobody from now on (a tab still open
        never shows them again). Returns their leaves."""
        self._erased = erased
        changes = []
        for key, person in list(self._persons.items()):
            bindings = [person.last_binding, *(self._sessions[c].binding for c in person.clients)]
            if any(erased(b) for b in bindings):
                del self._persons[key]
                changes.append(self._change("leave", person, now))
        for session in self._sessions.values():
            if erased(session.binding):
                for store in (self._visits, self._visit_users, self._pages):
                    store.pop(session.binding.visit_token or "", None)
                session.binding = Binding()
        return changes

    def is_erased(self, binding: Binding) -> bool:
        return self._erased(binding)

    # visits and pages ---------------------------------------------------------------------

    def record_visit(self, visit_token: str, fields: Mapping[str, Any]) -> None:
        """Remember a visit's fields (visitor token, user id, browser, os, ...) for the views."""
        kept = {k: fields.get(k) for k in ("visitor_token", "user_id", *VISIT_FIELDS)}
        self._visits.put(visit_token, kept)

    def record_event(
        self, visit_token: str | None, name: str | None, properties: Any, time: datetime
    ) -> None:
        """Remember the latest `$view` page of a visit (the `page` of changes, `last_page`)."""
        page = view_page(name, properties)
        if not visit_token or page is None:
            return
        previous = self._pages.get(visit_token)
        if previous is None or previous[0] <= time:
            self._pages.put(visit_token, (time, page))

    # the views ----------------------------------------------------------------------------

    def online(self) -> list[dict[str, Any]]:
        """One row per person online now (ONLINE_COLUMNS), oldest stretch first.

        A person whose last session closed less than the grace ago is still listed (with
        `clients` 0): their leave has not been published yet, so this agrees with the channel.
        """
        rows = [self._row(p) for p in self._persons.values()]
        return sorted(
            rows, key=lambda r: (r["online_since"], r["user_id"] or "", r["visitor_token"] or "")
        )

    def persons_count(self) -> int:
        return len(self._persons)

    def clients(self) -> dict[str, int]:
        """Open sessions per person online now (the `clients` of `online()`, much cheaper)."""
        return {key: len(person.clients) for key, person in self._persons.items()}

    # internals ----------------------------------------------------------------------------

    def _completed(self, binding: Binding) -> Binding:
        """A binding filled from what the visit is known to have (visitor token, first user)."""
        token = binding.visit_token
        if not token:
            return binding
        visit = self._visits.get(token) or {}
        user = self._visit_users.get(token) or visit.get("user_id") or binding.user_id
        return Binding(token, binding.visitor_token or visit.get("visitor_token"), user)

    def _remember_user(self, binding: Binding) -> None:
        if binding.user_id and binding.visit_token:
            self._visit_users.first(binding.visit_token, binding.user_id)

    def _rebind(self, session: _Session, binding: Binding, now: datetime) -> list[Change]:
        old_person = session.binding.person
        session.binding = binding
        if binding.person == old_person:
            if old_person is not None:
                self._persons[old_person].last_binding = binding
            return []
        changes: list[Change] = []
        if old_person is not None:
            person = self._persons[old_person]
            person.clients.discard(session.client_id)
            if not person.clients:
                # the same human under a new key, not a departure: leave at once, no grace
                del self._persons[old_person]
                changes.append(self._change("leave", person, now))
        return changes + self._attach(session, now, since=session.opened_at)

    def _attach(
        self, session: _Session, now: datetime, since: datetime | None = None
    ) -> list[Change]:
        key = session.binding.person
        if key is None or self._erased(session.binding):
            return []
        person = self._persons.get(key)
        if person is None:
            person = _Person(key, since or now)
            self._persons[key] = person
            joined = True
        else:
            joined = False
            person.leave_due = None
        person.clients.add(session.client_id)
        person.last_binding = session.binding
        return [self._change("join", person, person.online_since)] if joined else []

    def _detach(self, session: _Session, last_alive: datetime) -> None:
        key = session.binding.person
        if key is None or key not in self._persons:
            return
        person = self._persons[key]
        person.clients.discard(session.client_id)
        person.last_alive = max(person.last_alive or last_alive, last_alive)
        if not person.clients:
            person.leave_due = leave_at(person.last_alive, self.grace)
            heapq.heappush(self._leaving, (person.leave_due, key))

    def _last_page(self, person: _Person) -> str | None:
        tokens = {self._sessions[c].binding.visit_token for c in person.clients}
        tokens.add(person.last_binding.visit_token)
        seen = [self._pages[t] for t in tokens if t and t in self._pages]
        return max(seen)[1] if seen else None

    def _change(self, kind: str, person: _Person, time: datetime) -> Change:
        b = person.last_binding
        return Change(
            type=kind,
            person=person.key,
            user_id=b.user_id,
            visitor_token=b.visitor_token,
            visit_token=b.visit_token,
            time=time,
            page=self._last_page(person),
            clients=len(person.clients),
        )

    def _row(self, person: _Person) -> dict[str, Any]:
        b = person.last_binding
        channels = sorted({ch for c in person.clients for ch in self._sessions[c].channels})
        visit = (self._visits.get(b.visit_token) if b.visit_token else None) or {}
        row: dict[str, Any] = {
            "user_id": b.user_id,
            "visitor_token": b.visitor_token,
            "visit_token": b.visit_token,
            "online_since": person.online_since,
            "clients": len(person.clients),
            "channels": channels,
            "last_page": self._last_page(person),
        }
        row.update({k: visit.get(k) for k in VISIT_FIELDS})
        return row
