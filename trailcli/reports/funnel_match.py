"""Funnel matching over one unit's events: pure functions over values, no I/O, no clock.

A unit's events come sorted by (time, event_id); each carries the bit mask of the steps it
satisfies (bit k-1 for step k). An attempt starts at each step-1 event (under `any` order, at
each event that satisfies some step). One event satisfies at most one step of a chain. The
unit's level is the best over its attempts; the chosen attempt is the earliest one that reaches
it, and its chain is the earliest (lexicographically smallest by position) chain of that length.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

ORDERS = ("ordered", "strict", "any")
WINDOW_FROM = ("first", "prior")


@dataclass(frozen=True)
class Match:
    """The chosen attempt: the positions of its chain (one per step reached) and its level."""

    positions: tuple[int, ...]

    @property
    def level(self) -> int:
        return len(self.positions)


def _has(mask: int, step: int) -> bool:
    """Whether `mask` satisfies step number `step` (0-based)."""
    return bool(mask >> step & 1)


def in_window(elapsed: int, window: int) -> bool:
    """The funnel window (docs/reports.md: closed): a step counts when the time since the attempt's
    first step (with `--window-from prior`, since the previous step) is at most the window.

    The fast path states the same as `t <= t1 + window` (funnel_chain.py, in Polars);
    tests/test_reports_funnel.py runs every case through both.
    """
    return elapsed <= window


def _fits(times: Sequence[int], anchor: int, prev: int, pos: int, window: int, prior: bool) -> bool:
    """Whether the event at `pos` is within the window (from the anchor or the previous)."""
    return in_window(times[pos] - times[prev if prior else anchor], window)


def _ordered_from(
    times: Sequence[int], masks: Sequence[int], n: int, anchor: int, window: int, prior: bool
) -> tuple[int, ...]:
    """The earliest longest ordered chain that starts at `anchor`."""
    reach: list[list[int]] = [[anchor]]
    for step in range(1, n):
        found: list[int] = []
        prev = reach[-1]
        for pos in range(prev[0] + 1, len(times)):
            if not _fits(times, anchor, prev[-1], pos, window, prior):
                break  # later events are further still from every predecessor
            if not _has(masks[pos], step):
                continue
            # the latest reachable predecessor before pos is the one most likely in the window
            latest = prev[bisect.bisect_left(prev, pos) - 1]
            if _fits(times, anchor, latest, pos, window, prior):
                found.append(pos)
        if not found:
            break
        reach.append(found)
    good = [reach[-1]]  # positions of each step from which the full length is still reachable
    for step in range(len(reach) - 2, -1, -1):
        nxt = good[0]
        good.insert(
            0,
            [
                q
                for q in reach[step]
                if any(p > q and _fits(times, anchor, q, p, window, prior) for p in nxt)
            ],
        )
    chain = [anchor]
    for step in range(1, len(reach)):
        prev_pos = chain[-1]
        chain.append(
            min(
                p
                for p in good[step]
                if p > prev_pos and _fits(times, anchor, prev_pos, p, window, prior)
            )
        )
    return tuple(chain)


def _strict_from(
    times: Sequence[int], masks: Sequence[int], n: int, anchor: int, window: int, prior: bool
) -> tuple[int, ...]:
    """The chain of consecutive events from `anchor` that satisfy steps 1, 2, ... in turn."""
    chain = [anchor]
    while len(chain) < n:
        pos = chain[-1] + 1
        if pos >= len(times) or not _has(masks[pos], len(chain)):
            break
        if not _fits(times, anchor, chain[-1], pos, window, prior):
            break
        chain.append(pos)
    return tuple(chain)


def _augment(event: int, masks: Sequence[int], n: int, owner: list[int], seen: set[int]) -> bool:
    """Kuhn's augmenting path: give `event` a step, moving other events' steps if needed."""
    for step in range(n):
        if _has(masks[event], step) and step not in seen:
            seen.add(step)
            if owner[step] < 0 or _augment(owner[step], masks, n, owner, seen):
                owner[step] = event
                return True
    return False


def _any_from(
    times: Sequence[int], masks: Sequence[int], n: int, start: int, window: int
) -> tuple[int, ...]:
    """Distinct steps satisfied by events in [t_start, t_start + window], each event used once.

    Returns the matched events of the shortest prefix that reaches the most steps, in order.
    """
    owner = [-1] * n
    best: tuple[int, ...] = ()
    for pos in range(start, len(times)):
        if not in_window(times[pos] - times[start], window):
            break
        if masks[pos] and _augment(pos, masks, n, owner, set()):
            best = tuple(sorted(p for p in owner if p >= 0))
            if len(best) == n:
                break
    return best


def match_unit(
    times: Sequence[int],
    masks: Sequence[int],
    n: int,
    order: str,
    window: int,
    window_from: str = "first",
    anchors_from: int | None = None,
    anchors_to: int | None = None,
) -> Match | None:
    """The chosen attempt of one unit, or None when no attempt starts in [anchors_from, anchors_to).

    `times` are integers (e.g. microseconds) sorted with the events; `window` in the same unit.
    """
    prior = window_from == "prior"
    best: tuple[int, ...] = ()
    for pos, (t, mask) in enumerate(zip(times, masks, strict=True)):
        if anchors_from is not None and t < anchors_from:
            continue
        if anchors_to is not None and t >= anchors_to:
            break
        if order == "any":
            if not mask:
                continue
            chain = _any_from(times, masks, n, pos, window)
        elif not _has(mask, 0):
            continue
        elif order == "strict":
            chain = _strict_from(times, masks, n, pos, window, prior)
        else:
            chain = _ordered_from(times, masks, n, pos, window, prior)
        if len(chain) > len(best):
            best = chain
            if len(best) == n:
                break
    return Match(best) if best else None


def excluded(
    match: Match,
    flags: Sequence[bool],
    times: Sequence[int],
    n: int,
    order: str = "ordered",
    window: int = 0,
    window_from: str = "first",
) -> bool:
    """Whether an excluded event lies strictly between the chain's first and last event.

    A strict chain that stops short of `n` steps ends at the event right after it when that
    event is within the window (it is what broke the chain), so an excluded event there counts.
    """
    first, last = match.positions[0], match.positions[-1]
    stop = last  # exclusive
    nxt = last + 1
    broken_by_next = (
        order == "strict"
        and match.level < n
        and nxt < len(flags)
        and _fits(times, first, last, nxt, window, window_from == "prior")
    )
    if broken_by_next:
        stop = nxt + 1
    inside = set(match.positions)
    return any(flags[p] and p not in inside for p in range(first + 1, stop))
