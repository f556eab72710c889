"""The sample generator: determinism, the stored contract, and ground truth that agrees with an
independent recomputation from the stored rows."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from trailcli.errors import UsageError
from trailcli.sample import truth
from trailcli.sample.generator import SampleOptions, generate, parse_tables
from trailcli.store import layout, tables
from trailcli.store.schema import KINDS

END = datetime(2026, 3, 2, tzinfo=UTC)
KINDS_ORDER = ("visits", "events", "presence", "identities")


def make(path: Path, **kw: Any) -> dict[str, Any]:
    opts = SampleOptions(data_dir=path, end=END, days=kw.pop("days", 3), **kw)
    generate(opts)
    return json.loads(layout.ground_truth_path(path).read_text())


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("sample") / "data"
    return path, make(path, seed=7, visitors=1500)


def read(path: Path, kind: str, order: bool = False) -> pa.Table:
    """The kind's stored rows, read with DuckDB from the table's current file list."""
    import duckdb

    files = tables.file_list(path, kind)
    con = duckdb.connect()
    query = (
        "SELECT * FROM read_parquet($f, hive_partitioning = true, hive_types = {'date': 'VARCHAR'})"
    )
    query += " ORDER BY ALL" if order else ""
    return con.sql(query, params={"f": files}).to_arrow_table()


def rows_of(path: Path, kind: str) -> list[dict[str, Any]]:
    return read(path, kind).to_pylist()


def sorted_rows(path: Path, kind: str) -> pa.Table:
    """All stored rows of the kind in a canonical order."""
    return read(path, kind, order=True)


# ---- determinism ---------------------------------------------------------------------------


def test_same_arguments_give_identical_data(tmp_path: Path) -> None:
    a = make(tmp_path / "a", seed=3, visitors=300, days=2)
    b = make(tmp_path / "b", seed=3, visitors=300, days=2)
    text_a = json.dumps(a).replace(str(tmp_path / "a"), "D")
    assert text_a == json.dumps(b).replace(str(tmp_path / "b"), "D")
    for kind in KINDS_ORDER:
        assert sorted_rows(tmp_path / "a", kind).equals(sorted_rows(tmp_path / "b", kind))


def test_different_seeds_differ(tmp_path: Path) -> None:
    make(tmp_path / "a", seed=3, visitors=300, days=2)
    make(tmp_path / "b", seed=4, visitors=300, days=2)
    for kind in ("visits", "events", "presence"):
        assert not sorted_rows(tmp_path / "a", kind).equals(sorted_rows(tmp_path / "b", kind))


def test_a_table_subset_writes_the_same_rows_as_the_full_run(tmp_path: Path) -> None:
    make(tmp_path / "all", seed=5, visitors=300, days=2)
    doc = make(tmp_path / "some", seed=5, visitors=300, days=2, tables=("events", "presence"))
    assert tables.table_exists(tmp_path / "some", "events")
    assert not tables.table_exists(tmp_path / "some", "visits")
    assert not tables.table_exists(tmp_path / "some", "identities")
    for kind in ("events", "presence"):
        assert sorted_rows(tmp_path / "all", kind).equals(sorted_rows(tmp_path / "some", kind))
    # figures whose tables were not written are left out
    assert "funnel" not in doc and "visits_by_source" not in doc
    assert {"online", "peak"} <= set(doc)


# ---- the stored contract -------------------------------------------------------------------


def test_columns_and_types_match_the_schema(sample: tuple[Path, dict[str, Any]]) -> None:
    path, _ = sample
    import pyarrow.parquet as pq

    for kind in KINDS_ORDER:
        files = tables.file_list(path, kind)
        assert files, kind
        for f in files:
            stored = pq.read_schema(f)
            want = KINDS[kind].schema
            assert [(x.name, x.type) for x in stored if x.name != "date"] == [
                (x.name, x.type) for x in want
            ], kind
            assert re.search(r"/date=\d{4}-\d{2}-\d{2}/", f)


def test_duckdb_and_polars_read_the_same_rows(sample: tuple[Path, dict[str, Any]]) -> None:
    import polars as pl

    path, doc = sample
    for kind in KINDS_ORDER:
        files = tables.file_list(path, kind)
        assert pl.scan_parquet(files).select(pl.len()).collect().item() == read(path, kind).num_rows
    assert read(path, "visits").num_rows == doc["counts"]["visits"]
    events = read(path, "events").num_rows
    assert events == doc["counts"]["events"] + doc["counts"]["duplicates"]


def test_tables_written_without_duplicates_are_marked_clean(
    sample: tuple[Path, dict[str, Any]],
) -> None:
    """Visits, presence and identities have unique keys and are read as stored; events carry
    the re-sent copies, so their partitions stay dirty until compaction."""
    from trailcli.store.views import Lake

    path, _ = sample
    lake = Lake(path)
    for kind in ("visits", "presence", "identities"):
        assert lake.dates(kind) and lake.clean[kind] == set(lake.dates(kind)), kind
        stored = lake.con.sql(
            f"SELECT count(*), count(DISTINCT ({', '.join(['date', *KINDS[kind].key])})) "
            f"FROM read_parquet({tables.file_list(path, kind)!r}, hive_partitioning = true)"
        ).fetchall()
        assert stored[0][0] == stored[0][1] == sum(lake.counts[kind].values()), kind
    assert not lake.clean["events"]


def test_partitions_hold_their_own_day(sample: tuple[Path, dict[str, Any]]) -> None:
    import pyarrow.compute as pc

    path, _ = sample
    for kind in KINDS_ORDER:
        table = read(path, kind)
        times = table[KINDS[kind].time_column]
        assert pc.all(pc.equal(pc.strftime(times, format="%Y-%m-%d"), table["date"])).as_py()
        assert pc.min(times).as_py() >= END - timedelta(days=3)
        assert pc.max(times).as_py() < END


def test_visits_look_real(sample: tuple[Path, dict[str, Any]]) -> None:
    import user_agents

    path, _ = sample
    visits = rows_of(path, "visits")
    device_types = Counter(v["device_type"] for v in visits)
    assert {"Desktop", "Mobile", "Tablet", "Bot"} <= set(device_types)
    for v in visits[:400]:
        parsed = user_agents.parse(v["user_agent"])
        assert parsed.browser.family == v["browser"]
        assert parsed.os.family == v["os"]
        assert parsed.is_bot == (v["device_type"] == "Bot")
        assert v["landing_page"].startswith("https://shop.example.com/")
    visitors = Counter(v["visitor_token"] for v in visits)
    assert max(visitors.values()) > 1  # returning visitors
    searches = [v["referrer"] for v in visits if v["referrer"] and "google." in v["referrer"]]
    assert any("q=" in r for r in searches)
    assert any("utm_source=" in v["landing_page"] for v in visits)
    assert any("gclid=" in v["landing_page"] for v in visits)


def test_events_carry_views_duplicates_and_logins(sample: tuple[Path, dict[str, Any]]) -> None:
    path, _ = sample
    events = rows_of(path, "events")
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_id[e["event_id"]].append(e)
    dups = [rows for rows in by_id.values() if len(rows) > 1]
    assert dups
    for first, second in (sorted(r, key=lambda e: e["received_at"]) for r in dups):
        assert first["time"] == second["time"] and first["received_at"] < second["received_at"]
    views = [e for e in events if e["name"] == "$view"]
    for e in views[:300]:
        props = json.loads(e["properties"])
        assert props["url"].startswith("https://shop.example.com" + props["page"])
        assert props["title"]
    assert any(e["received_at"] - e["time"] > timedelta(minutes=1) for e in events)  # late
    ids = rows_of(path, "identities")
    assert {r["source"] for r in ids} == {"api", "user_token"}
    login = {r["visit_token"]: r["time"] for r in ids}
    for e in events:
        if e["user_id"] is not None:
            assert e["visit_token"] in login and e["time"] >= login[e["visit_token"]]


def test_presence_rows_follow_the_semantics(sample: tuple[Path, dict[str, Any]]) -> None:
    path, _ = sample
    rows = rows_of(path, "presence")
    per_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_node[r["node_id"]].append(r)
    assert set(per_node) == {"web-1", "web-2", "web-3"}
    for node_rows in per_node.values():
        node_rows.sort(key=lambda r: r["seq"])
        seqs = [r["seq"] for r in node_rows]
        assert seqs == list(range(1, len(seqs) + 1))
        assert all(a["time"] <= b["time"] for a, b in itertools.pairwise(node_rows))
        beats = [r["time"] for r in node_rows if r["transition"] == "heartbeat"]
        assert all(r["client_id"] is None for r in node_rows if r["transition"] == "heartbeat")
        gaps = Counter((b - a) for a, b in itertools.pairwise(beats))
        assert gaps.most_common(1)[0][0] == timedelta(seconds=10)
    reasons = Counter(r["reason"] for r in rows if r["transition"] == "offline")
    assert set(reasons) == {
        "disconnect",
        "transport_closed",
        "timeout",
        "server_shutdown",
        "node_lost",
    }
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["client_id"]:
            sessions[r["client_id"]].append(r)
    for client_rows in sessions.values():
        kinds = [r["transition"] for r in sorted(client_rows, key=lambda r: (r["time"], r["seq"]))]
        assert kinds[0] == "online" and kinds.count("online") == 1
        assert kinds.count("offline") <= 1 and (kinds[-1] == "offline" or "offline" not in kinds)
        for r in client_rows:
            assert r["detected_at"] >= r["time"]
    lost = [r for r in rows if r["reason"] == "node_lost"]
    assert {r["node_id"] for r in lost} == {"web-2"}
    restart = min(r["time"] for r in per_node["web-2"] if r["time"] > max(x["time"] for x in lost))
    assert all(r["detected_at"] >= restart for r in lost)


# ---- ground truth --------------------------------------------------------------------------


def test_ground_truth_structure_and_consistency(sample: tuple[Path, dict[str, Any]]) -> None:
    path, doc = sample
    assert doc["generator"]["seed"] == 7 and doc["generator"]["days"] == 3
    assert doc["generator"]["end"] == "2026-03-02T00:00:00Z"
    reached = doc["funnel"]["reached"]
    assert len(reached) == 4 and reached[0] > reached[1] > reached[2] > reached[3] > 0
    assert doc["funnel"]["command"].startswith(f"trail report funnel --data-dir {path} ")
    assert len(doc["online"]) == 5
    labels = {o["label"] for o in doc["online"]}
    assert {"reload_gap", "node_crash_outage", "node_restart"} <= labels
    for o in doc["online"]:
        assert o["count"] == len(o["persons"]) == len(set(o["persons"]))
        assert o["command"] == f"trail online --data-dir {path} --at {o['at']} --format json"
        assert doc["peak"]["peak_online"] >= o["count"]
    assert doc["peak"]["from"] <= doc["peak"]["peak_at"] < doc["peak"]["to"]
    visits = doc["visits_by_source"]["visits"]
    bots = sum(1 for v in rows_of(path, "visits") if v["device_type"] == "Bot")
    assert sum(visits.values()) == doc["counts"]["visits"] - bots
    assert {"(direct)", "Google", "newsletter", "Facebook"} <= set(visits)
    # utm_source=Google / facebook count with the referrer-derived Google / Facebook visits
    assert not {"google", "facebook"} & set(visits)


def test_funnel_truth_matches_a_recount_from_stored_rows(
    sample: tuple[Path, dict[str, Any]],
) -> None:
    """Independent reading: dedupe events by id, drop bot visits, match steps per visitor."""
    path, doc = sample
    bots = {v["visit_token"] for v in rows_of(path, "visits") if v["device_type"] == "Bot"}
    unique = {e["event_id"]: e for e in rows_of(path, "events")}
    per_visitor: dict[str, list[tuple[datetime, str, int]]] = defaultdict(list)
    names = {"add_to_cart": 2, "checkout": 3, "purchase": 4}
    for e in unique.values():
        if e["visit_token"] in bots:
            continue
        step = names.get(e["name"], 0)
        if e["name"] == "$view" and fnmatchcase(json.loads(e["properties"])["page"], "/product/*"):
            step = 1
        if step:
            per_visitor[e["visitor_token"]].append((e["time"], e["event_id"], step))
    reached = [0, 0, 0, 0]
    for evs in per_visitor.values():
        evs.sort()
        best = 0
        for i, (t1, _, s) in enumerate(evs):
            if s != 1:
                continue
            level = 1
            for t, _, s2 in evs[i + 1 :]:
                if t - t1 > timedelta(days=1):
                    break
                if s2 == level + 1:
                    level += 1
            best = max(best, min(level, 4))
        for k in range(best):
            reached[k] += 1
    assert reached == doc["funnel"]["reached"]


def test_online_truth_matches_a_recount_from_stored_rows(
    sample: tuple[Path, dict[str, Any]],
) -> None:
    """Independent reading of the presence rules of docs/presence.md over the stored rows."""
    path, doc = sample
    first: dict[str, tuple[datetime, str]] = {}
    for r in rows_of(path, "identities"):
        cur = first.get(r["visit_token"])
        if cur is None or (r["time"], r["user_id"]) < cur:
            first[r["visit_token"]] = (r["time"], r["user_id"])
    rows = rows_of(path, "presence")
    last_beat = {}
    for r in rows:
        if r["transition"] == "heartbeat":
            last_beat[r["node_id"]] = max(last_beat.get(r["node_id"], r["time"]), r["time"])
    opened: dict[str, dict[str, Any]] = {}
    closed: dict[str, datetime] = {}
    for r in rows:
        if r["transition"] == "online":
            opened[r["client_id"]] = r
        elif r["transition"] == "offline":
            closed[r["client_id"]] = r["time"]
    intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for client, r in opened.items():
        bound = first.get(r["visit_token"])
        person = bound[1] if bound else (r["user_id"] or r["visitor_token"])
        if person is None:
            continue
        intervals[person].append((r["time"], closed.get(client, last_beat[r["node_id"]])))
    stretches: list[tuple[str, datetime, datetime]] = []
    for person, spans in intervals.items():
        spans = sorted(s for s in spans if s[1] > s[0])
        cur_s, cur_e = spans[0] if spans else (None, None)
        for s, e in spans[1:]:
            if s - cur_e < timedelta(seconds=15):
                cur_e = max(cur_e, e)
            else:
                stretches.append((person, cur_s, cur_e))
                cur_s, cur_e = s, e
        if spans:
            stretches.append((person, cur_s, cur_e))
    for o in doc["online"]:
        at = datetime.fromisoformat(o["at"].replace("Z", "+00:00"))
        persons = sorted({p for p, s, e in stretches if s <= at < e})
        assert persons == o["persons"], o["label"]
    changes = sorted([(s, 1) for _, s, _ in stretches] + [(e, -1) for _, _, e in stretches])
    count, peak, peak_at = 0, 0, None
    for t, d in changes:
        count += d
        if count > peak:
            peak, peak_at = count, t
    assert peak == doc["peak"]["peak_online"]
    assert peak_at is not None
    assert peak_at.isoformat().replace("+00:00", "Z") == doc["peak"]["peak_at"]


def test_reload_gap_instant_falls_between_two_sessions_of_one_online_person(
    sample: tuple[Path, dict[str, Any]],
) -> None:
    path, doc = sample
    gap = next(o for o in doc["online"] if o["label"] == "reload_gap")
    at = datetime.fromisoformat(gap["at"].replace("Z", "+00:00"))
    rows = rows_of(path, "presence")
    ended = [r for r in rows if r["transition"] == "offline" and r["time"] <= at]
    started = [r for r in rows if r["transition"] == "online" and r["time"] > at]
    pairs = [
        (a, b)
        for a in ended
        for b in started
        if a["visit_token"] == b["visit_token"] and b["time"] - a["time"] < timedelta(seconds=15)
    ]
    assert pairs


def test_source_rules() -> None:
    site = {"shop.example.com"}
    landing = "https://shop.example.com/"
    assert (
        truth.visit_source(landing + "?utm_source=News", "https://www.google.com/", site) == "news"
    )
    assert truth.visit_source(landing, "https://www.google.co.uk/search?q=x", site) == "Google"
    assert truth.visit_source(landing, "https://yandex.ru/search/?text=x", site) == "Yandex"
    assert truth.visit_source(landing, "https://mail.google.com/", site) == "Gmail"
    assert truth.visit_source(landing + "?gclid=1", None, site) == "Google"
    assert truth.visit_source(landing + "?fbclid=1", None, site) == "Facebook"
    assert truth.visit_source(landing, "https://www.gearblog.net/a", site) == "gearblog.net"
    assert truth.visit_source(landing, "https://shop.example.com/cart", site) == "(direct)"
    assert truth.visit_source(landing, None, site) == "(direct)"


def test_funnel_level_reference() -> None:
    day = 10
    assert truth.funnel_level([1, 2, 3, 4], [0, 1, 2, 3], day, 4) == 4
    assert truth.funnel_level([2, 1, 3, 2], [0, 1, 2, 3], day, 4) == 2  # order matters
    assert truth.funnel_level([1, 2, 3], [0, 5, 10], day, 4) == 3  # window closed: t3 - t1 = W
    assert truth.funnel_level([1, 2, 3], [0, 5, 11], day, 4) == 2
    assert truth.funnel_level([1, 2, 1, 2, 3], [0, 1, 20, 21, 22], day, 4) == 3  # best attempt


def test_person_stretches_merge_gaps_shorter_than_grace() -> None:
    person = np.array([1, 1, 1, 2])
    p, s, e = truth.person_stretches(
        person, np.array([0, 24, 60, 0]), np.array([10, 40, 70, 5]), grace=15
    )
    # 10 -> 24 is a gap of 14 (< 15, merged); 40 -> 60 is 20 (kept apart)
    assert list(zip(p.tolist(), s.tolist(), e.tolist(), strict=True)) == [
        (1, 0, 40),
        (1, 60, 70),
        (2, 0, 5),
    ]
    p, s, e = truth.person_stretches(np.array([1, 1]), np.array([0, 25]), np.array([10, 30]), 15)
    assert len(p) == 2  # a gap of exactly grace is not merged


def test_peak_sweep_counts_ends_before_starts() -> None:
    sweep = truth.PeakSweep()
    sweep.add(np.array([0, 10, 10]), np.array([10, 20, 15]))
    sweep.settle(12)
    sweep.add(np.array([14]), np.array([16]))
    sweep.settle(None)
    assert (sweep.peak, sweep.peak_at) == (3, 14)


@pytest.mark.parametrize(
    "kw",
    [
        {"visitors": 10, "events": 10},
        {"visitors": 0},
        {"peak_online": -1},
        {"days": 0},
        {"seed": -1},
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        generate(SampleOptions(data_dir=tmp_path / "d", end=END, **kw))
    assert not (tmp_path / "d").exists()


def test_tables_parsing() -> None:
    assert parse_tables(None) == KINDS_ORDER
    assert parse_tables("presence, visits") == ("visits", "presence")
    with pytest.raises(UsageError):
        parse_tables("visits,sessions")
    with pytest.raises(UsageError):
        parse_tables(",")


def test_refuses_a_data_dir_that_holds_tables(sample: tuple[Path, dict[str, Any]]) -> None:
    path, doc = sample
    before = read(path, "events").num_rows
    with pytest.raises(UsageError, match="already holds"):
        generate(SampleOptions(data_dir=path, end=END, days=1, visitors=10))
    assert read(path, "events").num_rows == before
    assert json.loads(layout.ground_truth_path(path).read_text()) == doc


def test_events_target_is_approximate(tmp_path: Path) -> None:
    doc = make(tmp_path / "d", seed=2, events=20_000, days=2, tables=("events", "visits"))
    assert 16_000 <= doc["counts"]["events"] <= 24_000


def test_peak_online_target_is_approximate(tmp_path: Path) -> None:
    doc = make(tmp_path / "d", seed=2, peak_online=60, days=3, tables=("presence",))
    assert 40 <= doc["peak"]["peak_online"] <= 85


def test_days_without_new_visitors_and_empty_tables(tmp_path: Path) -> None:
    doc = make(tmp_path / "d", seed=1, visitors=3, days=10)
    for kind in KINDS_ORDER:
        assert tables.table_exists(tmp_path / "d", kind)  # even with no rows (identities)
    reached = doc["funnel"]["reached"]
    assert all(a >= b for a, b in itertools.pairwise(reached))
    assert sum(doc["visits_by_source"]["visits"].values()) <= doc["counts"]["visits"]
