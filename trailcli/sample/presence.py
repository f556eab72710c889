"""Bayeux client sessions of the sample's visits, and the collector nodes they run on.

Three nodes: `web-1` runs throughout, `web-2` crashes (its sessions end with `node_lost` rows
written at restart), `web-3` restarts cleanly (`server_shutdown`). Each node writes a heartbeat
when it starts and every 10 s. Times are integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trailcli.sample import catalog
from trailcli.sample.traffic import DAY, HOUR, HUMAN, MINUTE, SECOND, Traffic, position_in_group

HEARTBEAT = 10 * SECOND
GRACE = 15 * SECOND
TIMEOUT = 30 * SECOND
OFFLINE_REASONS = ("disconnect", "transport_closed", "timeout", "server_shutdown", "node_lost")
DISCONNECT, TRANSPORT_CLOSED, TIMEOUT_REASON, SERVER_SHUTDOWN, NODE_LOST = range(5)
STEADY, CRASHING, RESTARTING = 0, 1, 2  # node indices in catalog.NODES


@dataclass(frozen=True)
class Node:
    """A collector node: the windows it was up, heartbeats every 10 s from each window's start."""

    name: str
    up: tuple[tuple[int, int], ...]

    def beats(self, lo: int, hi: int) -> np.ndarray:
        """Heartbeat times in [lo, hi)."""
        out = []
        for start, stop in self.up:
            first = start + max(0, -(-(lo - start) // HEARTBEAT)) * HEARTBEAT
            last = min(stop, hi)
            if first < last:
                out.append(np.arange(first, last, HEARTBEAT, dtype=np.int64))
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def last_beat(self, at_or_before: int | None = None) -> int:
        """The latest heartbeat at or before the given time (default: the node's last one)."""
        best = -1
        for start, stop in self.up:
            limit = stop - 1 if at_or_before is None else min(stop - 1, at_or_before)
            if limit >= start:
                best = max(best, start + (limit - start) // HEARTBEAT * HEARTBEAT)
        return best


@dataclass(frozen=True)
class Plan:
    """When the crashing node crashed and came back, when the other restarted, and the nodes."""

    crash_at: int
    crash_back: int
    shutdown_at: int
    shutdown_back: int
    nodes: tuple[Node, ...]


def plan(seed: int, range_start: int, days: int) -> Plan:
    """The node timeline of a sample: a crash mid-range in the afternoon, a clean restart."""
    rng = np.random.default_rng([seed, 1_000_003])
    end = range_start + days * DAY
    phases = (rng.random(3) * HEARTBEAT).astype(np.int64)
    crash_at = range_start + (days // 2) * DAY + 14 * HOUR + int(rng.random() * 3 * HOUR)
    crash_back = crash_at + 3 * MINUTE + int(rng.random() * 5 * MINUTE)
    shutdown_at = range_start + (2 * days // 3) * DAY + 9 * HOUR + int(rng.random() * 2 * HOUR)
    shutdown_back = shutdown_at + 20 * SECOND + int(rng.random() * 70 * SECOND)
    first = [range_start + int(p) for p in phases]
    nodes = (
        Node(catalog.NODES[STEADY], ((first[0], end),)),
        Node(catalog.NODES[CRASHING], ((first[1], crash_at), (crash_back, end))),
        Node(catalog.NODES[RESTARTING], ((first[2], shutdown_at), (shutdown_back, end))),
    )
    return Plan(crash_at, crash_back, shutdown_at, shutdown_back, nodes)


@dataclass
class Sessions:
    """One row per client session. `off` is -1 when no offline row was written (still open)."""

    visit: np.ndarray
    node: np.ndarray
    client: np.ndarray  # S32 client ids
    start: np.ndarray
    sub_at: np.ndarray  # -1 when no subscribe row
    off: np.ndarray
    reason: np.ndarray
    detected: np.ndarray

    def take(self, idx: np.ndarray) -> Sessions:
        return Sessions(*(getattr(self, f)[idx] for f in _FIELDS))


_FIELDS = ("visit", "node", "client", "start", "sub_at", "off", "reason", "detected")


def _concat(parts: list[Sessions]) -> Sessions:
    return Sessions(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


def client_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Faye-style client ids: 32 random base-36 characters."""
    alphabet = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    return alphabet[rng.integers(0, 36, size=(n, 32))].view("S32").ravel()


def _final_reasons(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.random(n)
    return np.where(u < 0.35, DISCONNECT, np.where(u < 0.8, TRANSPORT_CLOSED, TIMEOUT_REASON))


def detected_for(rng: np.random.Generator, reason: np.ndarray, off: np.ndarray) -> np.ndarray:
    """When the server decides a session ended, by reason (docs/presence.md)."""
    sweep = (rng.random(len(off)) * 10 * SECOND).astype(np.int64)
    return np.where(
        reason == TRANSPORT_CLOSED,
        off + GRACE,
        np.where(reason == TIMEOUT_REASON, off + 2 * TIMEOUT + sweep, off),
    )


def _sessions(
    rng: np.random.Generator,
    visit: np.ndarray,
    start: np.ndarray,
    off: np.ndarray,
    reason: np.ndarray,
) -> Sessions:
    n = len(visit)
    return Sessions(
        visit=visit,
        node=rng.integers(0, len(catalog.NODES), n),
        client=client_ids(rng, n),
        start=start,
        sub_at=start + (rng.uniform(0.02, 0.4, n) * SECOND).astype(np.int64),
        off=off,
        reason=reason,
        detected=detected_for(rng, reason, off),
    )


def main_tabs(rng: np.random.Generator, traffic: Traffic, visits: np.ndarray) -> Sessions:
    """The tab each visit runs in, split by reloads into consecutive client sessions."""
    v = traffic.visits
    ps = v.start[visits] + (rng.uniform(0.3, 2.5, len(visits)) * SECOND).astype(np.int64)
    dwell = np.clip(rng.lognormal(np.log(240), 1.4, len(visits)), 1, 4 * 3600) * SECOND
    pe = np.maximum(v.last_activity[visits] + dwell.astype(np.int64), ps + SECOND)
    reloads = np.minimum(rng.poisson(0.5, len(visits)), 3)
    cut_owner = np.repeat(np.arange(len(visits)), reloads)
    frac = rng.random(len(cut_owner))
    frac = frac[np.lexsort((frac, cut_owner))]
    cut = ps[cut_owner] + (frac * (pe - ps)[cut_owner]).astype(np.int64)
    slow = rng.random(len(cut)) < 0.12
    gap = np.where(slow, rng.uniform(16, 90, len(cut)), rng.uniform(0.3, 12, len(cut))) * SECOND
    resumed = cut + gap.astype(np.int64)
    segs = reloads + 1
    owner = np.repeat(np.arange(len(visits)), segs)
    idx = position_in_group(segs)
    cut_base = np.concatenate(([0], np.cumsum(reloads)[:-1]))[owner]
    prev_cut = cut_base + idx - 1
    start = np.where(idx == 0, ps[owner], resumed[np.maximum(prev_cut, 0)] if len(cut) else 0)
    is_last = idx == reloads[owner]
    this_cut = np.minimum(cut_base + idx, max(len(cut) - 1, 0))
    stop = np.where(is_last, pe[owner], cut[this_cut] if len(cut) else 0)
    reason = np.where(is_last, _final_reasons(rng, len(owner)), TRANSPORT_CLOSED)
    keep = start < stop
    owner, start, stop, reason = owner[keep], start[keep], stop[keep], reason[keep]
    return _sessions(rng, visits[owner], start, stop, reason)


def second_tabs(rng: np.random.Generator, main: Sessions) -> Sessions:
    """A second tab for some visits, opened while the first is open."""
    pick = rng.random(len(main.visit)) < 0.08
    base = main.take(np.flatnonzero(pick))
    span = np.maximum(base.off - base.start, 1)
    start = base.start + (rng.random(len(span)) * span).astype(np.int64)
    stop = start + (np.clip(rng.lognormal(np.log(90), 1.0, len(span)), 2, 7200) * SECOND).astype(
        np.int64
    )
    return _sessions(rng, base.visit, start, stop, _final_reasons(rng, len(span)))


def _split(
    rng: np.random.Generator, s: Sessions, alive: np.ndarray, at: int, delays: tuple[float, float]
) -> Sessions:
    """Sessions that reconnect to the steady node after their node went away at `at`."""
    idx = np.flatnonzero(alive)
    rest = s.take(idx)
    rest.start = at + (rng.uniform(*delays, len(idx)) * SECOND).astype(np.int64)
    rest.sub_at = rest.start + (rng.uniform(0.02, 0.4, len(idx)) * SECOND).astype(np.int64)
    rest.node = np.full(len(idx), STEADY)
    rest.client = client_ids(rng, len(idx))
    return rest.take(np.flatnonzero(rest.start < rest.off))


def apply_outages(rng: np.random.Generator, s: Sessions, p: Plan) -> Sessions:
    """Cut sessions at the clean restart (`server_shutdown`) and the crash (`node_lost`)."""
    down = (s.node == RESTARTING) & (s.start >= p.shutdown_at) & (s.start < p.shutdown_back)
    down |= (s.node == CRASHING) & (s.start >= p.crash_at) & (s.start < p.crash_back)
    s.node = np.where(down, STEADY, s.node)

    hit = (s.node == RESTARTING) & (s.start < p.shutdown_at) & (s.detected > p.shutdown_at)
    alive = hit & (s.off > p.shutdown_at)
    moved = _split(rng, s, alive, p.shutdown_at, (0.5, 20.0))
    s.off = np.where(alive, p.shutdown_at, s.off)
    s.reason = np.where(alive, SERVER_SHUTDOWN, s.reason)
    s.detected = np.where(hit, p.shutdown_at, s.detected)

    hit = (s.node == CRASHING) & (s.start < p.crash_at) & (s.detected > p.crash_at)
    alive = hit & (s.off > p.crash_at)
    lost = _split(rng, s, alive, p.crash_at, (1.0, 30.0))
    beat = p.nodes[CRASHING].last_beat(p.crash_at)
    recent = p.crash_at - (rng.random(len(s.start)) * 20 * SECOND).astype(np.int64)
    activity = np.where(alive, np.minimum(p.crash_at, np.maximum(s.sub_at, recent)), s.off)
    s.off = np.where(hit, np.maximum(beat, activity), s.off)
    s.reason = np.where(hit, NODE_LOST, s.reason)
    written = p.crash_back + (rng.uniform(0.1, 1.0, len(s.start)) * SECOND).astype(np.int64)
    s.detected = np.where(hit, written, s.detected)
    return _concat([s, moved, lost])


def sessions(seed: int, day_index: int, traffic: Traffic, p: Plan, end: int) -> Sessions:
    """Every client session of a cohort's human visits, as written to the log by `end`."""
    rng = np.random.default_rng([seed, day_index, 2])
    v = traffic.visits
    human = traffic.visitors.kind[v.visitor] == HUMAN
    with_js = human & (rng.random(len(v.start)) < 0.97)
    visits = np.flatnonzero(with_js)
    main = main_tabs(rng, traffic, visits)
    both = _concat([main, second_tabs(rng, main)])
    s = apply_outages(rng, both, p)
    s = s.take(np.flatnonzero(s.start < end))
    open_ = s.detected >= end
    s.off = np.where(open_, -1, s.off)
    s.detected = np.where(open_, -1, s.detected)
    s.sub_at = np.where((s.sub_at < end) & ((s.off < 0) | (s.sub_at <= s.off)), s.sub_at, -1)
    return s.take(np.lexsort((s.start, s.visit)))


def anonymous_visits(seed: int, day_index: int, n_visits: int) -> np.ndarray:
    """Visits whose client sessions carry no visit or visitor token (per-client views only)."""
    rng = np.random.default_rng([seed, day_index, 3])
    return rng.random(n_visits) < 0.01
