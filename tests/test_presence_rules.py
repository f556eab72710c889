"""The pure person rules: person key, grace merging, tab collapse, channel wildcards."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trailcli.presence.rules import (
    channel_matches,
    collapse_tabs,
    merge_stretches,
    online_seconds,
    person_key,
    persons_online,
    stretch_at,
)

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("user_id", "visitor", "expected"),
    [("u1", "v1", "u1"), (None, "v1", "v1"), ("", "v1", "v1"), (None, None, None), ("", "", None)],
)
def test_person_key_prefers_user_then_visitor(user_id, visitor, expected) -> None:
    assert person_key(user_id, visitor) == expected


def test_gap_shorter_than_grace_merges() -> None:
    grace = timedelta(seconds=15)
    assert merge_stretches([(t(0), t(10)), (t(24), t(30))], grace) == [(t(0), t(30))]


def test_gap_equal_to_grace_does_not_merge() -> None:
    grace = timedelta(seconds=15)
    assert merge_stretches([(t(0), t(10)), (t(25), t(30))], grace) == [
        (t(0), t(10)),
        (t(25), t(30)),
    ]


def test_touching_stretches_are_one_even_without_grace() -> None:
    assert merge_stretches([(t(10), t(20)), (t(0), t(10))], timedelta(0)) == [(t(0), t(20))]


def test_overlapping_and_contained_stretches_union() -> None:
    got = merge_stretches([(t(0), t(100)), (t(10), t(20)), (t(50), t(150))], timedelta(0))
    assert got == [(t(0), t(150))]


def test_empty_stretches_are_dropped() -> None:
    assert merge_stretches([(t(5), t(5)), (t(9), t(3))]) == []


def test_collapse_tabs_groups_by_person_and_skips_anonymous() -> None:
    sessions = [("u1", t(0), t(10)), ("u1", t(5), t(20)), ("v2", t(0), t(1)), (None, t(0), t(99))]
    assert collapse_tabs(sessions) == {"u1": [(t(0), t(20))], "v2": [(t(0), t(1))]}


def test_stretch_at_is_half_open() -> None:
    stretches = [(t(0), t(10))]
    assert stretch_at(stretches, t(0)) == (t(0), t(10))
    assert stretch_at(stretches, t(9.999)) == (t(0), t(10))
    assert stretch_at(stretches, t(10)) is None
    assert persons_online({"a": stretches, "b": [(t(10), t(11))]}, t(10)) == {"b": (t(10), t(11))}


def test_online_seconds_clips_to_range() -> None:
    stretches = [(t(0), t(10)), (t(20), t(40))]
    assert online_seconds(stretches, t(5), t(30)) == 15.0


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("/chat/a", "/chat/a", True),
        ("/chat/*", "/chat/a", True),
        ("/chat/*", "/chat/a/b", False),
        ("/chat/*", "/chat", False),
        ("/chat/**", "/chat/a/b", True),
        ("/chat/**", "/chat/a", True),
        ("/chat/**", "/chat", False),
        ("/**", "/x", True),
        ("/chat/a", "/chat/b", False),
        ("/chat/a", None, False),
    ],
)
def test_channel_wildcards(pattern, channel, expected) -> None:
    assert channel_matches(pattern, channel) is expected


spans = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 60)).map(lambda p: (t(p[0]), t(p[0] + p[1]))),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(spans, st.integers(0, 30))
def test_merge_matches_pointwise_definition(stretches, grace_s) -> None:
    """Every whole second is covered by the merge iff a stretch covers it or it lies in a short gap."""
    grace = timedelta(seconds=grace_s)
    merged = merge_stretches(stretches, grace)
    for a, b in itertools.pairwise(merged):
        assert b[0] - a[1] >= grace and b[0] > a[1]
    covered = {
        s
        for s0, e0 in stretches
        for s in range(int((s0 - T0).total_seconds()), int((e0 - T0).total_seconds()))
    }
    for second in range(0, 262):
        inside = stretch_at(merged, t(second)) is not None
        if second in covered:
            assert inside
        elif inside:
            before = [e for s, e in stretches if e <= t(second) and e > s]
            after = [s for s, e in stretches if s > t(second) and e > s]
            assert before and after and min(after) - max(before) < grace


# --- one rule, two statements: merge_stretches and queries/online_timeline_steps.sql ------------

SPANS = st.lists(
    st.tuples(
        st.sampled_from(["ann", "bob", "cy"]),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=0, max_value=20),
    ),
    max_size=10,
)


def _python_steps(
    spans: list[tuple[str, int, int]], grace: timedelta, start: datetime, end: datetime
) -> list[tuple[int, int]]:
    from trailcli.presence.online import sweep

    merged = collapse_tabs(((p, t(s), t(s + d)) for p, s, d in spans), grace)
    steps = sweep((st for stretches in merged.values() for st in stretches), start, end)
    return [((at - start) // timedelta(microseconds=1), n) for at, n in steps]


def _sql_steps(
    spans: list[tuple[str, int, int]], grace: timedelta, start: datetime, end: datetime
) -> list[tuple[int, int]]:
    import duckdb

    from trailcli import sql

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE timeline_sessions (node_id VARCHAR, client_id VARCHAR, person VARCHAR, "
        "is_user BOOLEAN, started TIMESTAMPTZ, ended TIMESTAMPTZ)"
    )
    con.execute("CREATE TABLE settled (node_id VARCHAR, client_id VARCHAR, end_at TIMESTAMPTZ)")
    for i, (person, s, d) in enumerate(spans):
        con.execute(
            "INSERT INTO timeline_sessions VALUES ('n', $c, $p, false, $s, $e)",
            {"c": f"c{i}", "p": person, "s": t(s), "e": t(s + d)},
        )
    params = {"from": start, "to": end, "grace_us": grace // timedelta(microseconds=1)}
    rows = con.execute(sql.load("online_timeline_steps"), {**params, "users_only": False})
    steps = [(int(at), int(n)) for at, n in rows.fetchall()]
    if not steps or steps[0][0] != 0:
        steps.insert(0, (0, 0))  # as trail online does: the count at the start of the range
    return steps


@settings(max_examples=200, deadline=None)
@given(SPANS, st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=40))
@example([("ann", 0, 10), ("ann", 25, 10)], 15, 0)  # a gap equal to the grace stays a gap
@example([("ann", 0, 10), ("ann", 24, 10), ("bob", 5, 1)], 15, 0)  # a shorter one closes
def test_grace_merging_is_the_same_in_python_and_in_sql(
    spans: list[tuple[str, int, int]], grace_s: int, offset: int
) -> None:
    grace, start = timedelta(seconds=grace_s), t(offset)
    end = start + timedelta(seconds=90)
    python = [(at, n) for at, n in _python_steps(spans, grace, start, end)]
    sql_steps = _sql_steps(spans, grace, start, end)
    assert _changes(python) == _changes(sql_steps)


def _changes(steps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The step function without repeated counts (an instant where ends and starts net out)."""
    out: list[tuple[int, int]] = []
    for at, n in steps:
        if not out or out[-1][1] != n:
            out.append((at, n))
    return out


@pytest.mark.parametrize(("gap", "closed"), [(14.999, True), (15, False), (16, False), (0, True)])
def test_a_gap_shorter_than_the_grace_is_closed(gap: float, closed: bool) -> None:
    from trailcli.presence.rules import closes_gap, leave_at

    grace = timedelta(seconds=15)
    assert closes_gap(timedelta(seconds=gap), grace) is closed
    assert (t(gap) < leave_at(t(0), grace)) is closed
