"""What the dashboard knows about each visit it shows: pages viewed this visit, and the source.

Counts are exact: a visit's `$view` event ids seen live are united with those already in the
log (read once, when the visit is first shown), so an event seen both ways counts once. Bounded:
the least recently touched visits are forgotten first. Pure; the log is read elsewhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_IDS_PER_VISIT = 2_000  # beyond this a visit's views are counted without de-duplication
MAX_ATTEMPTS = 20  # reads of the log before a visit that never shows up there is given up on


@dataclass
class Note:
    view_ids: set[str] = field(default_factory=set)
    uncounted: int = 0  # views beyond MAX_IDS_PER_VISIT
    source: str | None = None
    device: dict[str, str | None] = field(default_factory=dict)  # device type, browser, country...
    resolved: bool = False  # the log has been read for this visit
    attempts: int = 0

    @property
    def views(self) -> int:
        return len(self.view_ids) + self.uncounted

    def add_view(self, event_id: str | None) -> None:
        if event_id is not None and event_id in self.view_ids:
            return
        if event_id is None or len(self.view_ids) >= MAX_IDS_PER_VISIT:
            self.uncounted += 1
        else:
            self.view_ids.add(event_id)


class VisitNotes:
    """Notes for up to `limit` visits."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = max(1, limit)
        self._notes: OrderedDict[str, Note] = OrderedDict()

    def __len__(self) -> int:
        return len(self._notes)

    def note(self, visit_token: str) -> Note:
        """The note of a visit, made if missing (and counted as recently used)."""
        found = self._notes.get(visit_token)
        if found is None:
            found = self._notes[visit_token] = Note()
            while len(self._notes) > self.limit:
                self._notes.popitem(last=False)
        else:
            self._notes.move_to_end(visit_token)
        return found

    def get(self, visit_token: str | None) -> Note | None:
        return self._notes.get(visit_token) if visit_token else None

    def viewed(self, visit_token: str, event_id: str | None) -> Note:
        """A `$view` of the visit arrived live."""
        note = self.note(visit_token)
        note.add_view(event_id)
        return note

    def unresolved(self, tokens: Iterable[str | None]) -> list[str]:
        """Those of `tokens` whose visit has not been read from the log yet (notes made)."""
        out = []
        for token in dict.fromkeys(t for t in tokens if t):
            if not self.note(token).resolved:
                out.append(token)
        return out

    def resolve(
        self,
        token: str,
        found: bool,
        view_ids: Iterable[str],
        source: str | None,
        device: dict[str, str | None] | None = None,
    ) -> None:
        """What the log holds for a visit: whether its row is there, its views, source, device.

        A visit not in the log yet (its WAL not committed) keeps its views and is asked about
        again, up to MAX_ATTEMPTS times.
        """
        note = self.note(token)
        for event_id in view_ids:
            note.add_view(event_id)
        note.attempts += 1
        if found:
            note.source = source
            note.device = dict(device or {})
        note.resolved = found or note.attempts >= MAX_ATTEMPTS

    def clear(self) -> None:
        """Forget everything (live views are no longer watched, so counts would go stale)."""
        self._notes.clear()
