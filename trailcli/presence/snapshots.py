"""Presence snapshots: the sessions open at each UTC midnight, and every three hours within closed
days, so `trail online` reads at most a few hours of rows.

A snapshot at instant M (a midnight, or a multiple of `SNAPSHOT_EVERY` after one) holds every
session started before M that was open at M or ended less than the default grace before it, with
what the query needs (stretch starts at the default grace, resolved user, open channels, last
page), plus each node's last heartbeat before M. Its fingerprint is the number of distinct rows
of presence, events and identities per partition date up to M's, beside the number of stored
rows: a reader takes the snapshot as fresh when each partition still holds either, so late rows
make it stale and compaction does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import CorruptDataError
from trailcli.presence.intervals import FOREVER, Membership, Session, fold, settle
from trailcli.presence.rules import DEFAULT_GRACE, merge_stretches
from trailcli.store import erase, layout
from trailcli.store.layout import Days
from trailcli.store.views import EPOCH, Lake

FINGERPRINT_KINDS = ("presence", "events", "identities")
FORMAT_VERSION = 2
SNAPSHOT_EVERY = timedelta(hours=3)  # within a closed day; the day's rows after M are read
JUST_BEFORE = timedelta(microseconds=1)
NEAR_FUTURE = timedelta(minutes=2)  # live nodes heartbeat every 10 s: they show up in here
Page = tuple[str, datetime]


@dataclass
class Carry:
    """The state at one instant: sessions carried over, node heartbeats, last page per visit."""

    instant: datetime
    sessions: list[Session]
    beats: dict[str, datetime] = field(default_factory=dict)
    pages: dict[str, Page] = field(default_factory=dict)
    resolved: dict[tuple[str, str], str | None] = field(default_factory=dict)
    gone: set[tuple[str, str]] = field(default_factory=set)  # taken as ended: no life after M


def midnight_of(at: datetime) -> datetime:
    """The UTC midnight at or before `at`."""
    day = at.astimezone(UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def instant_of(at: datetime) -> datetime:
    """The latest snapshot instant at or before `at` (whether one was built there or not)."""
    midnight = midnight_of(at)
    return midnight + (at - midnight) // SNAPSHOT_EVERY * SNAPSHOT_EVERY


def instants(first: datetime, last: datetime, today: date) -> Iterator[datetime]:
    """The snapshot instants of a log whose rows run from `first` to `last`: each UTC midnight
    after its first row, and every `SNAPSHOT_EVERY` between them on closed days, those before
    `today` (today's rows, still being written, would make such snapshots stale at once)."""
    instant = midnight_of(first)
    while True:
        instant = instant + SNAPSHOT_EVERY
        midnight = midnight_of(instant)
        if instant - midnight < SNAPSHOT_EVERY:
            instant = midnight  # a step that does not divide the day restarts at each midnight
        if instant > last:
            return
        if instant > first and (instant == midnight or instant.date() < today):
            yield instant


def day_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def _paths(data_dir: Path, instant: datetime) -> tuple[Path, Path]:
    root = layout.snapshot_dir(data_dir)
    stem = day_text(instant) if instant == midnight_of(instant) else f"{instant:%Y-%m-%dT%H%M%S}"
    return root / f"{stem}.parquet", root / f"{stem}.json"


def fingerprint(counts: dict[str, dict[str, int]], instant: datetime) -> dict[str, dict[str, int]]:
    """Rows per partition date up to the one holding the moment before `instant`, per kind the
    snapshot depends on (before a midnight: the earlier days only)."""
    day = day_text(instant - JUST_BEFORE)
    return {k: {d: n for d, n in sorted(counts[k].items()) if d <= day} for k in FINGERPRINT_KINDS}


def _read_meta(data_dir: Path, instant: datetime) -> dict[str, Any] | None:
    _, meta_path = _paths(data_dir, instant)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("version") == FORMAT_VERSION else None


def load(lake: Lake, instant: datetime) -> Carry | None:
    """The snapshot at `instant` when it exists and matches the current data, else None."""
    meta = _read_meta(lake.data_dir, instant)
    if meta is None or not _still_fits(meta, fingerprint(lake.counts, instant)):
        return None
    return _read(lake, instant, meta)


def load_latest(lake: Lake, at: datetime) -> Carry | None:
    """The latest fresh snapshot at or before `at` within its day: at the instant before it, else
    at its midnight (days still open when compacted have only that one)."""
    latest = instant_of(at)
    carry = load(lake, latest)
    if carry is None and latest != midnight_of(at):
        carry = load(lake, midnight_of(at))
    return carry


def _still_fits(meta: dict[str, Any], stored_now: dict[str, dict[str, int]]) -> bool:
    """Each partition before the instant holds as many rows as at build time, or as many as
    it had distinct rows then (compacted since)."""
    distinct, stored = meta.get("fingerprint", {}), meta.get("stored", {})
    for kind, now_counts in stored_now.items():
        if set(now_counts) != set(distinct.get(kind, {})):
            return False
        for day, count in now_counts.items():
            if count not in (distinct[kind][day], stored.get(kind, {}).get(day)):
                return False
    return True


def _read(lake: Lake, instant: datetime, meta: dict[str, Any]) -> Carry | None:
    """The snapshot's sessions, read through the lake's DuckDB connection (no pyarrow to load)."""
    import duckdb

    table_path, _ = _paths(lake.data_dir, instant)
    try:
        rows = lake.fetch_sql("SELECT * FROM read_parquet($path)", {"path": str(table_path)})
    except (OSError, duckdb.Error, CorruptDataError):
        return None
    carry = Carry(instant, [], {n: datetime.fromisoformat(b) for n, b in meta["beats"].items()})
    for row in rows:
        session = Session(
            row["node_id"],
            row["client_id"],
            row["start"],
            row["last_seen"],
            row["visit_token"],
            row["visitor_token"],
            row["user_id"],
            row["end"],
            _memberships(row["channels"]),
            row["person_start"],
            row["visit_start"],
        )
        carry.sessions.append(session)
        carry.resolved[session.key] = row["resolved_user_id"]
        if row["gone"]:
            carry.gone.add(session.key)
        if row["visit_token"] and row["last_page"] is not None:
            carry.pages[row["visit_token"]] = (row["last_page"], row["last_page_at"])
    return carry


def _memberships(text: str) -> list[Membership]:
    if text == "[]":  # most sessions: no JSON to parse
        return []
    return [Membership(c, datetime.fromisoformat(s)) for c, s in json.loads(text)]


def _write(
    data_dir: Path, carry: Carry, fp: dict[str, dict[str, int]], stored: dict[str, dict[str, int]]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("node_id", pa.string()),
            ("client_id", pa.string()),
            ("start", ts),
            ("last_seen", ts),
            ("end", ts),
            ("visit_token", pa.string()),
            ("visitor_token", pa.string()),
            ("user_id", pa.string()),
            ("resolved_user_id", pa.string()),
            ("person_start", ts),
            ("visit_start", ts),
            ("channels", pa.string()),
            ("last_page", pa.string()),
            ("last_page_at", ts),
            ("gone", pa.bool_()),
        ]
    )
    rows = []
    for s in carry.sessions:
        page = carry.pages.get(s.visit_token or "")
        open_channels = [(m.channel, m.start.isoformat()) for m in s.channels if m.end is None]
        rows.append(
            {
                "node_id": s.node_id,
                "client_id": s.client_id,
                "start": s.start,
                "last_seen": s.last_seen,
                "end": s.end,
                "visit_token": s.visit_token,
                "visitor_token": s.visitor_token,
                "user_id": s.user_id,
                "resolved_user_id": carry.resolved.get(s.key),
                "person_start": s.person_start,
                "visit_start": s.visit_start,
                "channels": json.dumps(open_channels),
                "last_page": page[0] if page else None,
                "last_page_at": page[1] if page else None,
                "gone": s.key in carry.gone,
            }
        )
    table_path, meta_path = _paths(data_dir, carry.instant)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = table_path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, compression="zstd")
    os.replace(tmp, table_path)
    meta = {
        "version": FORMAT_VERSION,
        "instant": carry.instant.isoformat(),
        "beats": {n: b.isoformat() for n, b in sorted(carry.beats.items())},
        "fingerprint": fp,
        "stored": stored,
    }
    tmp_meta = meta_path.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)


def resolve_users(lake: Lake, sessions: Iterable[Session]) -> dict[tuple[str, str], str | None]:
    """Each session's user: its visit's first identity binding, else the user id on its rows."""
    sessions = list(sessions)
    tokens = sorted({s.visit_token for s in sessions if s.visit_token})
    first: dict[str, str] = {}
    if tokens and lake.exists["identities"]:
        lake.bind("identities")
        first = {
            r["visit_token"]: r["user_id"]
            for r in lake.fetch("online_first_identity", {"tokens": tokens})
        }
    return {s.key: first.get(s.visit_token or "") or s.user_id or None for s in sessions}


def latest_pages(
    lake: Lake, tokens: Iterable[str], dates: Iterable[str] | None, upto: datetime
) -> dict[str, Page]:
    """Each visit's latest `$view` page at or before `upto`, from the partitions `dates` (None: all)."""
    wanted = sorted(set(tokens))
    if not wanted or not lake.exists["events"]:
        return {}
    lake.bind_pages(dates)
    rows = lake.fetch("online_last_pages", {"tokens": wanted, "upto": upto})
    return {r["visit_token"]: (r["last_page"], r["last_page_at"]) for r in rows}


def merge_pages(*sources: dict[str, Page]) -> dict[str, Page]:
    """The later page per visit across several sources."""
    merged: dict[str, Page] = {}
    for source in sources:
        for token, page in source.items():
            if token not in merged or page[1] >= merged[token][1]:
                merged[token] = page
    return merged


def stretch_starts(
    sessions: list[Session],
    unit: Callable[[Session], str | None],
    carried: Callable[[Session], datetime | None],
    until: datetime,
) -> dict[tuple[str, str], datetime]:
    """Per session, the start of its unit's merged stretch (default grace) that contains it."""
    by_unit: dict[str, list[Session]] = {}
    for s in sessions:
        name = unit(s)
        if name is not None:
            by_unit.setdefault(name, []).append(s)
    starts: dict[tuple[str, str], datetime] = {}
    for members in by_unit.values():
        spans = {
            s.key: (min(s.start, carried(s) or s.start), min(s.end or until, until))
            for s in members
        }
        merged = merge_stretches(spans.values(), DEFAULT_GRACE)
        for key, (lo, _hi) in spans.items():
            for start, end in merged:
                if start <= lo < end:
                    starts[key] = start
                    break
    return starts


def seen_after(
    lake: Lake,
    pending: list[Session],
    after: datetime,
    gone: Iterable[tuple[str, str]] = (),
) -> dict[tuple[str, str], datetime]:
    """Proof of life after `after` for the nodes and sessions of `pending`.

    Keys are `(node_id, client_id)` for a session's own rows and `(node_id, "")` for the node's
    heartbeats. The minutes right after `after` answer for live nodes; the rest is searched day
    by day until every node is accounted for. Sessions in `gone` are looked for to the end.
    """
    gone = set(gone)
    wanted = {s.key for s in pending} | {(s.node_id, "") for s in pending} | gone
    nodes = {s.node_id for s in pending}
    found: dict[tuple[str, str], datetime] = {}

    def settled() -> bool:
        return not gone and nodes <= {n for n, c in found if c == ""}

    def look(days: list[str], until: datetime) -> None:
        lake.bind("presence", days)
        for row in lake.fetch("online_seen_after", {"after": after, "until": until}):
            key = (row["node_id"], row["client_id"])
            if key in wanted:
                found[key] = max(row["seen"], found.get(key, row["seen"]))

    if not wanted:
        return found
    soon = after + NEAR_FUTURE
    look(sorted({day_text(after), day_text(soon)}), soon)
    for day in [d for d in lake.dates("presence") if d >= day_text(after)]:
        if settled():
            break
        look([day], FOREVER)
    return found


def gather(
    lake: Lake,
    upto: datetime,
    near_from: datetime,
    carry: Carry | None,
    with_channels: bool = True,
) -> tuple[list[Session], dict[str, datetime]] | None:
    """Sessions up to `upto` (ends not yet decided) of every person with a session reaching
    `near_from` or later, starting from `carry` (or from the start of the log), and each node's
    last heartbeat up to `upto`. Channel memberships only `with_channels`.

    The presence rows are folded per client in SQL (`online_sessions`), so Python only sees the
    sessions that can matter. None when the carry does not fit: a row names a session it took
    for gone.
    """
    since = fold_after(lake, carry, upto)
    carried = carry.sessions if carry else []
    persons = sorted({p for s in carried if (p := carry_person(carry, s)) is not None})
    keys = sorted(f"{s.node_id}/{s.client_id}" for s in carried if s.end is None)
    params = {
        "since": since, "upto": upto, "near_from": near_from, "carried": persons,
        "carried_clients": keys,
    }  # fmt: skip
    rows = lake.fetch("online_sessions", {**params, "with_channels": with_channels})
    gone = carry.gone if carry else set()
    if any((r["node_id"], r["client_id"]) in gone for r in rows):
        return None
    sessions = {s.key: s for s in carried}
    for row in rows:
        fold(sessions, row)
    beats = dict(carry.beats) if carry else {}
    for row in lake.fetch("online_node_beats", {"since": since, "upto": upto}):
        beats[row["node_id"]] = max(row["beat"], beats.get(row["node_id"], row["beat"]))
    return list(sessions.values()), beats


def fold_after(lake: Lake, carry: Carry | None, upto: datetime) -> datetime:
    """Fold the presence rows from the carry's instant (or the start of the log) to `upto` into
    one session per client, the temp table `client_sessions` that `online_sessions` and
    `online_timeline_sessions` read; presence and identities stay bound. Returns that instant."""
    since = carry.instant if carry else EPOCH  # no carry: from the start of the log
    first, last = day_text(since), day_text(upto)
    lake.bind("presence", Days(first, last))
    lake.bind("identities")
    lake.con.execute(
        f"CREATE OR REPLACE TEMP TABLE client_sessions AS {sql.load('online_client_sessions')}",
        {"since": since, "upto": upto},
    )
    return since


def carry_person(carry: Carry | None, s: Session) -> str | None:
    resolved = carry.resolved.get(s.key) if carry else None
    return resolved or s.user_id or s.visitor_token or None


def advance(lake: Lake, base: Carry | None, instant: datetime) -> Carry:
    """The state at `instant` from `base` (an earlier snapshot, or None: the start of the log)."""
    before = instant - JUST_BEFORE
    gathered = gather(lake, before, instant - DEFAULT_GRACE, base)
    if gathered is None:  # the base took a session for gone that shows life: start over
        gathered = gather(lake, before, instant - DEFAULT_GRACE, None)
    assert gathered is not None
    sessions, beats = gathered
    pending = [s for s in sessions if s.end is None]
    seen = seen_after(lake, pending, before)
    dead = [s for s in pending if s.key not in seen and (s.node_id, "") not in seen]
    settle(dead, beats, FOREVER)  # no sign of life from M on: ended at its last known moment
    resolved = resolve_users(lake, sessions)

    def person(s: Session) -> str | None:
        return resolved[s.key] or s.visitor_token or None

    person_starts = stretch_starts(sessions, person, lambda s: s.person_start, instant)
    visit_starts = stretch_starts(
        sessions, lambda s: s.visit_token, lambda s: s.visit_start, instant
    )
    horizon = instant - DEFAULT_GRACE
    kept = [s for s in sessions if s.end is None or s.end > horizon]
    for s in kept:
        s.person_start = person_starts.get(s.key)
        s.visit_start = visit_starts.get(s.key)
    tokens = {s.visit_token for s in kept if s.visit_token}
    base_pages = {t: p for t, p in (base.pages if base else {}).items() if t in tokens}
    event_dates = (
        None
        if base is None
        else [d for d in lake.dates("events") if day_text(base.instant) <= d <= day_text(before)]
    )
    pages = merge_pages(base_pages, latest_pages(lake, tokens, event_dates, before))
    gone = {s.key for s in dead} & {s.key for s in kept}
    return Carry(instant, kept, beats, pages, {s.key: resolved[s.key] for s in kept}, gone)


def dedup_counts(lake: Lake) -> dict[str, dict[str, int]]:
    """Distinct rows per partition date of each fingerprinted kind (clean partitions from metadata)."""
    counts: dict[str, dict[str, int]] = {}
    for kind in FINGERPRINT_KINDS:
        clean = lake.clean[kind]  # from the same file list as the counts
        kind_counts = {d: n for d, n in lake.counts[kind].items() if d in clean}
        dirty = [d for d in lake.dates(kind) if d not in clean]
        if dirty:
            lake.bind(kind, dirty)
            for row in lake.fetch(f"online_count_{kind}"):
                kind_counts[row["date"]] = int(row["records"])
        counts[kind] = kind_counts
    return counts


def build_snapshots(
    data_dir: Path, progress: Callable[[str], None] | None = None, today: date | None = None
) -> list[str]:
    """Write every missing or stale snapshot (see `instants`; `today` defaults to the UTC date)
    within the presence log.

    Returns the instants written (a date for a midnight). Snapshots whose days are unchanged
    are kept as they are.
    """
    # read and written wholly before or after an erasure, never keeping an erased person
    with erase.erasure_lock(data_dir, shared=True):
        return _build_snapshots(data_dir, progress, today)


def _build_snapshots(
    data_dir: Path, progress: Callable[[str], None] | None, today: date | None
) -> list[str]:
    lake = Lake(data_dir)
    dates = lake.dates("presence")
    if not dates:
        return []
    counts = dedup_counts(lake)
    written: list[str] = []
    state: Carry | None = None
    lake.bind("presence", [dates[0], dates[-1]])
    ((first, last),) = lake.fetch_tuples("online_time_span")
    for instant in instants(first, last, today or datetime.now(UTC).date()):
        fp = fingerprint(counts, instant)
        meta = _read_meta(data_dir, instant)
        if meta is not None and meta.get("fingerprint") == fp:
            state = None  # fresh: a later rebuild starts from this one
            continue
        base = state or _previous(lake, instant, counts)
        state = advance(lake, base, instant)
        _write(data_dir, state, fp, fingerprint(lake.counts, instant))
        name = _paths(data_dir, instant)[0].stem
        written.append(name)
        if progress:
            progress(f"presence snapshot {name}: {len(state.sessions)} sessions")
    return written


def _previous(lake: Lake, instant: datetime, counts: dict[str, dict[str, int]]) -> Carry | None:
    """The fresh snapshot just before `instant`, else the one at the midnight before it (days
    snapshotted when still open have only that), else None: start from the beginning."""
    for before in (instant - SNAPSHOT_EVERY, midnight_of(instant - JUST_BEFORE)):
        meta = _read_meta(lake.data_dir, before)
        if meta is not None and meta.get("fingerprint") == fingerprint(counts, before):
            return _read(lake, before, meta)
    return None
