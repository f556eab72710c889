"""Paths through the site: what people viewed next after a page, or before reaching one."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import UsageError

CLEAN_FORMS = "PATTERN=NAME, e.g. '/users/*=/users/:id' ('*' is one path segment, '**' any text)"

# What the report reads: events of the range's days and the visits' device types (bots). Events
# before the range cannot change how the range's events group into sessions: the first of a
# visitor's events in range starts a group either way, and every later one is compared with an
# earlier event in range. User ids are never shown, so identities are not read.
READS = ("events", "visits")


@dataclass(frozen=True)
class CleanRule:
    """Pages matching `pattern` (a glob over the whole page) become `name`."""

    pattern: str
    name: str

    @property
    def regex(self) -> str:
        """The glob as a full-match regex: `**` any text, `*` any text within one segment."""
        parts = re.split(r"(\*\*|\*)", self.pattern)
        out = []
        for part in parts:
            if part == "**":
                out.append(".*")
            elif part == "*":
                out.append("[^/]*")
            else:
                out.append(re.escape(part))
        return "".join(out)


def parse_clean_rule(text: str) -> CleanRule:
    """Read `PATTERN=NAME`; a rule without `=` or with an empty side is a usage error."""
    pattern, sep, name = text.partition("=")
    if not sep or not pattern.strip() or not name.strip():
        raise UsageError(f"Cannot read the cleaning rule {text!r}.", f"write {CLEAN_FORMS}")
    return CleanRule(pattern.strip(), name.strip())


@dataclass(frozen=True)
class PathsQuery:
    from_page: str | None = None
    to_page: str | None = None
    steps: int = 5
    top: int = 10
    sequences: bool = False
    clean: tuple[CleanRule, ...] = field(default_factory=tuple)
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    include_bots: bool = False
    session_timeout: timedelta | None = None


def _anchor_like(page: str | None) -> str | None:
    if page is None:
        return None
    from trailcli.reports.steps import glob_to_like

    return glob_to_like(page)


def _check(query: PathsQuery) -> None:
    if query.from_page is not None and query.to_page is not None:
        raise UsageError(
            "--from-page and --to-page cannot be used together.",
            "pass --from-page to see what came next, or --to-page to see what came before",
        )
    if query.steps < 1 or query.top < 1:
        raise UsageError("--steps and --top must be at least 1.", "e.g. --steps 5 --top 10")


def paths_report(data_dir: Path, query: PathsQuery) -> Any:
    """Top transitions per step (step, from, to, sessions, visitors), or with `sequences` the top
    node sequences (rank, sequence, sessions, visitors), as Arrow."""
    _check(query)
    from trailcli.reports.frames import fetch_arrow
    from trailcli.reports.sessions import use_timeout
    from trailcli.store import views
    from trailcli.store.layout import Days

    con = views.connect(
        data_dir,
        need=("events",),
        start=query.start,
        end=query.end,
        dates={"events": Days.covering(query.start, query.end)},
        read=READS,
    )
    use_timeout(con, query.session_timeout)
    params = {
        "since": query.start,
        "until": query.end,
        "include_bots": query.include_bots,
        "clean_patterns": [r.regex for r in query.clean],
        "clean_names": [r.name for r in query.clean],
        "anchor": _anchor_like(query.to_page if query.to_page is not None else query.from_page),
        "backward": query.to_page is not None,
        "steps": query.steps,
        "top": query.top,
    }
    name = "paths_sequences" if query.sequences else "paths_transitions"
    statement = f"WITH path_steps AS ({sql.load('paths_steps')}) {sql.load(name)}"
    used = sql.bound_params(statement)
    table = fetch_arrow(con, statement, {k: v for k, v in params.items() if k in used})
    if query.limit is not None:
        table = table.slice(0, query.limit)
    return table


def clean_rules(texts: Iterable[str]) -> tuple[CleanRule, ...]:
    return tuple(parse_clean_rule(t) for t in texts)
