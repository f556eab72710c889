"""Step, goal and exclusion names that no event in the range carries, with the closest names.

A funnel step or a goal that names an event nobody sent counts zero, exactly like an event that
has not happened yet: the report cannot tell a typo from a quiet week. This module tells the
command which names are absent so it can say so (and, with --strict, refuse).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from trailcli import sql
from trailcli.reports.steps import Step

if TYPE_CHECKING:
    import duckdb

MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class AbsentName:
    """An event name (or `*` pattern) given with `option` that no event in the range carries."""

    option: str  # --step, --exclude or --goal
    name: str
    suggestions: tuple[str, ...]

    def describe(self, where: str) -> str:
        """`no event 'purchse' <where>; did you mean 'purchase'?`"""
        kind = "matching" if "*" in self.name else ""
        text = f"{self.option}: no event {kind + ' ' if kind else ''}{self.name!r} {where}"
        if self.suggestions:
            text += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        return text


def _glob_matches(pattern: str, names: Iterable[str]) -> bool:
    regex = re.compile(
        "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)),
        re.DOTALL,
    )
    return any(regex.fullmatch(n) for n in names)


def closest(name: str, names: Sequence[str]) -> tuple[str, ...]:
    """The known names most like `name` (case-insensitive), best first."""
    lowered = {n.lower(): n for n in reversed(names)}  # the most frequent spelling wins
    found = difflib.get_close_matches(name.lower(), list(lowered), MAX_SUGGESTIONS, cutoff=0.6)
    return tuple(lowered[f] for f in found)


def absent_names(names: Sequence[str], given: Iterable[tuple[str, Step]]) -> list[AbsentName]:
    """The steps of `given` (option, step) whose event name none of `names` is, in order, each
    name once."""
    present = set(names)
    out: list[AbsentName] = []
    seen: set[tuple[str, str]] = set()
    for option, step in given:
        value = step.name.value
        if (option, value) in seen:
            continue
        seen.add((option, value))
        found = _glob_matches(value, present) if step.name.is_glob else value in present
        if not found:
            out.append(AbsentName(option, value, closest(value.replace("*", ""), names)))
    return out


def event_names(
    con: duckdb.DuckDBPyConnection, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """The distinct event names in `[start, end)` on a connection from `views.connect`, most
    frequent first."""
    from trailcli.reports.frames import fetch_arrow

    last = end - timedelta(microseconds=1) if end is not None else None
    params = {
        "since": start,
        "until": end,
        "date_from": start.astimezone(UTC).date().isoformat() if start else None,
        "date_to": last.astimezone(UTC).date().isoformat() if last else None,
    }
    return fetch_arrow(con, sql.load("event_names"), params).column("name").to_pylist()


# What a report calls with the absent names it found before counting (it may raise to stop).
OnAbsent = Callable[[list[AbsentName]], None]


def check(
    con: duckdb.DuckDBPyConnection,
    given: Iterable[tuple[str, Step]],
    start: datetime | None,
    end: datetime | None,
    on_absent: OnAbsent | None,
) -> None:
    """Hand `on_absent` the steps of `given` whose event is absent from `[start, end)`."""
    if on_absent is None:
        return
    absent = absent_names(event_names(con, start, end), given)
    if absent:
        on_absent(absent)
