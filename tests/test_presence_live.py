"""The live per-person view: joins and leaves collapsed across tabs, no flapping inside the grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailcli.presence.live import ONLINE_COLUMNS, Binding, Change, LiveView, view_page
from trailcli.presence.rules import collapse_tabs

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=15)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def kinds(changes: list[Change]) -> list[tuple[str, str, datetime]]:
    return [(c.type, c.person, c.time) for c in changes]


ANN = Binding(visit_token="v1", visitor_token="ann-visitor")


def test_one_tab_joins_at_once_and_leaves_only_after_the_grace() -> None:
    live = LiveView(GRACE)
    assert kinds(live.open("c1", ANN, at(0))) == [("join", "ann-visitor", at(0))]
    assert live.close("c1", last_alive=at(60), now=at(60)) == []
    assert live.due(at(74.999)) == []
    leave = live.due(at(75))
    assert kinds(leave) == [("leave", "ann-visitor", at(60))]
    assert leave[0].clients == 0
    assert live.online() == []


def test_several_tabs_are_one_person_until_the_last_one_goes() -> None:
    live = LiveView(GRACE)
    changes = live.open("tab1", ANN, at(0)) + live.open("tab2", ANN, at(5))
    changes += live.open("tab3", ANN, at(6))
    assert kinds(changes) == [("join", "ann-visitor", at(0))]
    assert live.online()[0]["clients"] == 3
    changes = live.close("tab1", at(30), at(30)) + live.close("tab3", at(40), at(40))
    changes += live.due(at(100))
    assert changes == []
    assert kinds(live.close("tab2", at(120), at(120)) + live.due(at(135))) == [
        ("leave", "ann-visitor", at(120))
    ]


def test_a_reload_inside_the_grace_does_not_flap() -> None:
    live = LiveView(GRACE)
    live.open("before", ANN, at(0))
    changes = live.close("before", at(50), at(50))  # beforeunload sends /meta/disconnect
    changes += live.open("after", ANN, at(51.5))  # the reloaded page handshakes again
    changes += live.due(at(200))
    assert changes == []
    (row,) = live.online()
    assert row["online_since"] == at(0)
    assert row["clients"] == 1


def test_coming_back_exactly_at_the_grace_is_a_new_stretch() -> None:
    live = LiveView(GRACE)
    live.open("before", ANN, at(0))
    live.close("before", at(50), at(50))
    changes = live.open("after", ANN, at(65))
    assert kinds(changes) == [
        ("leave", "ann-visitor", at(50)),
        ("join", "ann-visitor", at(65)),
    ]
    assert live.online()[0]["online_since"] == at(65)


def test_a_close_decided_after_the_grace_leaves_at_once_with_the_last_moment_alive() -> None:
    live = LiveView(GRACE)
    live.open("c1", ANN, at(0))
    # transport_closed: the socket closed at 40, the engine decided at 55
    assert kinds(live.close("c1", last_alive=at(40), now=at(55))) == [
        ("leave", "ann-visitor", at(40))
    ]


def test_the_leave_time_is_the_latest_end_among_the_persons_sessions() -> None:
    live = LiveView(GRACE)
    live.open("ws", ANN, at(0))
    live.open("lp", ANN, at(1))
    live.close("lp", last_alive=at(30), now=at(30))  # disconnect at 30
    changes = live.close("ws", last_alive=at(20), now=at(35))  # socket closed at 20, decided 35
    changes += live.due(at(44.9))
    assert changes == []
    assert kinds(live.due(at(45))) == [("leave", "ann-visitor", at(30))]


def test_a_session_without_visitor_or_user_is_never_a_person() -> None:
    live = LiveView(GRACE)
    assert live.open("anon", Binding(), at(0)) == []
    live.subscribe("anon", "/chat/1")
    assert live.online() == []
    assert live.has_session("anon")
    assert live.close("anon", at(5), at(5)) + live.due(at(100)) == []


def test_binding_later_joins_from_the_handshake_and_a_user_replaces_the_visitor() -> None:
    live = LiveView(GRACE)
    live.open("c1", Binding(), at(0))
    assert kinds(live.bind("c1", Binding(visit_token="v1", visitor_token="vis"), at(10))) == [
        ("join", "vis", at(0))
    ]
    changes = live.bind("c1", Binding(user_id="42"), at(20))
    assert kinds(changes) == [("leave", "vis", at(20)), ("join", "42", at(0))]
    (row,) = live.online()
    assert (row["user_id"], row["visitor_token"], row["visit_token"]) == ("42", "vis", "v1")


def test_identify_visit_moves_every_tab_of_the_visit_and_the_first_binding_wins() -> None:
    live = LiveView(GRACE)
    live.open("a", Binding("v1", "vis"), at(0))
    live.open("b", Binding("v1", "vis"), at(1))
    live.open("other", Binding("v2", "vis"), at(2))  # the same browser, a later visit
    changes = live.identify_visit("v1", "42", at(10))
    assert kinds(changes) == [("join", "42", at(0))]
    assert {r["user_id"] or r["visitor_token"]: r["clients"] for r in live.online()} == {
        "vis": 1,
        "42": 2,
    }
    assert live.identify_visit("v1", "99", at(11)) == []  # first binding wins
    # a new tab of the bound visit is the bound user at once
    live.open("c", Binding("v1", "vis"), at(12))
    assert {r["user_id"] or r["visitor_token"]: r["clients"] for r in live.online()}["42"] == 3


def test_a_visit_posted_with_its_visitor_completes_a_session_bound_only_to_the_visit() -> None:
    live = LiveView(GRACE)
    live.record_visit("v1", {"visitor_token": "vis", "browser": "Chrome", "country": "FR"})
    assert kinds(live.open("c1", Binding(visit_token="v1"), at(0))) == [("join", "vis", at(0))]
    (row,) = live.online()
    assert (row["browser"], row["country"], row["os"]) == ("Chrome", "FR", None)


def test_online_rows_have_the_trail_online_columns_with_channels_and_last_page() -> None:
    live = LiveView(GRACE)
    live.record_visit("v1", {"visitor_token": "vis", "browser": "Firefox", "os": "Linux"})
    live.open("a", Binding("v1", "vis"), at(0))
    live.open("b", Binding("v1", "vis"), at(1))
    live.subscribe("a", "/chat/2")
    live.subscribe("b", "/chat/1")
    live.subscribe("b", "/chat/2")
    live.unsubscribe("a", "/chat/2")
    live.record_event("v1", "$view", {"url": "https://shop.example/cart?x=1"}, at(5))
    live.record_event("v1", "$view", {"page": "/old"}, at(3))  # late, older view
    live.record_event("v1", "add_to_cart", {"page": "/ignored"}, at(6))
    (row,) = live.online()
    assert tuple(row) == ONLINE_COLUMNS
    assert row["channels"] == ["/chat/1", "/chat/2"]
    assert row["last_page"] == "/cart"
    assert row["clients"] == 2
    assert (row["browser"], row["os"]) == ("Firefox", "Linux")
    live.close("a", at(10), at(10))
    live.close("b", at(11), at(11))
    (pending,) = live.online()  # still listed until its leave is published
    assert pending["clients"] == 0
    (leave,) = live.due(at(26))
    assert leave.page == "/cart"
    assert live.online() == []


def test_change_message_has_the_channel_shape() -> None:
    live = LiveView(GRACE)
    (join,) = live.open("c1", Binding("v1", "vis", "7"), at(0))
    assert join.message() == {
        "type": "join",
        "user_id": "7",
        "visitor_token": "vis",
        "visit_token": "v1",
        "time": "2026-03-01T12:00:00+00:00",
        "page": None,
        "clients": 1,
    }


def test_repeated_open_and_unknown_close_change_nothing() -> None:
    live = LiveView(GRACE)
    live.open("c1", ANN, at(0))
    assert live.open("c1", ANN, at(1)) == []
    assert live.close("nobody", at(2), at(2)) == []
    assert live.bind("nobody", ANN, at(2)) == []
    assert live.online()[0]["clients"] == 1


def test_visit_caches_are_bounded() -> None:
    live = LiveView(GRACE, max_visits=3)
    for i in range(10):
        live.record_visit(f"v{i}", {"visitor_token": f"vis{i}"})
        live.record_event(f"v{i}", "$view", {"page": f"/{i}"}, at(i))
    assert len(live._visits) == 3
    assert len(live._pages) == 3
    assert kinds(live.open("c", Binding("v0"), at(20))) == []  # forgotten: no visitor known
    assert kinds(live.open("d", Binding("v9"), at(20))) == [("join", "vis9", at(20))]


@pytest.mark.parametrize(
    ("name", "properties", "page"),
    [
        ("$view", {"page": "/a", "url": "https://x.example/b"}, "/a"),
        ("$view", {"url": "https://x.example/b/c?q=1#f"}, "/b/c"),
        ("$view", {"url": "https://x.example"}, "/"),
        ("$view", {"url": "/p?q"}, "/p"),
        ("$view", {"url": "relative"}, None),
        ("$view", {"page": ""}, None),
        ("$view", None, None),
        ("$click", {"page": "/a"}, None),
    ],
)
def test_view_page_follows_the_design(name: str, properties: object, page: str | None) -> None:
    assert view_page(name, properties) == page  # type: ignore[arg-type]


# Independent reference: the stretches `trail online` computes with the shared rules.
sessions_strategy = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3"]),
        st.integers(min_value=0, max_value=300),
        st.integers(min_value=1, max_value=120),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(sessions=sessions_strategy, grace_s=st.integers(min_value=1, max_value=40))
def test_joins_and_leaves_equal_the_merged_stretches_of_the_rules(
    sessions: list[tuple[str, int, int]], grace_s: int
) -> None:
    grace = timedelta(seconds=grace_s)
    live = LiveView(grace)
    feed = []
    for i, (person, start, length) in enumerate(sessions):
        feed.append((at(start + length), 0, "close", f"c{i}", person))  # ends sort first
        feed.append((at(start), 1, "open", f"c{i}", person))
    changes: list[Change] = []
    for when, _, what, client, person in sorted(feed):
        if what == "open":
            changes += live.open(client, Binding(visitor_token=person), when)
        else:
            changes += live.close(client, when, when)
    changes += live.due(at(10_000))

    got: dict[str, list[tuple[datetime, datetime]]] = {}
    started: dict[str, datetime] = {}
    for change in changes:
        if change.type == "join":
            assert change.person not in started
            started[change.person] = change.time
        else:
            got.setdefault(change.person, []).append((started.pop(change.person), change.time))
    expected = collapse_tabs(
        ((p, at(s), at(s + n)) for p, s, n in sessions),
        grace,
    )
    assert got == expected


def test_clients_per_person_agree_with_the_online_rows() -> None:
    live = LiveView(GRACE)
    live.open("tab1", ANN, at(0))
    live.open("tab2", ANN, at(1))
    live.open("bob", Binding(visit_token="v2", visitor_token="bob-visitor"), at(2))
    live.close("bob", at(3), at(3))  # gone, within the grace: listed with no session
    assert live.clients() == {"ann-visitor": 2, "bob-visitor": 0}
    assert live.clients() == {r["visitor_token"]: r["clients"] for r in live.online()}
