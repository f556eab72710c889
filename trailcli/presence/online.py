"""`trail online`: who was online at an instant or during a range, and how many over time.

Sessions come from the latest snapshot before the request plus the rows after it, or,
where no fresh snapshot fits (or `--grace`/`--channel` need the whole history), from a scan of
every partition up to the request. The person rules are those of `presence.rules`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli.errors import NoDataError, UsageError
from trailcli.presence import snapshots
from trailcli.presence.intervals import Session, settle
from trailcli.presence.rules import DEFAULT_GRACE, channel_matches, merge_stretches, online_seconds
from trailcli.sql import load as sql_text
from trailcli.store import coverage
from trailcli.store.views import Lake

UNITS = ("person", "visit", "client")
VISIT_FIELDS = ("browser", "os", "device_type", "country", "referring_domain")
AT_COLUMNS = [
    "user_id", "visitor_token", "visit_token", "online_since", "clients", "channels", "last_page",
    *VISIT_FIELDS,
]  # fmt: skip
RANGE_COLUMNS = [
    "user_id", "visitor_token", "visit_token", "first_seen", "last_seen", "online_seconds",
    "clients", *VISIT_FIELDS,
]  # fmt: skip
CLIENT_COLUMNS = ["node_id", "client_id"]
TIMELINE_COLUMNS = [
    "bucket_start", "max_online", "min_online", "avg_online", "peak_online", "peak_at",
]  # fmt: skip
Stretch = tuple[datetime, datetime]
VISIT_MARGIN = timedelta(days=1)  # how far from its sessions' start a visit is looked for first


@dataclass(frozen=True)
class Options:
    """What a request counts: the unit of a row, a channel pattern, the grace, users only."""

    by: str = "person"
    channel: str | None = None
    grace: timedelta = DEFAULT_GRACE
    users_only: bool = False
    use_snapshots: bool = True

    def __post_init__(self) -> None:
        if self.by not in UNITS:
            raise UsageError(f"Unknown unit --by {self.by!r}.", f"use one of {', '.join(UNITS)}")
        if self.grace < timedelta(0):
            raise UsageError("--grace must not be negative.", "pass a duration such as 15s")
        if self.channel is not None and not self.channel.startswith("/"):
            raise UsageError(
                f"Invalid channel pattern {self.channel!r}.",
                "a Bayeux channel starts with '/', e.g. /chat/* or /chat/**",
            )

    @property
    def snapshot_fits(self) -> bool:
        return self.use_snapshots and self.grace == DEFAULT_GRACE and self.channel is None


@dataclass
class Window:
    """The sessions that matter for a request, with the data they came from."""

    lake: Lake
    sessions: list[Session]
    carry: snapshots.Carry | None

    @property
    def used_snapshot(self) -> bool:
        return self.carry is not None


def _require_presence(lake: Lake, hi: datetime) -> None:
    """NoDataError unless the presence log has a partition at or before `hi`."""
    dates = lake.dates("presence") if lake.exists["presence"] else None
    coverage.require(lake.data_dir, {"presence": dates}, None, hi, inclusive=True)


def _collect(
    lake: Lake,
    lo: datetime,
    hi: datetime,
    now: datetime,
    carry: snapshots.Carry | None,
    grace: timedelta,
    with_channels: bool,
) -> list[Session] | None:
    """Sessions that can matter for `[lo, hi]` (from the carry's instant, or from the start),
    ends decided. None when the carry turns out not to fit: a session it took for gone shows
    signs of life."""
    gathered = snapshots.gather(lake, hi, lo - grace, carry, with_channels)  # folds into `carry`
    if gathered is None:
        return None
    sessions, beats = gathered
    pending = [s for s in sessions if s.end is None]
    gone = carry.gone if carry else set()
    seen = snapshots.seen_after(lake, pending, hi, gone)
    if gone & seen.keys():
        return None
    for (node, client), at in seen.items():
        if client == "":
            beats[node] = max(at, beats.get(node, at))
    for s in pending:
        s.last_seen = max(s.last_seen, seen.get(s.key, s.last_seen))
    return settle(sessions, beats, now)


def load_window(data_dir: Path, lo: datetime, hi: datetime, now: datetime, opts: Options) -> Window:
    """Every session that can touch `[lo, hi]` (or merge into it), users resolved (identity rule)."""
    lake = Lake(data_dir)
    _require_presence(lake, hi)
    carry = snapshots.load_latest(lake, lo) if opts.snapshot_fits else None
    channels = opts.channel is not None or lo == hi  # an instant lists each person's channels
    hi = hi + opts.grace  # a session starting within the grace after `hi` closes a gap before it
    sessions = _collect(lake, lo, hi, now, carry, opts.grace, channels)
    resolved = snapshots.resolve_users(lake, sessions or [])
    if sessions is None or any(
        resolved[k] != u for k, u in (carry.resolved if carry else {}).items() if k in resolved
    ):
        carry = None  # late rows or a late identity changed what the carry assumed: full log
        sessions = _collect(lake, lo, hi, now, None, opts.grace, channels) or []
        resolved = snapshots.resolve_users(lake, sessions)
    for s in sessions:
        s.user_id = resolved[s.key]
        if carry is None:
            s.person_start = s.visit_start = None
    return Window(lake, sessions, carry)


def unit_of(s: Session, by: str) -> str | None:
    """The key of the row a session counts towards."""
    if by == "person":
        return s.person
    if by == "visit":
        return s.visit_token or None
    return f"{s.node_id}/{s.client_id}"


def spans_of(s: Session, opts: Options) -> list[Stretch]:
    """The half-open spans a session counts as online (its matching memberships with --channel)."""
    if opts.channel is not None:
        return [
            (m.start, m.end or s.ends())
            for m in s.channels
            if channel_matches(opts.channel, m.channel)
        ]
    carried = {"person": s.person_start, "visit": s.visit_start}.get(opts.by)
    return [(min(s.start, carried or s.start), s.ends())]


@dataclass
class Unit:
    key: str
    sessions: list[Session]
    stretches: list[Stretch]


def units(sessions: Iterable[Session], opts: Options) -> list[Unit]:
    """Sessions grouped into the requested unit, each with its merged stretches."""
    grouped: dict[str, list[Session]] = {}
    for s in sessions:
        key = unit_of(s, opts.by)
        if key is None or (opts.users_only and not s.user_id):
            continue
        grouped.setdefault(key, []).append(s)
    found = []
    for key, members in grouped.items():
        spans = [span for s in members for span in spans_of(s, opts)]
        stretches = merge_stretches(spans, opts.grace)
        if stretches:
            found.append(Unit(key, members, stretches))
    return found


def _representative(members: list[Session]) -> Session:
    return max(members, key=lambda s: (s.start, s.key))


def _identity(s: Session, opts: Options) -> dict[str, Any]:
    row: dict[str, Any] = (
        {"node_id": s.node_id, "client_id": s.client_id} if opts.by == "client" else {}
    )
    row.update(user_id=s.user_id, visitor_token=s.visitor_token, visit_token=s.visit_token)
    return row


def _visit_fields(lake: Lake, sessions: Iterable[Session]) -> dict[str, dict[str, Any]]:
    """The fields of the sessions' visits, each from the visit's earliest row (`started_at`).

    Visits are partitioned by the day they were recorded, normally moments before or after
    their sessions start: the days from one before the earliest start to one after the latest
    are read, and the other days only for visits not found there.
    """
    starts: dict[str, datetime] = {}
    for s in sessions:
        if s.visit_token:
            starts[s.visit_token] = min(s.start, starts.get(s.visit_token, s.start))
    if not starts or not lake.exists["visits"]:
        return {}
    first = snapshots.day_text(min(starts.values()) - VISIT_MARGIN)
    last = snapshots.day_text(max(starts.values()) + VISIT_MARGIN)
    near = [d for d in lake.dates("visits") if first <= d <= last]
    found = _read_visit_fields(lake, set(starts), near)
    missing = set(starts) - found.keys()
    if missing:
        far = [d for d in lake.dates("visits") if not first <= d <= last]
        found.update(_read_visit_fields(lake, missing, far))
    return found


def _read_visit_fields(lake: Lake, tokens: set[str], dates: list[str]) -> dict[str, dict[str, Any]]:
    """The fields of the visits `tokens` from the visits partitions `dates` only."""
    if not tokens or not dates:
        return {}
    lake.bind("visits", dates)
    rows = lake.fetch("online_visit_fields", {"tokens": sorted(tokens)})
    return {r["visit_token"]: r for r in rows}


def _is_open(s: Session, at: datetime, opts: Options) -> bool:
    """Whether the session itself (not a merged gap) counts at `at`."""
    if opts.channel is not None:
        return any(lo <= at < hi for lo, hi in spans_of(s, opts))
    return s.start <= at < s.ends()


def online_at(
    data_dir: Path, at: datetime, now: datetime, opts: Options | None = None
) -> list[dict[str, Any]]:
    """One row per unit online at `at`: identity, stretch start, open sessions, channels, page, visit."""
    opts = opts or Options()
    window = load_window(data_dir, at, at, now, opts)
    picked = []
    for unit in units(window.sessions, opts):
        stretch = next(((lo, hi) for lo, hi in unit.stretches if lo <= at < hi), None)
        if stretch is None:
            continue
        in_stretch = [s for s in unit.sessions if s.start <= at and s.ends() > stretch[0]]
        open_now = [s for s in in_stretch if _is_open(s, at, opts)]
        picked.append((unit, stretch, in_stretch or unit.sessions, open_now))
    members_all = [s for _, _, members, _ in picked for s in members]
    tokens = {s.visit_token for s in members_all if s.visit_token}
    since = min((s.start for s in members_all if s.visit_token), default=at)
    pages = _pages_at(window, tokens, at, since)
    reps = [_representative(open_now or members) for _, _, members, open_now in picked]
    fields = _visit_fields(window.lake, reps)
    rows = []
    for (_unit, stretch, members, open_now), rep in zip(picked, reps, strict=True):
        page = max(
            (pages[s.visit_token] for s in members if s.visit_token in pages),
            key=lambda p: p[1],
            default=None,
        )
        channels = sorted({c for s in open_now for c in s.open_channels(at)})
        row = _identity(rep, opts)
        row.update(
            online_since=stretch[0], clients=len(open_now), channels=channels,
            last_page=page[0] if page else None,
        )  # fmt: skip
        row.update({f: fields.get(rep.visit_token or "", {}).get(f) for f in VISIT_FIELDS})
        rows.append(row)
    rows.sort(
        key=lambda r: (
            r["online_since"],
            r["user_id"] or "",
            r["visitor_token"] or "",
            r.get("client_id") or "",
        )
    )
    return rows


def _pages_at(
    window: Window, tokens: set[str], at: datetime, since: datetime
) -> dict[str, snapshots.Page]:
    """The latest `$view` page per visit at or before `at`.

    Without a snapshot, the days from one before the visits' earliest session start (`since`)
    to `at` are read first, and the earlier days only for visits with no page there: a page on
    an earlier day is older than any page found in the later days.
    """
    if window.carry is None:
        dates = [d for d in window.lake.dates("events") if d <= snapshots.day_text(at)]
        first = snapshots.day_text(since - VISIT_MARGIN)
        found = snapshots.latest_pages(window.lake, tokens, [d for d in dates if d >= first], at)
        missing, earlier = tokens - found.keys(), [d for d in dates if d < first]
        if missing and earlier:
            found.update(snapshots.latest_pages(window.lake, missing, earlier, at))
        return found
    carried_day = snapshots.day_text(window.carry.instant)
    dates = [d for d in window.lake.dates("events") if carried_day <= d <= snapshots.day_text(at)]
    carried = {t: p for t, p in window.carry.pages.items() if t in tokens}
    return snapshots.merge_pages(carried, snapshots.latest_pages(window.lake, tokens, dates, at))


def _check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise UsageError(
            f"Empty range: --to {end.isoformat()} is not after --from {start.isoformat()}.",
            "pass --from earlier than --to",
        )


def online_between(
    data_dir: Path, start: datetime, end: datetime, now: datetime, opts: Options | None = None
) -> list[dict[str, Any]]:
    """One row per unit online at any moment of `[start, end)`, with its time online in the range."""
    opts = opts or Options()
    _check_range(start, end)
    window = load_window(data_dir, start, end, now, opts)
    picked = []
    for unit in units(window.sessions, opts):
        inside = [
            (max(lo, start), min(hi, end)) for lo, hi in unit.stretches if lo < end and hi > start
        ]
        if not inside:
            continue
        members = [
            s for s in unit.sessions if any(lo < end and hi > start for lo, hi in spans_of(s, opts))
        ]
        picked.append((unit, inside, members or unit.sessions))
    reps = [_representative(members) for _, _, members in picked]
    fields = _visit_fields(window.lake, reps)
    rows = []
    for (unit, inside, members), rep in zip(picked, reps, strict=True):
        row = _identity(rep, opts)
        row.update(
            first_seen=inside[0][0], last_seen=inside[-1][1],
            online_seconds=online_seconds(unit.stretches, start, end), clients=len(members),
        )  # fmt: skip
        row.update({f: fields.get(rep.visit_token or "", {}).get(f) for f in VISIT_FIELDS})
        rows.append(row)
    rows.sort(
        key=lambda r: (
            r["first_seen"],
            r["user_id"] or "",
            r["visitor_token"] or "",
            r.get("client_id") or "",
        )
    )
    return rows


def sweep(
    stretches: Iterable[Stretch], start: datetime, end: datetime
) -> list[tuple[datetime, int]]:
    """The count online as a step function over `[start, end)`: `(instant, count from then on)`.

    Ends apply before starts at equal instants, and all changes at one instant apply together,
    so a handover at one instant never shows a spurious peak or dip.
    """
    deltas: dict[datetime, int] = {start: 0}
    for lo, hi in stretches:
        lo, hi = max(lo, start), min(hi, end)
        if lo < hi:
            deltas[lo] = deltas.get(lo, 0) + 1
            if hi < end:
                deltas[hi] = deltas.get(hi, 0) - 1
    steps, count = [], 0
    for instant in sorted(deltas):
        count += deltas[instant]
        steps.append((instant, count))
    return steps


def buckets(
    points: list[tuple[int, int]], start: datetime, end: datetime, every: timedelta
) -> list[dict[str, Any]]:
    """Per bucket of `every` from `start`: max, min and time-weighted average of the step function.

    `points` are `(microseconds since start, count from then on)` in time order: a day can hold
    hundreds of thousands of steps, and whole numbers are cheap to compare and subtract.
    """
    us = timedelta(microseconds=1)
    stop, width = (end - start) // us, every // us
    rows = []
    i, current, bucket = 0, 0, 0
    while bucket < stop:
        top = min(bucket + width, stop)
        while i < len(points) and points[i][0] <= bucket:
            current = points[i][1]
            i += 1
        high = low = current
        area, at = 0, bucket
        while i < len(points) and points[i][0] < top:
            instant, count = points[i]
            area += current * (instant - at)
            at, current = instant, count
            if current > high:
                high = current
            elif current < low:
                low = current
            i += 1
        area += current * (top - at)
        rows.append(
            {
                "bucket_start": start + bucket * us, "max_online": high, "min_online": low,
                "avg_online": area / (top - bucket),
            }
        )  # fmt: skip
        bucket = top
    return rows


def timeline(
    data_dir: Path,
    start: datetime,
    end: datetime,
    every: timedelta,
    now: datetime,
    opts: Options | None = None,
) -> list[dict[str, Any]]:
    """Counts online per bucket, plus the exact peak of the whole range (earliest instant reached)."""
    opts = opts or Options()
    _check_range(start, end)
    if every <= timedelta(0):
        raise UsageError("--every must be a positive duration.", "pass e.g. 5m or 1h")
    if (end - start) / every > 100_000:
        raise UsageError(
            "Too many buckets (over 100,000).", "pass a larger --every or a shorter range"
        )
    kept = _kept_days(Path(data_dir), start, end, every, opts)
    if kept:
        cut = kept[-1]["bucket_start"] + every
        rest = timeline(data_dir, cut, end, every, now, opts) if cut < end else []
        return _with_peak(kept + rest)
    start = _after_purge(Path(data_dir), start, end, every)
    points = _person_points(Path(data_dir), start, end, now, opts) if opts.by == "person" else None
    if points is None:
        window = load_window(data_dir, start, end, now, opts)
        steps = sweep((st for u in units(window.sessions, opts) for st in u.stretches), start, end)
        points = [((instant - start) // timedelta(microseconds=1), n) for instant, n in steps]
    peak = max(count for _, count in points)
    peak_us = next(at for at, count in points if count == peak)  # points are in time order
    peak_at = start + timedelta(microseconds=peak_us)
    rows = buckets(points, start, end, every)
    for row in rows:
        row.update(peak_online=peak, peak_at=peak_at)
    return rows


def _kept_days(
    data_dir: Path, start: datetime, end: datetime, every: timedelta, opts: Options
) -> list[dict[str, Any]]:
    """Buckets of whole UTC days before the first day a purge kept of presence, from the figures
    kept for them (the `daily` table), when the request counts as they were counted: persons,
    the default grace, no channel, `every` one day from a midnight. [] otherwise."""
    from trailcli.store.views import daily_rows

    kept_from = coverage.purged_before(data_dir).get("presence")
    plain = opts.by == "person" and opts.channel is None and not opts.users_only
    if kept_from is None or every != timedelta(days=1) or not plain or opts.grace != DEFAULT_GRACE:
        return []
    if start != snapshots.midnight_of(start) or snapshots.day_text(start) >= kept_from:
        return []
    rows = []
    at = start
    by_date = {r["date"]: r for r in daily_rows(data_dir, snapshots.day_text(start), kept_from)}
    while at + every <= end and snapshots.day_text(at) < kept_from:
        row = by_date.get(snapshots.day_text(at))
        if row is None or row["max_online"] is None:
            break  # a day without kept figures: the log answers from here on (or says no data)
        rows.append(
            {
                "bucket_start": at, "max_online": row["max_online"],
                "min_online": row["min_online"], "avg_online": row["avg_online"],
                "peak_online": row["max_online"], "peak_at": row["peak_at"],
            }
        )  # fmt: skip
        at += every
    return rows


def _after_purge(data_dir: Path, start: datetime, end: datetime, every: timedelta) -> datetime:
    """The first bucket start on or after the first day a purge kept of presence (`start` when
    none was purged): the buckets of purged days are not answered, rather than counted empty.
    NoDataError when no bucket is left."""
    kept_from = coverage.purged_before(data_dir).get("presence")
    if kept_from is None:
        return start
    first = datetime.fromisoformat(kept_from).replace(tzinfo=UTC)
    if start >= first:
        return start
    moved = start + -((start - first) // every) * every
    if moved >= end:
        raise NoDataError(
            f"No presence rows between {start.isoformat()} and {end.isoformat()}: the log now "
            f"starts on {kept_from} (UTC); the days before were purged.",
            "ask about a time on or after that date",
        )
    return moved


def _with_peak(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every bucket the peak of the whole range (the earliest day that reached it)."""
    if not rows:
        return rows
    top = max(rows, key=lambda r: (r["peak_online"], -r["bucket_start"].timestamp()))
    for row in rows:
        row.update(peak_online=top["peak_online"], peak_at=top["peak_at"])
    return rows


def _person_points(
    data_dir: Path, start: datetime, end: datetime, now: datetime, opts: Options
) -> list[tuple[int, int]] | None:
    """The persons-online step function over `[start, end)`, folded and swept in DuckDB, as
    `(microseconds since start, count)`.

    Same rules as `units` + `sweep`, without a Python object per session. None where it does
    not apply (a channel filter, or a snapshot that took a session for gone): the caller then
    takes the general path.
    """
    import pyarrow as pa

    if opts.channel is not None:
        return None
    lake = Lake(data_dir)
    _require_presence(lake, end)
    carry = snapshots.load_latest(lake, start) if opts.snapshot_fits else None
    if carry is not None and carry.gone:
        return None
    if carry is not None:
        resolved = snapshots.resolve_users(lake, carry.sessions)
        if any(resolved[k] != u for k, u in carry.resolved.items() if k in resolved):
            carry = None  # a late identity changed a carried person: fold from the start
    upto = end + opts.grace
    lake.con.register("carried", _carried_table(carry))
    since = snapshots.fold_after(lake, carry, upto)
    lake.con.execute(
        f"CREATE OR REPLACE TEMP TABLE timeline_sessions AS {sql_text('online_timeline_sessions')}"
    )
    pending = [
        Session(r["node_id"], r["client_id"], r["started"], r["last_seen"])
        for r in lake.fetch_sql(
            "SELECT node_id, client_id, started, last_seen FROM timeline_sessions WHERE ended IS NULL"
        )
    ]
    beats = dict(carry.beats) if carry else {}
    for row in lake.fetch("online_node_beats", {"since": since, "upto": upto}):
        beats[row["node_id"]] = max(row["beat"], beats.get(row["node_id"], row["beat"]))
    seen = snapshots.seen_after(lake, pending, upto)
    for (node, client), at in seen.items():
        if client == "":
            beats[node] = max(at, beats.get(node, at))
    for p in pending:
        p.last_seen = max(p.last_seen, seen.get(p.key, p.last_seen))
    settle(pending, beats, now)
    ts = pa.timestamp("us", tz="UTC")
    settled = pa.table(
        {
            "node_id": pa.array([p.node_id for p in pending], pa.string()),
            "client_id": pa.array([p.client_id for p in pending], pa.string()),
            "end_at": pa.array([p.end for p in pending], ts),
        }
    )
    lake.con.register("settled", settled)
    params = {
        "from": start,
        "to": end,
        "grace_us": int(opts.grace / timedelta(microseconds=1)),
        "users_only": opts.users_only,
    }
    points = lake.fetch_tuples("online_timeline_steps", params)
    if not points or points[0][0] != 0:
        points.insert(0, (0, 0))
    return points


def _carried_table(carry: snapshots.Carry | None) -> Any:
    """The snapshot's sessions as a relation: key, person, stretch start, end if decided."""
    import pyarrow as pa

    sessions = carry.sessions if carry else []
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "node_id": pa.array([s.node_id for s in sessions], pa.string()),
            "client_id": pa.array([s.client_id for s in sessions], pa.string()),
            "person": pa.array([snapshots.carry_person(carry, s) for s in sessions], pa.string()),
            "is_user": pa.array(
                [bool(carry and carry.resolved.get(s.key)) for s in sessions], pa.bool_()
            ),
            "started": pa.array([min(s.start, s.person_start or s.start) for s in sessions], ts),
            "ended": pa.array([s.end for s in sessions], ts),
            "last_seen": pa.array([s.last_seen for s in sessions], ts),
        }
    )
