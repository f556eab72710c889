"""A small, obviously correct funnel reference by exhaustive search, for property tests.

Events are dicts with `t` (minutes), `id`, `name`, `plan`, `visitor`, `visit`, `user`.
A step is an event name or `*` (any event). Everything is enumerated: every chain of every
length from every anchor, every assignment of events to steps.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any

Event = dict[str, Any]


def satisfies(event: Event, step: str) -> bool:
    return step == "*" or event["name"] == step


def sessions(events: Sequence[Event], timeout: int = 30) -> dict[str, str]:
    """event id -> session key: per visitor, by (t, id), a gap >= timeout starts a new one."""
    out: dict[str, str] = {}
    by_visitor: dict[str, list[Event]] = {}
    for e in events:
        by_visitor.setdefault(e["visitor"], []).append(e)
    for visitor, evs in by_visitor.items():
        evs = sorted(evs, key=lambda e: (e["t"], e["id"]))
        start = None
        for i, e in enumerate(evs):
            if i == 0 or e["t"] - evs[i - 1]["t"] >= timeout:
                start = e["t"]
            out[e["id"]] = f"{visitor}@{start}"
    return out


def _valid(
    chain: Sequence[int],
    evs: Sequence[Event],
    steps: Sequence[str],
    order: str,
    window: int,
    prior: bool,
) -> bool:
    for i, p in enumerate(chain):
        if not satisfies(evs[p], steps[i]):
            return False
        if i == 0:
            continue
        if order == "strict" and p != chain[i - 1] + 1:
            return False
        base = evs[chain[i - 1]]["t"] if prior else evs[chain[0]]["t"]
        if evs[p]["t"] - base > window:
            return False
    return True


def _ordered_attempt(evs, steps, order, window, prior, anchor):
    """Longest chain from `anchor`, lexicographically smallest among the longest."""
    for length in range(len(steps), 0, -1):
        for rest in itertools.combinations(range(anchor + 1, len(evs)), length - 1):
            chain = (anchor, *rest)
            if _valid(chain, evs, steps, order, window, prior):
                return chain
    return ()


def _matching_size(events: Sequence[Event], steps: Sequence[str]) -> int:
    """Most distinct steps that distinct events can satisfy (exhaustive)."""
    for k in range(min(len(steps), len(events)), 0, -1):
        for chosen_steps in itertools.combinations(range(len(steps)), k):
            for chosen in itertools.permutations(range(len(events)), k):
                if all(
                    satisfies(events[e], steps[s])
                    for s, e in zip(chosen_steps, chosen, strict=True)
                ):
                    return k
    return 0


def unit_result(
    evs: Sequence[Event],
    steps: Sequence[str],
    order: str,
    window: int,
    prior: bool,
    exclude: str | None,
    lo: int | None,
    hi: int | None,
) -> dict | None:
    """level, excluded, breakdown and step times of one unit (None: no attempt in range)."""
    n = len(steps)
    best: tuple[int, ...] = ()
    best_end = None
    for a, e in enumerate(evs):
        if (lo is not None and e["t"] < lo) or (hi is not None and e["t"] >= hi):
            continue
        if order == "any":
            if not any(satisfies(e, s) for s in steps):
                continue
            inside = [p for p in range(a, len(evs)) if evs[p]["t"] - e["t"] <= window]
            level, end = 0, a
            for j in range(len(inside)):
                size = _matching_size([evs[p] for p in inside[: j + 1]], steps)
                if size > level:
                    level, end = size, inside[j]
            chain = tuple(range(level))  # only the length matters below
            if level > len(best):
                best, best_end = chain, (a, end)
        elif satisfies(e, steps[0]):
            chain = _ordered_attempt(evs, steps, order, window, prior, a)
            if len(chain) > len(best):
                best, best_end = chain, (chain[0], chain[-1])
    if not best:
        return None
    first, last = best_end
    members = set(best) if order != "any" else set()
    stop = last
    if order == "strict" and len(best) < n and last + 1 < len(evs):
        base = evs[last]["t"] if prior else evs[first]["t"]
        if evs[last + 1]["t"] - base <= window:
            stop = last + 1 + 1
    excluded = exclude is not None and any(
        evs[p]["name"] == exclude and p not in members for p in range(first + 1, stop)
    )
    return {
        "level": len(best),
        "excluded": excluded,
        "breakdown": evs[first]["plan"],
        "times": [evs[p]["t"] for p in best] if order != "any" else [],
    }


def funnel(
    events: Sequence[Event],
    steps: Sequence[str],
    unit: str,
    order: str,
    window: int,
    prior: bool,
    exclude: str | None = None,
    lo: int | None = None,
    hi: int | None = None,
) -> dict[Any, dict[str, list]]:
    """breakdown value -> {"reached": [...], "median": [...]} over every unit."""
    session_of = sessions(events)
    units: dict[str, list[Event]] = {}
    for e in events:
        key = session_of[e["id"]] if unit == "session" else e[unit]
        if key is not None:
            units.setdefault(key, []).append(e)
    results = []
    for evs in units.values():
        evs = sorted(evs, key=lambda e: (e["t"], e["id"]))
        r = unit_result(evs, steps, order, window, prior, exclude, lo, hi)
        if r is not None and not r["excluded"]:
            results.append(r)
    out: dict[Any, dict[str, list]] = {}
    for value in {r["breakdown"] for r in results}:
        group = [r for r in results if r["breakdown"] == value]
        reached = [sum(r["level"] >= k for r in group) for k in range(1, len(steps) + 1)]
        medians: list[float | None] = [None]
        for k in range(1, len(steps)):
            if order == "any":
                medians.append(None)
                continue
            gaps = [60.0 * (r["times"][k] - r["times"][k - 1]) for r in group if r["level"] > k]
            medians.append(statistics.median(gaps) if gaps else None)
        out[value] = {"reached": reached, "median": medians}
    return out
