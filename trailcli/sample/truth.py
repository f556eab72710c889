"""Reference figures of a generated sample, computed from what was generated (not by the reports).

Each function is the plainest correct reading of the rules in docs/; the report commands are
checked against the numbers these produce.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np

# ---- sources (docs/reports.md, Referrers) ---------------------------------------------------------

KNOWN_REFERRERS = {
    "bing.com": "Bing",
    "duckduckgo.com": "DuckDuckGo",
    "search.yahoo.com": "Yahoo",
    "baidu.com": "Baidu",
    "facebook.com": "Facebook",
    "m.facebook.com": "Facebook",
    "l.facebook.com": "Facebook",
    "t.co": "Twitter",
    "twitter.com": "Twitter",
    "x.com": "Twitter",
    "linkedin.com": "LinkedIn",
    "lnkd.in": "LinkedIn",
    "reddit.com": "Reddit",
    "instagram.com": "Instagram",
    "mail.google.com": "Gmail",
    "outlook.live.com": "Outlook",
    "chatgpt.com": "ChatGPT",
    "perplexity.ai": "Perplexity",
}
CLICK_IDS = {"gclid": "Google", "msclkid": "Bing", "fbclid": "Facebook"}
# utm_source values that name a known source, lower case (a host in KNOWN_REFERRERS does too)
UTM_ALIASES = {
    **{name.lower(): name for name in (*KNOWN_REFERRERS.values(), "Google", "Yandex")},
    "fb": "Facebook",
    "ig": "Instagram",
    "adwords": "Google",
}


def known_referrer(host: str) -> str | None:
    """The display name of a known referrer host (`www.` ignored), else None."""
    bare = host.lower().removeprefix("www.")
    if bare in KNOWN_REFERRERS:
        return KNOWN_REFERRERS[bare]
    first = bare.split(".")[0]
    if first == "google" and "." in bare:
        return "Google"
    if first == "yandex" and "." in bare:
        return "Yandex"
    return None


def visit_source(landing_page: str | None, referrer: str | None, site_hosts: Iterable[str]) -> str:
    """A visit's source: utm_source (lower case; a known source's name when it names one), else a known referrer or click-id network,
    else the referrer host without `www.`, else `(direct)`; own-site referrers count as none."""
    query = parse_qs(urlsplit(landing_page or "").query)
    utm = (query.get("utm_source") or [""])[0].strip().lower()
    if utm:
        return UTM_ALIASES.get(utm) or known_referrer(utm) or utm
    host = (urlsplit(referrer).hostname or "") if referrer else ""
    if host in set(site_hosts):
        host = ""
    name = known_referrer(host) if host else None
    if name:
        return name
    for param, network in CLICK_IDS.items():
        if query.get(param):
            return network
    return host.removeprefix("www.") if host else "(direct)"


# ---- funnel (ordered, unit visitor, closed window from step 1) -------------------------------


def funnel_level(steps: Sequence[int], times: Sequence[int], window: int, n_steps: int) -> int:
    """The furthest step (1-based) any attempt reaches. `steps` are 1..n (0 = no step) in
    (time, event_id) order; each attempt starts at a step-1 event and takes the earliest
    next step after the previous one with t_k - t_1 <= window."""
    best = 0
    for i, step in enumerate(steps):
        if step != 1:
            continue
        level, t1 = 1, times[i]
        for j in range(i + 1, len(steps)):
            if times[j] - t1 > window:
                break
            if steps[j] == level + 1:
                level += 1
                if level == n_steps:
                    return n_steps
        best = max(best, level)
    return best


def funnel_reached(
    unit: np.ndarray,
    time: np.ndarray,
    event_id: np.ndarray,
    step: np.ndarray,
    window: int,
    n_steps: int,
) -> list[int]:
    """Units reaching each step, from step-matching events of the units (step in 1..n_steps).

    A unit with a step-1 event but no step-2 event is at level 1 without matching."""
    has_first = np.unique(unit[step == 1])
    chained = np.intersect1d(has_first, unit[step == 2])
    pick = np.isin(unit, chained)
    unit, time, event_id, step = unit[pick], time[pick], event_id[pick], step[pick]
    order = np.lexsort((event_id, time, unit))
    unit, time, step = unit[order], time[order], step[order]
    bounds = np.flatnonzero(np.diff(unit)) + 1
    counts = np.zeros(n_steps + 1, np.int64)
    counts[1] = len(has_first) - len(chained)
    for lo, hi in zip(
        np.concatenate(([0], bounds)), np.concatenate((bounds, [len(unit)])), strict=True
    ):
        if hi > lo:
            counts[funnel_level(step[lo:hi].tolist(), time[lo:hi].tolist(), window, n_steps)] += 1
    return [int(counts[k:].sum()) for k in range(1, n_steps + 1)]


# ---- presence: person stretches, online at an instant, peak -------------------------------


def person_stretches(
    person: np.ndarray, start: np.ndarray, end: np.ndarray, grace: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge each person's half-open session intervals: overlapping or touching intervals, and
    stretches separated by a gap strictly shorter than `grace`, become one stretch."""
    keep = end > start
    person, start, end = person[keep], start[keep], end[keep]
    order = np.lexsort((start, person))
    person, start, end = person[order], start[order], end[order]
    stretch_person: list[int] = []
    stretch_start: list[int] = []
    stretch_end: list[int] = []
    for p, s, e in zip(person.tolist(), start.tolist(), end.tolist(), strict=True):
        if stretch_person and stretch_person[-1] == p and s - stretch_end[-1] < grace:
            stretch_end[-1] = max(stretch_end[-1], e)
        else:
            stretch_person.append(p)
            stretch_start.append(s)
            stretch_end.append(e)
    return (
        np.asarray(stretch_person, dtype=np.int64),
        np.asarray(stretch_start, dtype=np.int64),
        np.asarray(stretch_end, dtype=np.int64),
    )


def online_at(person: np.ndarray, start: np.ndarray, end: np.ndarray, at: int) -> np.ndarray:
    """Persons with a stretch containing `at` (start <= at < end)."""
    return np.unique(person[(start <= at) & (at < end)])


@dataclass
class PeakSweep:
    """The maximum number of overlapping stretches and the earliest instant it is reached,
    fed in batches; times before a `settle` boundary must all have been added by then."""

    count: int = 0
    peak: int = 0
    peak_at: int | None = None
    _times: list[np.ndarray] = field(default_factory=list)
    _deltas: list[np.ndarray] = field(default_factory=list)

    def add(self, start: np.ndarray, end: np.ndarray) -> None:
        self._times += [start, end]
        self._deltas += [np.ones(len(start), np.int64), -np.ones(len(end), np.int64)]

    def settle(self, before: int | None = None) -> None:
        """Sweep every change before `before` (all when None); at equal times ends go first."""
        if not self._times:
            return
        times, deltas = np.concatenate(self._times), np.concatenate(self._deltas)
        ready = np.ones(len(times), bool) if before is None else times < before
        self._times, self._deltas = [times[~ready]], [deltas[~ready]]
        times, deltas = times[ready], deltas[ready]
        if not len(times):
            return
        order = np.lexsort((deltas, times))
        running = self.count + np.cumsum(deltas[order])
        top = int(np.argmax(running))
        if running[top] > self.peak:
            self.peak, self.peak_at = int(running[top]), int(times[order][top])
        self.count = int(running[-1])


def reload_gaps(
    person: np.ndarray, start: np.ndarray, end: np.ndarray, grace: int
) -> list[tuple[int, int]]:
    """Moments a person had no open session but for less than `grace` (merged into one stretch):
    (gap start, gap end) pairs with 0 < gap < grace."""
    keep = end > start
    person, start, end = person[keep], start[keep], end[keep]
    order = np.lexsort((start, person))
    gaps: list[tuple[int, int]] = []
    last_person, reach = None, 0
    for p, s, e in zip(
        person[order].tolist(), start[order].tolist(), end[order].tolist(), strict=True
    ):
        if p == last_person and 0 < s - reach < grace:
            gaps.append((reach, s))
        if p != last_person:
            last_person, reach = p, e
        else:
            reach = max(reach, e)
    return gaps
