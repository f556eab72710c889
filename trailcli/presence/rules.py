"""The person rules of presence, shared by the collector's live view and `trail online`.

A session belongs to a person: the resolved user id where one is bound, else the visitor token
(`person_key`). A person is online while any of their sessions is (tab collapse,
`collapse_tabs`), and two consecutive stretches separated by a gap strictly shorter than the
grace are one stretch (`merge_stretches`). Intervals are half-open, `[start, end)`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

DEFAULT_GRACE = timedelta(seconds=15)
HEARTBEAT_INTERVAL = timedelta(seconds=10)
ALIVE_HEARTBEATS = 3  # a node whose last heartbeat is within this many intervals of now is alive

Stretch = tuple[datetime, datetime]
K = TypeVar("K", bound=Hashable)


def person_key(user_id: str | None, visitor_token: str | None) -> str | None:
    """The person a session belongs to: the user id where bound, else the visitor token, else None.

    Empty strings count as missing (docs/data-model.md: "empty" is always null).
    """
    return user_id or visitor_token or None


def merge_stretches(
    stretches: Iterable[Stretch], grace: timedelta = DEFAULT_GRACE
) -> list[Stretch]:
    """The union of half-open stretches, sorted, with short gaps closed.

    Overlapping or touching stretches become one; two consecutive stretches separated by a gap
    strictly shorter than `grace` become one (a gap equal to `grace` stays a gap, `closes_gap`).
    Empty stretches (`end <= start`) are never online and are dropped.

    `trail online timeline` applies the same rule in SQL (queries/online_timeline_steps.sql);
    tests/test_presence_rules.py feeds both the same cases.
    """
    merged: list[Stretch] = []
    for start, end in sorted(s for s in stretches if s[1] > s[0]):
        if merged and (start <= merged[-1][1] or closes_gap(start - merged[-1][1], grace)):
            last_start, last_end = merged[-1]
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged


def closes_gap(gap: timedelta, grace: timedelta) -> bool:
    """Whether a person who was away for `gap` never left: a gap strictly shorter than the
    grace is closed (one stretch), a gap equal to it or longer is not."""
    return gap < grace


def leave_at(last_alive: datetime, grace: timedelta) -> datetime:
    """When a person whose last session ended at `last_alive` has left (the live view's leave):
    the first moment a return no longer closes the gap."""
    return last_alive + grace


def collapse_tabs(
    sessions: Iterable[tuple[K, datetime, datetime]], grace: timedelta = DEFAULT_GRACE
) -> dict[K, list[Stretch]]:
    """Per person, the merged stretches of all their sessions (tabs, devices): `{key: stretches}`.

    `sessions` are `(person key, start, end)`; sessions without a person (key None) are left out.
    """
    by_person: dict[K, list[Stretch]] = {}
    for key, start, end in sessions:
        if key is not None:
            by_person.setdefault(key, []).append((start, end))
    return {key: merge_stretches(spans, grace) for key, spans in by_person.items()}


def stretch_at(stretches: Sequence[Stretch], at: datetime) -> Stretch | None:
    """The stretch that contains the instant `at` (start <= at < end), or None."""
    for start, end in stretches:
        if start <= at < end:
            return (start, end)
    return None


def online_seconds(stretches: Iterable[Stretch], start: datetime, end: datetime) -> float:
    """Seconds of `[start, end)` covered by the (already merged, disjoint) `stretches`."""
    total = 0.0
    for s, e in stretches:
        lo, hi = max(s, start), min(e, end)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return total


def channel_matches(pattern: str, channel: str | None) -> bool:
    """Whether a Bayeux channel name matches a pattern with wildcards.

    `*` matches exactly one segment, `**` (last segment) one or more segments: `/chat/*` matches
    `/chat/a` but not `/chat/a/b`; `/chat/**` matches both; neither matches `/chat` itself.
    """
    if not channel:
        return False
    want = pattern.strip("/").split("/")
    have = channel.strip("/").split("/")
    for i, part in enumerate(want):
        if part == "**":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(have) == len(want)


def persons_online(
    stretches_by_person: Mapping[K, Sequence[Stretch]], at: datetime
) -> dict[K, Stretch]:
    """The persons online at `at`, each with the merged stretch that contains it."""
    found: dict[K, Stretch] = {}
    for key, stretches in stretches_by_person.items():
        stretch = stretch_at(stretches, at)
        if stretch is not None:
            found[key] = stretch
    return found
