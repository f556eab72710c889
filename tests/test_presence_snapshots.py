"""Snapshots at UTC midnight and within closed days, and `trail online` against a brute-force
reference over random logs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailcli.presence import online, snapshots
from trailcli.presence.online import Options
from trailcli.store import tables
from trailcli.store.views import Lake

BASE = datetime(2026, 3, 1, 23, 58, tzinfo=UTC)  # midnight falls 120 s into every log
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
SPAN = 300
GRACE = 15


def t(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def write(data_dir: Path, kind: str, rows: list[dict[str, Any]]) -> None:
    tables.bulk_write(data_dir, kind, tables.to_arrow(kind, rows))


# --- a random presence log ------------------------------------------------------------------


@st.composite
def presence_logs(draw: Any) -> dict[str, Any]:
    """Nodes with heartbeats that may stop, client sessions that may never send offline,
    subscriptions, and identities binding some visits to users (possibly late)."""
    rows: list[tuple[int, int, dict[str, Any]]] = []  # (time, order, row)
    order = 0

    def add(at: int, node: str, **row: Any) -> None:
        nonlocal order
        order += 1
        rows.append((at, order, {"time": t(at), "node_id": node, **row}))

    nodes = {}
    for node in ("n1", "n2"):
        stop = draw(st.integers(0, SPAN))
        nodes[node] = stop
        for at in range(0, stop + 1, 10):
            add(at, node, client_id="", transition="heartbeat")
    identities = []
    for i in range(draw(st.integers(0, 8))):
        node = draw(st.sampled_from(sorted(nodes)))
        visitor = draw(st.sampled_from(["a", "b", "c", None]))
        visit = f"visit{draw(st.integers(0, 4))}" if visitor else None
        client = f"c{i}"
        on = draw(st.integers(0, SPAN))
        ids = {"client_id": client, "visit_token": visit, "visitor_token": visitor}
        add(on, node, transition="online", reason="handshake", **ids)
        at = on
        for _ in range(draw(st.integers(0, 3))):
            at += draw(st.integers(0, 40))
            kind = draw(st.sampled_from(["subscribe", "unsubscribe"]))
            add(at, node, transition=kind, channel=draw(st.sampled_from(["/a/x", "/a/y/z"])), **ids)
        if draw(st.booleans()):
            at += draw(st.integers(0, 90))
            add(at, node, transition="offline", reason="disconnect", **ids)
        if visit and draw(st.integers(0, 3)) == 0:
            user = draw(st.sampled_from(["u1", "u2"]))
            bound = draw(st.integers(0, SPAN))
            identities.append({"time": t(bound), "visit_token": visit, "user_id": user})
    rows.sort(key=lambda r: (r[0], r[1]))
    seq: dict[str, int] = {}
    out = []
    for _, _, row in rows:
        seq[row["node_id"]] = seq.get(row["node_id"], 0) + 1
        out.append({**row, "seq": seq[row["node_id"]]})
    alive = draw(st.booleans())
    now = t(SPAN + 5) if alive else t(SPAN + 3600)
    return {"rows": out, "identities": identities, "now": now}


# --- the brute-force reference (whole seconds; every change in a log falls on one) ----------


def reference_sessions(log: dict[str, Any]) -> list[dict[str, Any]]:
    """Per client: [start, end) in seconds, person, channel spans; straight from the definitions."""
    rows = log["rows"]
    sec = {id(r): int((r["time"] - BASE).total_seconds()) for r in rows}
    beats: dict[str, int] = {}
    for r in rows:
        if r["transition"] == "heartbeat":
            beats[r["node_id"]] = max(beats.get(r["node_id"], -1), sec[id(r)])
    first_user: dict[str, tuple[datetime, str]] = {}
    for i in log["identities"]:
        best = first_user.get(i["visit_token"])
        if best is None or (i["time"], i["user_id"]) < best:
            first_user[i["visit_token"]] = (i["time"], i["user_id"])
    now = int((log["now"] - BASE).total_seconds())
    sessions = []
    for r in rows:
        if r["transition"] != "online":
            continue
        mine = [
            x for x in rows if x["client_id"] == r["client_id"] and x["node_id"] == r["node_id"]
        ]
        offline = [sec[id(x)] for x in mine if x["transition"] == "offline"]
        last = max(sec[id(x)] for x in mine)
        beat = beats.get(r["node_id"])
        if offline:
            end = offline[0]
        elif beat is not None and now - beat <= 30:
            end = 10**9
        else:
            end = max(last, beat if beat is not None else last)
        channels: dict[str, list[list[int]]] = {}
        for x in mine:
            at = sec[id(x)]
            if at >= end:
                continue
            spans = channels.setdefault(x.get("channel") or "", [])
            if x["transition"] == "subscribe" and not (spans and spans[-1][1] is None):
                spans.append([at, None])
            elif x["transition"] == "unsubscribe" and spans and spans[-1][1] is None:
                spans[-1][1] = at
        for spans in channels.values():
            for span in spans:
                span[1] = end if span[1] is None else span[1]
        bound = first_user.get(r["visit_token"] or "")
        person = (bound[1] if bound else None) or r["visitor_token"]
        start = sec[id(r)]
        sessions.append(
            {"start": start, "end": end, "person": person, "channels": channels,
             "client": r["client_id"]}
        )  # fmt: skip
    return sessions


def spans_for(session: dict[str, Any], channel: str | None) -> list[tuple[int, int]]:
    if channel is None:
        return [(session["start"], session["end"])]
    from trailcli.presence.rules import channel_matches

    return [
        (lo, hi)
        for name, spans in session["channels"].items()
        if channel_matches(channel, name)
        for lo, hi in spans
    ]


def online_persons(
    sessions: list[dict[str, Any]], second: int, grace: int = GRACE, channel: str | None = None
) -> set[str]:
    """Persons online at a whole second: covered, or inside a gap shorter than the grace."""
    found = set()
    for person in {s["person"] for s in sessions if s["person"]}:
        spans = [sp for s in sessions if s["person"] == person for sp in spans_for(s, channel)]
        spans = [(lo, hi) for lo, hi in spans if hi > lo]
        if any(lo <= second < hi for lo, hi in spans):
            found.add(person)
            continue
        ended = [hi for lo, hi in spans if hi <= second]
        later = [lo for lo, hi in spans if lo > second]
        if ended and later and min(later) - max(ended) < grace:
            found.add(person)
    return found


# --- the properties ------------------------------------------------------------------------


@contextmanager
def lake(log: dict[str, Any]) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="trail-prop-"))
    try:
        write(root, "presence", log["rows"])
        if log["identities"]:
            write(root, "identities", log["identities"])
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def since_reference(sessions: list[dict[str, Any]], person: str, second: int) -> int:
    start = second
    while start - 1 >= -GRACE - SPAN and person in online_persons(sessions, start - 1):
        start -= 1
    return max(start, min(s["start"] for s in sessions if s["person"] == person))


SNAPSHOT_STEPS = [None, snapshots.SNAPSHOT_EVERY, timedelta(seconds=70)]  # None: no snapshots


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    presence_logs(),
    st.lists(st.integers(0, SPAN), min_size=1, max_size=4),
    st.sampled_from(SNAPSHOT_STEPS),
)
def test_at_range_and_timeline_match_the_reference(log, instants, snapshot_every) -> None:
    """With no snapshots, the midnight one, and one every 70 s (several inside each log)."""
    step = snapshot_every or snapshots.SNAPSHOT_EVERY
    with mock.patch.object(snapshots, "SNAPSHOT_EVERY", step):
        check_against_reference(log, instants, with_snapshots=snapshot_every is not None)


def check_against_reference(log: dict[str, Any], instants: list[int], with_snapshots: bool) -> None:
    sessions = reference_sessions(log)
    now = log["now"]
    with lake(log) as data_dir:
        if with_snapshots:
            snapshots.build_snapshots(data_dir)
        opts = Options(use_snapshots=with_snapshots)
        for second in instants:
            rows = online.online_at(data_dir, t(second), now, opts)
            got = {r["user_id"] or r["visitor_token"]: r for r in rows}
            assert set(got) == online_persons(sessions, second), second
            for person, row in got.items():
                assert row["online_since"] == t(since_reference(sessions, person, second))
            by_client = Options(by="client", use_snapshots=with_snapshots)
            clients = {
                r["client_id"] for r in online.online_at(data_dir, t(second), now, by_client)
            }
            assert clients == {s["client"] for s in sessions if s["start"] <= second < s["end"]}
            chan = online.online_at(data_dir, t(second), now, Options(channel="/a/*"))
            expected = online_persons(sessions, second, channel="/a/*")
            assert {r["user_id"] or r["visitor_token"] for r in chan} == expected
        lo, hi = sorted(instants)[0], sorted(instants)[-1] + 60
        per_second = {s: online_persons(sessions, s) for s in range(lo, hi)}
        spans = online.online_between(data_dir, t(lo), t(hi), now, opts)
        seconds: dict[str, int] = {}
        for persons in per_second.values():
            for p in persons:
                seconds[p] = seconds.get(p, 0) + 1
        assert {(r["user_id"] or r["visitor_token"]): r["online_seconds"] for r in spans} == {
            p: float(n) for p, n in seconds.items()
        }
        rows = online.timeline(data_dir, t(lo), t(hi), timedelta(seconds=20), now, opts)
        counts = [len(per_second[s]) for s in range(lo, hi)]
        peak = max(counts)
        assert {r["peak_online"] for r in rows} == {peak}
        if peak:
            assert rows[0]["peak_at"] == t(lo + counts.index(peak))
        for i, row in enumerate(rows):
            bucket = counts[i * 20 : (i + 1) * 20]
            assert (row["max_online"], row["min_online"]) == (max(bucket), min(bucket))
            assert abs(row["avg_online"] - sum(bucket) / len(bucket)) < 1e-9


# --- snapshot behaviour --------------------------------------------------------------------


def two_day_log() -> list[dict[str, Any]]:
    rows = [
        {"time": t(s), "seq": i + 1, "node_id": "n1", "transition": "heartbeat"}
        for i, s in enumerate(range(0, 300, 10))
    ]
    ids = {"visit_token": "va", "visitor_token": "a"}
    rows += [
        {"time": t(5), "seq": 100, "node_id": "n1", "client_id": "c1", "transition": "online",
         "reason": "handshake", **ids},
        {"time": t(200), "seq": 101, "node_id": "n1", "client_id": "c1", "transition": "offline",
         "reason": "disconnect", **ids},
    ]  # fmt: skip
    return rows


def test_snapshot_is_built_used_and_kept(data_dir) -> None:
    write(data_dir, "presence", two_day_log())
    assert snapshots.build_snapshots(data_dir) == ["2026-03-02"]
    assert (snapshots.layout.snapshot_dir(data_dir) / "2026-03-02.parquet").exists()
    window = online.load_window(data_dir, t(150), t(150), t(10_000), Options())
    assert window.used_snapshot
    (row,) = online.online_at(data_dir, t(150), t(10_000))
    assert row["online_since"] == t(5)  # the stretch start carried across midnight
    assert snapshots.build_snapshots(data_dir) == []  # fresh: nothing rebuilt


def test_late_rows_make_a_snapshot_stale(data_dir) -> None:
    write(data_dir, "presence", two_day_log())
    snapshots.build_snapshots(data_dir)
    late = {"time": t(60), "seq": 200, "node_id": "n1", "client_id": "c1",
            "transition": "offline", "reason": "node_lost"}  # fmt: skip
    write(data_dir, "presence", [late])
    assert not online.load_window(data_dir, t(150), t(150), t(10_000), Options()).used_snapshot
    assert online.online_at(data_dir, t(150), t(10_000)) == []
    assert snapshots.build_snapshots(data_dir) == ["2026-03-02"]
    assert online.load_window(data_dir, t(150), t(150), t(10_000), Options()).used_snapshot
    assert online.online_at(data_dir, t(150), t(10_000)) == []


def test_late_identity_after_midnight_falls_back_to_the_scan(data_dir) -> None:
    write(data_dir, "presence", two_day_log())
    snapshots.build_snapshots(data_dir)
    write(data_dir, "identities", [{"time": t(180), "visit_token": "va", "user_id": "u1"}])
    window = online.load_window(data_dir, t(150), t(150), t(10_000), Options())
    assert not window.used_snapshot
    assert online.online_at(data_dir, t(150), t(10_000))[0]["user_id"] == "u1"


def test_compaction_alone_keeps_snapshots_fresh(data_dir) -> None:
    from deltalake import DeltaTable

    write(data_dir, "presence", two_day_log()[:10])
    write(data_dir, "presence", two_day_log()[10:])
    snapshots.build_snapshots(data_dir)
    DeltaTable(str(data_dir / "presence")).optimize.compact()
    assert snapshots.build_snapshots(data_dir) == []
    assert online.load_window(data_dir, t(150), t(150), t(10_000), Options()).used_snapshot


def test_unreadable_snapshot_falls_back_to_the_scan(data_dir) -> None:
    write(data_dir, "presence", two_day_log())
    snapshots.build_snapshots(data_dir)
    (snapshots.layout.snapshot_dir(data_dir) / "2026-03-02.parquet").write_bytes(b"not parquet")
    assert not online.load_window(data_dir, t(150), t(150), t(10_000), Options()).used_snapshot
    (row,) = online.online_at(data_dir, t(150), t(10_000))
    assert row["online_since"] == t(5)


def test_non_default_grace_and_missing_snapshot_scan(data_dir) -> None:
    write(data_dir, "presence", two_day_log())
    assert not online.load_window(data_dir, t(150), t(150), t(10_000), Options()).used_snapshot
    snapshots.build_snapshots(data_dir)
    opts = Options(grace=timedelta(seconds=30))
    assert not online.load_window(data_dir, t(150), t(150), t(10_000), opts).used_snapshot


def test_no_presence_builds_nothing(data_dir) -> None:
    assert snapshots.build_snapshots(data_dir) == []


def test_timeline_after_a_late_identity_merges_the_persons(data_dir) -> None:
    rows = two_day_log()
    ids = {"visit_token": "vb", "visitor_token": "b"}
    rows += [
        {"time": t(130), "seq": 300, "node_id": "n1", "client_id": "c2", "transition": "online",
         "reason": "handshake", **ids},
        {"time": t(250), "seq": 301, "node_id": "n1", "client_id": "c2", "transition": "offline",
         "reason": "disconnect", **ids},
    ]  # fmt: skip
    write(data_dir, "presence", rows)
    snapshots.build_snapshots(data_dir)
    args = (data_dir, t(125), t(260), timedelta(seconds=135), t(10_000))
    assert online.timeline(*args)[0]["peak_online"] == 2  # visitors a and b
    identities = [
        {"time": t(150), "visit_token": "va", "user_id": "u1"},
        {"time": t(150), "visit_token": "vb", "user_id": "u1"},
    ]
    write(data_dir, "identities", identities)  # both visits turn out to be u1's
    (row,) = online.timeline(*args)
    assert (row["peak_online"], row["max_online"]) == (1, 1)


def test_instants_are_midnights_and_steps_within_closed_days() -> None:
    first, last = datetime(2026, 3, 1, 1, tzinfo=UTC), datetime(2026, 3, 3, 7, tzinfo=UTC)
    got = [i.isoformat()[:16] for i in snapshots.instants(first, last, today=date(2026, 3, 2))]
    day1 = [f"2026-03-01T{h:02d}:00" for h in range(3, 24, 3)]
    assert got == [*day1, "2026-03-02T00:00", "2026-03-03T00:00"]  # 03-02 is today: open
    assert snapshots.instant_of(datetime(2026, 3, 1, 5, 59, tzinfo=UTC)) == datetime(
        2026, 3, 1, 3, tzinfo=UTC
    )


def test_a_snapshot_within_the_day_is_used_and_a_late_row_that_day_makes_it_stale(
    data_dir,
) -> None:
    write(data_dir, "presence", two_day_log())
    with mock.patch.object(snapshots, "SNAPSHOT_EVERY", timedelta(seconds=60)):
        built = snapshots.build_snapshots(data_dir)
        assert built[:3] == ["2026-03-01T235900", "2026-03-02", "2026-03-02T000100"]
        window = online.load_window(data_dir, t(185), t(185), t(10_000), Options())
        assert window.carry is not None and window.carry.instant == t(180)  # 00:01
        (row,) = online.online_at(data_dir, t(185), t(10_000))
        assert row["online_since"] == t(5)  # carried from before midnight, through 00:01
        late = {"time": t(170), "seq": 200, "node_id": "n1", "client_id": "c1",
                "transition": "offline", "reason": "node_lost"}  # fmt: skip
        write(data_dir, "presence", [late])
        window = online.load_window(data_dir, t(185), t(185), t(10_000), Options())
        assert window.carry is not None and window.carry.instant == t(120)  # back to midnight
        assert online.online_at(data_dir, t(185), t(10_000)) == []


def test_a_carried_session_whose_later_rows_name_no_person_still_ends(data_dir) -> None:
    rows = two_day_log()
    anonymous = {"node_id": "n1", "client_id": "c9"}  # no visit, visitor or user on any row
    rows += [
        {"time": t(30), "seq": 400, "transition": "online", "reason": "handshake", **anonymous},
        {"time": t(150), "seq": 401, "transition": "offline", "reason": "disconnect", **anonymous},
    ]  # fmt: skip
    write(data_dir, "presence", rows)
    clients = Options(by="client")
    with mock.patch.object(snapshots, "SNAPSHOT_EVERY", timedelta(seconds=60)):
        snapshots.build_snapshots(data_dir)
        lake_now = Lake(data_dir)
        at_midnight = snapshots.load(lake_now, MIDNIGHT)
        assert at_midnight is not None and ("n1", "c9") in {s.key for s in at_midnight.sessions}
        later = snapshots.load(lake_now, t(180))
        assert later is not None and ("n1", "c9") not in {s.key for s in later.sessions}
        assert online.load_window(data_dir, t(200), t(200), t(10_000), clients).used_snapshot
        listed = {r["client_id"] for r in online.online_at(data_dir, t(200), t(10_000), clients)}
        assert "c9" not in listed
    listed = {r["client_id"] for r in online.online_at(data_dir, t(140), t(10_000), clients)}
    assert "c9" in listed


def test_a_later_day_without_snapshots_folds_from_the_newest_snapshot_before_it(data_dir) -> None:
    """Days appended after the last snapshot (not compacted, nothing built there) are folded
    from that snapshot instead of from the start of the log, with the same answer."""
    write(data_dir, "presence", two_day_log())
    assert snapshots.build_snapshots(data_dir) == ["2026-03-02"]
    later = datetime(2026, 3, 4, 10, tzinfo=UTC)
    ids = {"visit_token": "vc", "visitor_token": "c"}
    rows = [
        {"time": later + timedelta(seconds=s), "seq": 1000 + s, "node_id": "n1",
         "transition": "heartbeat"}
        for s in range(0, 600, 10)
    ]  # fmt: skip
    rows += [
        {"time": later + timedelta(seconds=5), "seq": 2000, "node_id": "n1", "client_id": "c3",
         "transition": "online", "reason": "handshake", **ids},
    ]  # fmt: skip
    write(data_dir, "presence", rows)
    at, now = later + timedelta(seconds=300), later + timedelta(seconds=400)
    window = online.load_window(data_dir, at, at, now, Options())
    assert window.carry is not None and window.carry.instant == MIDNIGHT
    got = online.online_at(data_dir, at, now)
    assert [r["visitor_token"] for r in got] == ["c"]
    assert got == online.online_at(data_dir, at, now, Options(use_snapshots=False))
    assert online.online_at(data_dir, t(150), t(10_000))[0]["visitor_token"] == "a"
