"""The two small interfaces the dashboard reads through: the live view and the reports.

`LiveSource` is who is online now plus the `/trail/presence` and `/trail/events` messages; this
node's implementation is `trailcli.collector.dashboard.live.CollectorLive`, and a cluster swaps
in one that sees every node. `Reports` answers what `trail replay`, `trail report pages` and
`trail report referrers` answer; the collector never imports the reports, so `trail collect`
hands it an implementation (`trailcli.cli.dashboard_reports`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from trailcli.errors import UsageError

Listener = Callable[[str, Any], None]  # (channel, data)
PERSON_KINDS = ("user", "visitor", "visit")


class LiveSource(Protocol):
    @property
    def node_id(self) -> str | None:
        """The node whose rows and messages name none (this one)."""
        ...

    def online(self) -> list[dict[str, Any]]:
        """One row per person online now: the columns of `trail online --at now` and `node_id`."""
        ...

    def clients(self) -> Mapping[str, int]:
        """Open sessions per person online now, by person key (cheap: asked every few seconds)."""
        ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(channel, data)` with every `/trail/presence` and `/trail/events`
        message from now on; returns the function that stops it."""
        ...


@dataclass(frozen=True)
class PersonRef:
    """Whose trail: a user id, a visitor token or a visit token."""

    kind: str
    value: str

    def __post_init__(self) -> None:
        if self.kind not in PERSON_KINDS or not self.value or len(self.value) > 255:
            raise UsageError(
                "Say whose trail to show.", "pass exactly one of user, visitor or visit"
            )


class Reports(Protocol):
    def trail(
        self, data_dir: Path, person: PersonRef, since: datetime | None
    ) -> list[dict[str, Any]]:
        """The rows of `trail replay` for the person from `since` on."""
        ...

    def top_pages(
        self, data_dir: Path, start: datetime, end: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """The rows of `trail report pages --from start --to end --limit N`."""
        ...

    def top_sources(
        self, data_dir: Path, start: datetime, end: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """The rows of `trail report referrers --from start --to end --limit N`."""
        ...

    def visit_source(
        self, landing_page: str | None, referrer: str | None, utm: Mapping[str, str | None]
    ) -> str:
        """A visit's source, as `trail replay` names it on the visit's row."""
        ...
