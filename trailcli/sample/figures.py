"""Collect the ground-truth figures cohort by cohort and shape `ground_truth.json`."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import numpy as np
import pyarrow as pa

from trailcli.sample import catalog, truth
from trailcli.sample.presence import GRACE, Plan, Sessions
from trailcli.sample.traffic import DAY, HOUR, MINUTE, VIEW, Traffic, all_agents

FUNNEL_STEPS = ("$view page=/product/*", "add_to_cart", "checkout", "purchase")
FUNNEL_WINDOW = DAY
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int) -> str:
    """An instant as ISO-8601 UTC with a `Z` (microseconds only when not zero)."""
    return (_EPOCH + timedelta(microseconds=int(us))).isoformat().replace("+00:00", "Z")


@dataclass
class Instant:
    label: str
    at: int
    persons: list[str] = field(default_factory=list)


def fixed_instants(seed: int, range_start: int, days: int, plan: Plan) -> list[Instant]:
    """Four of the five `online` instants, chosen before generation (the fifth is a reload gap)."""
    rng = np.random.default_rng([seed, 1_000_033])
    middle = range_start + (days // 2) * DAY + 19 * HOUR + int(rng.random() * HOUR)
    last = range_start + (days - 1) * DAY + 21 * HOUR + int(rng.random() * 2 * HOUR)
    return [
        Instant("node_crash_outage", (plan.crash_at + plan.crash_back) // 2),
        Instant("node_restart", (plan.shutdown_at + plan.shutdown_back) // 2),
        Instant("evening", middle),
        Instant("last_evening", last),
    ]


class Figures:
    """Accumulates funnel levels, sources, who was online and the peak from each cohort."""

    def __init__(
        self, tables: tuple[str, ...], plan: Plan, range_start: int, days: int, seed: int
    ) -> None:
        self.tables = tables
        self.plan = plan
        self.range_start = range_start
        self.end = range_start + days * DAY
        self.instants = fixed_instants(seed, range_start, days, plan)
        self.reached = [0] * len(FUNNEL_STEPS)
        self.sources: Counter[str] = Counter()
        self.peak = truth.PeakSweep()
        pages = catalog.pages()
        self._product_page = np.array([fnmatchcase(p, "/product/*") for p in pages.paths])
        self._bot_agent = np.array([a.device_type == "Bot" for a in all_agents()])

    @property
    def has_funnel(self) -> bool:
        return "events" in self.tables and "visits" in self.tables

    @property
    def has_online(self) -> bool:
        return "presence" in self.tables

    def add_funnel(self, traffic: Traffic, event_ids: np.ndarray) -> None:
        """Funnel levels of the cohort's visitors (bots left out; units are visitor tokens)."""
        e, v = traffic.events, traffic.visits
        visitor = v.visitor[e.visit]
        bot = self._bot_agent[traffic.visitors.agent[visitor]]
        step = np.where(
            e.kind == VIEW, np.where(self._product_page[np.maximum(e.page, 0)], 1, 0), e.kind + 1
        )
        keep = (step > 0) & ~bot
        counts = truth.funnel_reached(
            visitor[keep], e.time[keep], event_ids[keep], step[keep], FUNNEL_WINDOW, 4
        )
        self.reached = [a + b for a, b in zip(self.reached, counts, strict=True)]

    def add_sources(self, traffic: Traffic, visits: pa.Table) -> None:
        """Visits per source, the rule applied to the stored landing page and referrer.

        A source depends only on the referrer URL and the landing query, which are fixed per
        (referrer, search term) pair, so each pair is classified once, from a stored row."""
        v = traffic.visits
        human = ~self._bot_agent[traffic.visitors.agent[v.visitor]]
        key = np.where(human, v.referrer * len(catalog.SEARCH_TERMS) + v.term, -1)
        uniq, first, count = np.unique(key, return_index=True, return_counts=True)
        picked = pa.array(first)
        landing = visits["landing_page"].take(picked).to_pylist()
        referrer = visits["referrer"].take(picked).to_pylist()
        for k, lp, ref, c in zip(uniq.tolist(), landing, referrer, count.tolist(), strict=True):
            if k >= 0:
                self.sources[truth.visit_source(lp, ref, {catalog.SITE_HOST})] += c

    def add_presence(
        self,
        traffic: Traffic,
        sessions: Sessions,
        anonymous: np.ndarray,
        visitor_offset: int,
        first_cohort: bool,
    ) -> None:
        """Person stretches of the cohort: who is online at each instant, and the peak sweep."""
        person, start, stop = self._person_intervals(traffic, sessions, anonymous, visitor_offset)
        p, s, e = truth.person_stretches(person, start, stop, GRACE)
        if first_cohort:
            self._pick_reload_gap(person, start, stop)
        names = self._person_names(traffic, visitor_offset)
        for instant in self.instants:
            for key in truth.online_at(p, s, e, instant.at).tolist():
                instant.persons.append(names(key))
        self.peak.add(s, e)

    def _person_intervals(
        self, traffic: Traffic, s: Sessions, anonymous: np.ndarray, visitor_offset: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per session with a person: the key (user 2u+1, visitor 2v) and its [start, end)."""
        v, who = traffic.visits, traffic.visitors
        login = v.login_at[s.visit]
        if "identities" in self.tables:
            has_user = (login >= 0) & (login < self.end)  # the visit's (only) binding
        else:
            has_user = (login >= 0) & (login <= s.start)  # the user stored on the rows
        user = who.user[v.visitor[s.visit]]
        person = np.where(has_user, 2 * user + 1, 2 * (visitor_offset + v.visitor[s.visit]))
        last_beats = np.array([n.last_beat() for n in self.plan.nodes])
        stop = np.where(s.off >= 0, s.off, last_beats[s.node])
        keep = ~anonymous[s.visit]
        return person[keep], s.start[keep], stop[keep]

    @staticmethod
    def _person_names(traffic: Traffic, visitor_offset: int) -> Callable[[int], str]:
        tokens = traffic.visitors.token

        def name(key: int) -> str:
            if key % 2:
                return str(key // 2)
            return tokens[key // 2 - visitor_offset].decode()

        return name

    def _pick_reload_gap(self, person: np.ndarray, start: np.ndarray, stop: np.ndarray) -> None:
        """An instant inside a reload gap on the first day (a gap shorter than grace)."""
        first_day_end = self.range_start + DAY
        gaps = truth.reload_gaps(person, start, stop, GRACE)
        afternoon = self.range_start + 12 * HOUR
        inside = [(a, b) for a, b in gaps if a >= afternoon and b < first_day_end]
        inside = inside or [(a, b) for a, b in gaps if b < first_day_end]
        if inside:
            a, b = min(inside)
            self.instants.insert(0, Instant("reload_gap", (a + b) // 2))
        else:
            self.instants.insert(
                0, Instant("first_afternoon", self.range_start + 15 * HOUR + MINUTE)
            )

    def settle(self, before: int | None) -> None:
        self.peak.settle(before)

    def document(self, generator: dict[str, object], counts: dict[str, int], data_dir: str) -> dict:
        """The ground-truth JSON object (docs/sample.md: each figure with the command reproducing it)."""
        d = shlex.quote(data_dir)
        out: dict[str, object] = {"generator": generator, "counts": counts}
        if self.has_funnel:
            steps = " ".join(f"--step {shlex.quote(s)}" for s in FUNNEL_STEPS)
            out["funnel"] = {
                "command": f"trail report funnel --data-dir {d} {steps} --format json",
                "steps": list(FUNNEL_STEPS),
                "reached": self.reached,
            }
        if self.has_online:
            out["online"] = [
                {
                    "at": iso(i.at),
                    "label": i.label,
                    "command": f"trail online --data-dir {d} --at {iso(i.at)} --format json",
                    "count": len(i.persons),
                    "persons": sorted(i.persons),
                }
                for i in sorted(self.instants, key=lambda i: i.at)
            ]
            frm, to = iso(self.range_start), iso(self.end)
            out["peak"] = {
                "command": f"trail online timeline --data-dir {d} --from {frm} --to {to}"
                " --every 1h --format json",
                "from": frm,
                "to": to,
                "peak_online": self.peak.peak,
                "peak_at": iso(self.peak.peak_at) if self.peak.peak_at is not None else None,
            }
        if "visits" in self.tables:
            ranked = sorted(self.sources.items(), key=lambda kv: (-kv[1], kv[0]))
            out["visits_by_source"] = {
                "command": f"trail report referrers --data-dir {d} --by source --format json",
                "visits": dict(ranked),
            }
        return out
