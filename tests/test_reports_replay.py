"""`trail replay` library: a literal log gives exactly these rows, in this order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trailcli.errors import NoDataError, UsageError
from trailcli.reports.replay import (
    LiveTrail,
    Person,
    ReplayQuery,
    group_by_visit,
    live_row,
    replay,
    stored_rows,
)


def t(hh: int, mm: int, ss: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 3, day, hh, mm, ss, tzinfo=UTC)


@pytest.fixture
def log(data_dir: Path, write_rows) -> Path:
    write_rows(
        "visits",
        [
            {
                "visit_token": "v1",
                "visitor_token": "A",
                "started_at": t(9, 0),
                "landing_page": "https://shop.example.com/?utm_source=Mail&utm_medium=email",
                "utm_source": "Mail",
                "utm_medium": "email",
                "device_type": "Mobile",
                "browser": "Safari",
                "country": "FR",
                "city": "Lyon",
            },
            {
                "visit_token": "v2",
                "visitor_token": "A",
                "started_at": t(11, 0),
                "landing_page": "https://shop.example.com/p",
                "referrer": "https://t.co/x",
                "device_type": "Mobile",
            },
            {
                "visit_token": "w1",
                "visitor_token": "B",
                "started_at": t(9, 30),
                "landing_page": "https://shop.example.com/",
                "device_type": "Desktop",
            },
        ],
    )
    write_rows(
        "events",
        [
            {
                "event_id": "e2",
                "visit_token": "v1",
                "visitor_token": "A",
                "name": "$view",
                "properties": {"page": "/p", "n": 2},
                "time": t(9, 5),
            },
            {
                "event_id": "e1",
                "visit_token": "v1",
                "visitor_token": "A",
                "name": "$view",
                "properties": {"page": "/"},
                "time": t(9, 0),
            },
            {
                "event_id": "e3",
                "visit_token": "v2",
                "visitor_token": "A",
                "name": "add_to_cart",
                "properties": {"sku": "X1", "qty": 1, "gift": False},
                "time": t(11, 1),
            },
            {
                "event_id": "f1",
                "visit_token": "w1",
                "visitor_token": "B",
                "name": "$view",
                "properties": {"page": "/"},
                "time": t(9, 31),
            },
        ],
    )
    write_rows(
        "presence",
        [
            {
                "time": t(9, 0, 1),
                "seq": 1,
                "node_id": "n1",
                "client_id": "c1",
                "transition": "online",
                "reason": "handshake",
                "visit_token": "v1",
                "visitor_token": "A",
            },
            {
                "time": t(9, 2),
                "seq": 2,
                "node_id": "n1",
                "client_id": "c1",
                "transition": "subscribe",
                "channel": "/chat",
                "visit_token": "v1",
                "visitor_token": "A",
            },
            {
                "time": t(9, 6),
                "seq": 3,
                "node_id": "n1",
                "client_id": "c1",
                "transition": "offline",
                "reason": "disconnect",
                "visit_token": "v1",
                "visitor_token": "A",
            },
            {"time": t(9, 7), "seq": 4, "node_id": "n1", "transition": "heartbeat"},
        ],
    )
    write_rows(
        "identities",
        [
            {
                "time": t(9, 5),
                "visit_token": "v1",
                "visitor_token": "A",
                "user_id": "u-7",
                "source": "api",
                "node_id": "n1",
            }
        ],
    )
    return data_dir


EXPECTED = [
    (
        t(9, 0),
        "visit",
        "v1",
        "mail",
        {
            "source": "mail",
            "medium": "email",
            "channel": "Email",
            "landing_page": "https://shop.example.com/?utm_source=Mail&utm_medium=email",
            "device_type": "Mobile",
            "browser": "Safari",
            "country": "FR",
            "city": "Lyon",
        },
        None,
        True,
    ),
    (t(9, 0), "event", "v1", "$view", {"page": "/"}, 0.0, False),
    (
        t(9, 0, 1),
        "online",
        "v1",
        "handshake",
        {"reason": "handshake", "client_id": "c1", "node_id": "n1"},
        1.0,
        False,
    ),
    (t(9, 5), "identify", "v1", "u-7", {"user_id": "u-7", "source": "api"}, 299.0, False),
    (t(9, 5), "event", "v1", "$view", {"page": "/p", "n": 2}, 0.0, False),
    (
        t(9, 6),
        "offline",
        "v1",
        "disconnect",
        {"reason": "disconnect", "client_id": "c1", "node_id": "n1"},
        60.0,
        False,
    ),
    (
        t(11, 0),
        "visit",
        "v2",
        "Twitter",
        {
            "source": "Twitter",
            "medium": "social",
            "channel": "Organic Social",
            "landing_page": "https://shop.example.com/p",
            "referrer": "https://t.co/x",
            "device_type": "Mobile",
        },
        6840.0,
        True,
    ),
    (t(11, 1), "event", "v2", "add_to_cart", {"sku": "X1", "qty": 1, "gift": False}, 60.0, False),
]


def _tuples(rows):
    return [
        (
            r["time"],
            r["kind"],
            r["visit_token"],
            r["name"],
            r["detail"],
            r["gap_seconds"],
            r["new_session"],
        )
        for r in rows
    ]


def test_visitor_trail_is_exact(log: Path) -> None:
    assert _tuples(replay(log, ReplayQuery(Person(visitor="A")))) == EXPECTED


def test_user_trail_covers_the_visits_bound_to_the_user(log: Path) -> None:
    rows = replay(log, ReplayQuery(Person(user="u-7")))
    assert _tuples(rows) == EXPECTED[:6]


def test_visit_trail(log: Path) -> None:
    rows = replay(log, ReplayQuery(Person(visit="v2")))
    assert [r["kind"] for r in rows] == ["visit", "event"]
    assert rows[0]["gap_seconds"] is None and rows[0]["new_session"] is True


def test_range_limit_and_session_timeout(log: Path) -> None:
    ranged = replay(log, ReplayQuery(Person(visitor="A"), start=t(9, 5), end=t(11, 0)))
    assert [r["kind"] for r in ranged] == ["identify", "event", "offline"]
    limited = replay(log, ReplayQuery(Person(visitor="A"), limit=2))
    assert _tuples(limited) == EXPECTED[:2]
    short = replay(log, ReplayQuery(Person(visitor="A"), session_timeout=timedelta(minutes=1)))
    assert [r["new_session"] for r in short] == [True, False, False, True, False, True, True, True]


def test_unknown_person_is_empty(log: Path) -> None:
    assert replay(log, ReplayQuery(Person(visitor="nobody"))) == []


def test_group_by_visit_keeps_time_order_inside_groups(log: Path) -> None:
    rows = replay(log, ReplayQuery(Person(visitor="A")))
    groups = group_by_visit(rows)
    assert [(v, len(g)) for v, g in groups] == [("v1", 6), ("v2", 2)]


@pytest.mark.parametrize(
    "kwargs", [{}, {"user": "a", "visitor": "b"}, {"visit": "  "}, {"user": "a", "visit": "v"}]
)
def test_person_must_be_exactly_one(kwargs) -> None:
    with pytest.raises(UsageError):
        Person(**kwargs)


def test_no_tables_is_no_data(data_dir: Path) -> None:
    with pytest.raises(NoDataError):
        replay(data_dir, ReplayQuery(Person(visitor="A")))


def test_live_rows_from_bayeux_messages() -> None:
    event = {
        "event_id": "e9",
        "visit_token": "v1",
        "visitor_token": "A",
        "user_id": None,
        "name": "purchase",
        "properties": {"total": 9.5},
        "time": "2026-03-01T12:00:00Z",
    }
    trail = LiveTrail()
    row = trail.accept(*live_row("/trail/events", event))
    assert row is not None
    assert (row["kind"], row["name"], row["detail"], row["time"]) == (
        "event",
        "purchase",
        {"total": 9.5},
        t(12, 0),
    )
    assert trail.accept(*live_row("/trail/events", event)) is None  # printed once
    leave = {
        "type": "leave",
        "user_id": "u-7",
        "visitor_token": "A",
        "visit_token": "v1",
        "time": "2026-03-01T12:10:00+00:00",
        "page": "/p",
        "clients": 0,
    }
    row = trail.accept(*live_row("/trail/presence", leave))
    assert row is not None
    assert (row["kind"], row["name"], row["gap_seconds"], row["new_session"]) == (
        "offline",
        "leave",
        600.0,
        False,
    )
    assert Person(user="u-7").matches(leave) and not Person(visitor="B").matches(leave)


def test_live_rows_carry_the_values_the_stored_rows_will_have(data_dir: Path, write_rows) -> None:
    """A live event continues the trail printed before it: gap since the last stored row, the
    --session-timeout in force; once stored, re-reading gives the same row."""
    ids = {"visit_token": "v1", "visitor_token": "A"}
    write_rows("events", [{**ids, "event_id": "a", "name": "$view", "time": t(9, 0)}])
    query = ReplayQuery(Person(visitor="A"), session_timeout=timedelta(minutes=1))
    trail = LiveTrail(query.session_timeout)
    for key, row in stored_rows(data_dir, query):
        trail.accept(key, row)
    later = t(9, 0) + timedelta(seconds=81.29)
    message = {**ids, "event_id": "b", "name": "buy", "properties": {"n": 1}, "time": later}
    live = trail.accept(*live_row("/trail/events", {**message, "time": later.isoformat()}))
    assert live is not None
    assert (live["gap_seconds"], live["new_session"]) == (81.29, True)
    write_rows("events", [{**message, "properties": {"n": 1}}])
    assert replay(data_dir, query)[-1] == live
    # the stored trail read again after a reconnection prints nothing twice
    assert all(trail.accept(k, r) is None for k, r in stored_rows(data_dir, query))
