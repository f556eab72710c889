"""`trail online` library over small literal presence logs: one test per presence rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trailcli.errors import NoDataError, UsageError
from trailcli.presence import online
from trailcli.presence.online import Options
from trailcli.store.views import Lake

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=30)  # "now" long after the log: every node is gone


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Log:
    """Builds presence rows in log order for one or more nodes."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, at: float, transition: str, client: str = "", node: str = "n1", **kw: Any) -> Log:
        self.rows.append(
            {"time": t(at), "seq": len(self.rows) + 1, "node_id": node, "client_id": client,
             "transition": transition, **kw}
        )  # fmt: skip
        return self

    def beats(self, start: float, stop: float, node: str = "n1") -> Log:
        for at in range(int(start), int(stop) + 1, 10):
            self.add(at, "heartbeat", node=node)
        return self

    def session(
        self, client: str, on: float, off: float | None, visitor: str | None = "v1",
        visit: str | None = None, node: str = "n1", reason: str = "disconnect", **kw: Any,
    ) -> Log:  # fmt: skip
        ids = {"visitor_token": visitor, "visit_token": visit or f"visit-{client}", **kw}
        self.add(on, "online", client, node, reason="handshake", **ids)
        if off is not None:
            self.add(off, "offline", client, node, reason=reason, **ids)
        return self


@pytest.fixture
def log(write_rows):
    def write(log: Log) -> None:
        write_rows("presence", log.rows)

    return write


def persons_at(
    data_dir: Path, at: float, now: datetime = LATER, **opts: Any
) -> list[dict[str, Any]]:
    return online.online_at(data_dir, t(at), now, Options(**opts))


def keys(rows: list[dict[str, Any]]) -> list[str]:
    return [r["user_id"] or r["visitor_token"] for r in rows]


def test_half_open_interval(data_dir, log) -> None:
    log(Log().beats(0, 200).session("c1", 10, 20, visitor="a"))
    assert keys(persons_at(data_dir, 9.999)) == []
    assert keys(persons_at(data_dir, 10)) == ["a"]
    assert keys(persons_at(data_dir, 19.999)) == ["a"]
    assert keys(persons_at(data_dir, 20)) == []


def test_equal_timestamps_end_before_start(data_dir, log) -> None:
    log(Log().beats(0, 200).session("c1", 10, 20, visitor="a").session("c2", 20, 30, visitor="b"))
    assert keys(persons_at(data_dir, 20)) == ["b"]
    rows = online.timeline(data_dir, t(0), t(60), timedelta(seconds=10), LATER)
    assert {r["peak_online"] for r in rows} == {1}
    assert rows[0]["peak_at"] == t(10)
    assert [r["max_online"] for r in rows] == [0, 1, 1, 0, 0, 0]


def test_gap_shorter_than_grace_is_one_stretch(data_dir, log) -> None:
    log(Log().beats(0, 200).session("c1", 10, 20, visitor="a").session("c2", 34, 50, visitor="a"))
    rows = persons_at(data_dir, 25)  # inside the 14 s gap: still online, no open client
    assert keys(rows) == ["a"] and rows[0]["clients"] == 0
    assert persons_at(data_dir, 40)[0]["online_since"] == t(10)


def test_gap_equal_to_grace_splits(data_dir, log) -> None:
    log(Log().beats(0, 200).session("c1", 10, 20, visitor="a").session("c2", 35, 50, visitor="a"))
    assert keys(persons_at(data_dir, 25)) == []
    assert persons_at(data_dir, 40)[0]["online_since"] == t(35)
    assert persons_at(data_dir, 40, grace=timedelta(seconds=16))[0]["online_since"] == t(10)


def test_several_tabs_are_one_person(data_dir, log) -> None:
    log(
        Log().beats(0, 200)
        .session("c1", 10, 100, visitor="a", visit="va")
        .session("c2", 30, 60, visitor="a", visit="va")
        .session("c3", 40, 50, visitor="b", visit="vb")
    )  # fmt: skip
    rows = persons_at(data_dir, 45)
    assert keys(rows) == ["a", "b"]
    assert rows[0]["clients"] == 2 and rows[0]["online_since"] == t(10)
    assert len(persons_at(data_dir, 45, by="client")) == 3
    assert len(persons_at(data_dir, 45, by="visit")) == 2
    spans = online.online_between(data_dir, t(0), t(200), LATER)
    assert [(r["visitor_token"], r["online_seconds"], r["clients"]) for r in spans] == [
        ("a", 90.0, 2),
        ("b", 10.0, 1),
    ]


def test_range_counts_merged_gaps_and_clips(data_dir, log) -> None:
    log(Log().beats(0, 300).session("c1", 10, 20, visitor="a").session("c2", 30, 100, visitor="a"))
    (row,) = online.online_between(data_dir, t(15), t(50), LATER)
    assert row["first_seen"] == t(15) and row["last_seen"] == t(50)
    assert row["online_seconds"] == 35.0
    assert online.online_between(data_dir, t(100), t(200), LATER) == []


def test_node_that_stops_heartbeating(data_dir, log) -> None:
    log(Log().beats(0, 50).session("c1", 10, None, visitor="a"))  # last heartbeat at 50
    assert keys(persons_at(data_dir, 49)) == ["a"]
    assert keys(persons_at(data_dir, 50)) == []
    assert keys(persons_at(data_dir, 500)) == []


def test_session_of_a_live_node_is_open_now(data_dir, log) -> None:
    log(Log().beats(0, 50).session("c1", 10, None, visitor="a"))
    now = t(75)  # last heartbeat 25 s ago: within three intervals, the node is alive
    assert keys(persons_at(data_dir, 75, now=now)) == ["a"]
    assert keys(persons_at(data_dir, 85, now=t(85))) == []  # 35 s: the node is gone


def test_node_restart_with_node_lost_rows(data_dir, log) -> None:
    log(
        Log().beats(0, 50)
        .session("c1", 10, 54, visitor="a", reason="node_lost")  # written on restart
        .beats(120, 200)
        .session("c2", 130, 150, visitor="b")
    )  # fmt: skip
    assert keys(persons_at(data_dir, 53)) == ["a"]
    assert keys(persons_at(data_dir, 130)) == ["b"]


def test_late_identity_binds_the_whole_visit(data_dir, log, write_rows) -> None:
    log(
        Log().beats(0, 200)
        .session("c1", 10, 100, visitor="phone", visit="vp")
        .session("c2", 50, 150, visitor="laptop", visit="vl")
    )  # fmt: skip
    assert keys(persons_at(data_dir, 60)) == ["phone", "laptop"]
    write_rows(
        "identities",
        [
            {"time": t(90), "visit_token": "vp", "visitor_token": "phone", "user_id": "u1"},
            {"time": t(140), "visit_token": "vl", "visitor_token": "laptop", "user_id": "u1"},
            {"time": t(145), "visit_token": "vl", "visitor_token": "laptop", "user_id": "u2"},
        ],
    )
    rows = persons_at(data_dir, 60)  # bound later, but the binding holds for the whole visit
    assert keys(rows) == ["u1"] and rows[0]["clients"] == 2
    assert keys(persons_at(data_dir, 20, users_only=True)) == ["u1"]


def test_users_only_leaves_out_anonymous_visitors(data_dir, log) -> None:
    log(
        Log().beats(0, 200).session("c1", 10, 100, visitor="a")
        .session("c2", 10, 100, visitor="b", user_id="u9")
        .session("c3", 10, 100, visitor=None, visit=None)
    )  # fmt: skip
    assert keys(persons_at(data_dir, 20)) == ["a", "u9"]
    assert keys(persons_at(data_dir, 20, users_only=True)) == ["u9"]
    clients = persons_at(data_dir, 20, by="client")
    assert sorted(r["client_id"] for r in clients) == ["c1", "c2", "c3"]


def test_channels_filter_and_unsubscribe_keeps_session(data_dir, log) -> None:
    log(
        Log().beats(0, 200)
        .session("c1", 10, 100, visitor="a")
        .add(20, "subscribe", "c1", channel="/chat/room1")
        .add(30, "subscribe", "c1", channel="/news")
        .add(40, "unsubscribe", "c1", channel="/chat/room1")
        .session("c2", 10, 100, visitor="b")
        .add(25, "subscribe", "c2", channel="/chat/room2/private")
    )  # fmt: skip
    assert persons_at(data_dir, 35)[0]["channels"] == ["/chat/room1", "/news"]
    assert keys(persons_at(data_dir, 35, channel="/chat/*")) == ["a"]
    assert keys(persons_at(data_dir, 35, channel="/chat/**")) == ["a", "b"]
    assert keys(persons_at(data_dir, 45, channel="/chat/*")) == []
    assert keys(persons_at(data_dir, 45)) == ["a", "b"]  # unsubscribe never ends the session
    assert persons_at(data_dir, 45)[0]["channels"] == ["/news"]


def test_visit_fields_and_last_page(data_dir, log, write_rows) -> None:
    log(Log().beats(0, 200).session("c1", 10, 100, visitor="a", visit="va"))
    write_rows(
        "visits",
        [{"visit_token": "va", "visitor_token": "a", "started_at": t(5), "browser": "Firefox",
          "os": "Linux", "device_type": "Desktop", "country": "FR", "referring_domain": "x.org"}],
    )  # fmt: skip
    write_rows(
        "events",
        [
            {"event_id": "e1", "visit_token": "va", "name": "$view", "time": t(20),
             "properties": {"page": "/a"}},
            {"event_id": "e2", "visit_token": "va", "name": "$view", "time": t(40),
             "properties": {"url": "https://x.org/b?q=1"}},
            {"event_id": "e3", "visit_token": "va", "name": "click", "time": t(45)},
        ],
    )  # fmt: skip
    (row,) = persons_at(data_dir, 30)
    assert row["last_page"] == "/a"
    assert (row["browser"], row["os"], row["device_type"], row["country"]) == (
        "Firefox", "Linux", "Desktop", "FR",
    )  # fmt: skip
    assert row["referring_domain"] == "x.org"
    assert persons_at(data_dir, 50)[0]["last_page"] == "/b"


@pytest.fixture
def bound_visit_days(monkeypatch) -> list[list[str]]:
    """The visits partitions each `Lake.bind("visits", ...)` of a request reads."""
    bound: list[list[str]] = []
    bind = Lake.bind

    def spy(self: Lake, kind: str, dates: Any = None, **kw: Any) -> None:
        if kind == "visits":
            bound.append(sorted(dates) if dates is not None else self.dates("visits"))
        bind(self, kind, dates, **kw)

    monkeypatch.setattr(Lake, "bind", spy)
    return bound


def test_visit_fields_read_the_days_around_the_sessions(
    data_dir, log, write_rows, bound_visit_days
) -> None:
    log(Log().beats(0, 200).session("c1", 10, 100, visitor="a", visit="va"))
    write_rows(
        "visits",
        [{"visit_token": "va", "started_at": t(5), "browser": "Firefox"},
         {"visit_token": "vx", "started_at": t(5) - timedelta(days=9), "browser": "Edge"}],
    )  # fmt: skip
    assert [r["browser"] for r in persons_at(data_dir, 20)] == ["Firefox"]
    assert bound_visit_days == [["2026-03-01"]]  # not 2026-02-20, which holds no visit asked for
    assert [r["browser"] for r in online.online_between(data_dir, t(0), t(60), LATER)] == [
        "Firefox"
    ]
    assert bound_visit_days == [["2026-03-01"]] * 2


def test_visit_fields_far_from_the_session_are_found(
    data_dir, log, write_rows, bound_visit_days
) -> None:
    log(
        Log().beats(0, 200).session("c1", 10, 100, visitor="a", visit="va")
        .session("c2", 10, 100, visitor="b", visit="vb")
        .session("c3", 10, 100, visitor="c", visit="vc")
        .session("c4", 10, 100, visitor="d", visit="vd")
    )  # fmt: skip
    day = timedelta(days=1)
    write_rows(
        "visits",
        [{"visit_token": "va", "started_at": t(5) - day, "browser": "Firefox"},  # the day before
         {"visit_token": "vb", "started_at": t(5) - 5 * day, "browser": "Safari"},  # long before
         {"visit_token": "vc", "started_at": t(5) + 3 * day, "browser": "Chrome"},  # recorded late
         {"visit_token": "vx", "started_at": t(5) - 9 * day, "browser": "Edge"}],
    )  # fmt: skip
    rows = persons_at(data_dir, 20)
    assert [(r["visit_token"], r["browser"]) for r in rows] == [
        ("va", "Firefox"), ("vb", "Safari"), ("vc", "Chrome"), ("vd", None),
    ]  # fmt: skip
    assert bound_visit_days == [["2026-02-28"], ["2026-02-20", "2026-02-24", "2026-03-04"]]


def test_visit_recorded_twice_days_apart_shows_the_row_near_its_session(
    data_dir, log, write_rows
) -> None:
    log(Log().beats(0, 200).session("c1", 10, 100, visitor="a", visit="va"))
    write_rows(
        "visits",
        [{"visit_token": "va", "started_at": t(5) - timedelta(days=5), "browser": "Old"},
         {"visit_token": "va", "started_at": t(3), "browser": "Firefox"},
         {"visit_token": "va", "started_at": t(5), "browser": "Later"}],
    )  # fmt: skip
    assert [r["browser"] for r in persons_at(data_dir, 20)] == ["Firefox"]


def test_no_presence_table_is_no_data(data_dir) -> None:
    with pytest.raises(NoDataError):
        persons_at(data_dir, 0)


def test_nothing_at_or_before_the_instant_is_no_data(data_dir, log) -> None:
    log(Log().beats(0, 10))
    with pytest.raises(NoDataError):
        online.online_at(data_dir, T0 - timedelta(days=2), LATER)


@pytest.mark.parametrize(
    "opts",
    [{"by": "household"}, {"grace": timedelta(seconds=-1)}, {"channel": "chat"}],
)
def test_bad_options_are_usage_errors(opts) -> None:
    with pytest.raises(UsageError):
        Options(**opts)


def test_bad_ranges_are_usage_errors(data_dir, log) -> None:
    log(Log().beats(0, 10))
    with pytest.raises(UsageError):
        online.online_between(data_dir, t(10), t(10), LATER)
    with pytest.raises(UsageError):
        online.timeline(data_dir, t(0), t(10), timedelta(0), LATER)
    with pytest.raises(UsageError):
        online.timeline(data_dir, t(0), t(10 * 86400), timedelta(seconds=1), LATER)


def test_timeline_average_is_time_weighted(data_dir, log) -> None:
    log(Log().beats(0, 200).session("c1", 0, 15, visitor="a").session("c2", 5, 10, visitor="b"))
    rows = online.timeline(data_dir, t(0), t(20), timedelta(seconds=20), LATER)
    assert rows == [
        {"bucket_start": t(0), "max_online": 2, "min_online": 0, "avg_online": 1.0,
         "peak_online": 2, "peak_at": t(5)}
    ]  # fmt: skip


def test_equal_time_rows_take_the_binding_of_the_earlier_seq(data_dir, log) -> None:
    """Two rows of one session at one instant name different users: log order (seq) decides,
    for `--at` and `timeline` alike, whatever order the rows are stored in."""
    rows = Log().beats(0, 200)
    rows.add(10, "subscribe", "c1", channel="/chat", visitor_token="v", user_id="u2")
    rows.add(10, "online", "c1", visitor_token="v", user_id="u1")
    rows.add(12, "online", "c2", visitor_token="w", user_id="u1")
    rows.add(50, "offline", "c1").add(50, "offline", "c2")
    subscribe, online_row = rows.rows[-5], rows.rows[-4]
    subscribe["seq"], online_row["seq"] = online_row["seq"], subscribe["seq"]  # stored out of order
    log(rows)
    (person,) = persons_at(data_dir, 20)
    assert (person["user_id"], person["clients"], person["channels"]) == ("u1", 2, ["/chat"])
    (bucket,) = online.timeline(data_dir, t(0), t(60), timedelta(minutes=1), LATER)
    assert (bucket["peak_online"], bucket["peak_at"]) == (1, t(10))


def test_last_page_from_days_long_before_the_session_and_the_latest_across_days(
    data_dir, log, write_rows
) -> None:
    """Without a snapshot the days near the session are read first; a visit with no page there
    still gets its page from earlier days, and a later page wins over an earlier day's."""
    day = 86_400
    log(
        Log().beats(5 * day, 5 * day + 200)
        .session("c1", 5 * day + 10, None, visitor="a", visit="va")
        .session("c2", 5 * day + 10, None, visitor="b", visit="vb")
    )  # fmt: skip
    view = {"name": "$view"}
    write_rows(
        "events",
        [
            {"event_id": "a-old", "visit_token": "va", "time": t(10), "properties": {"page": "/old"},
             **view},
            {"event_id": "b-old", "visit_token": "vb", "time": t(10), "properties": {"page": "/x"},
             **view},
            {"event_id": "b-new", "visit_token": "vb", "time": t(5 * day + 20),
             "properties": {"page": "/new"}, **view},
        ],
    )  # fmt: skip
    rows = persons_at(data_dir, 5 * day + 60, use_snapshots=False)
    assert {r["visitor_token"]: r["last_page"] for r in rows} == {"a": "/old", "b": "/new"}
