"""Funnels: every case of the reference table (analytics-definitions §1.8) and every option."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import funnel_reference as reference
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailcli.errors import NoDataError, UsageError
from trailcli.reports.funnel import FunnelQuery, dropped_at, funnel
from trailcli.reports.steps import parse_steps

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
ENGINES = ("auto", "match")


def events_of(unit: str, spec: str, **fields: Any) -> list[dict[str, Any]]:
    """Events from 'A0 B10 C20' (name, then minutes after T0); ids keep the written order."""
    rows = []
    for i, token in enumerate(spec.split()):
        name, minutes = token.rstrip("0123456789"), int(token.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        rows.append(
            {
                "event_id": f"{unit}-{i:03d}",
                "visit_token": fields.get("visit_token", f"visit-{unit}"),
                "visitor_token": fields.get("visitor_token", unit),
                "user_id": fields.get("user_id"),
                "name": name,
                "properties": fields.get("properties"),
                "time": T0 + minutes * MIN,
                "received_at": T0 + minutes * MIN,
            }
        )
    return rows


def query(*steps: str, **options: Any) -> FunnelQuery:
    options.setdefault("window", HOUR)
    return FunnelQuery(steps=tuple(parse_steps(list(steps))), **options)


def reached(data_dir: Path, q: FunnelQuery, engine: str = "auto") -> list[int]:
    return funnel(data_dir, q, engine)["reached"].to_list()


# analytics-definitions §1.8, funnel A -> B -> C, window 1 h: (events, ordered, strict, any)
TABLE = [
    ("happy path", "A0 B10 C20", 3, 3, 3),
    ("X breaks strict", "A0 X5 B10 C20", 3, 1, 3),
    ("order matters", "B0 A5 C10", 1, 1, 3),
    ("window from step 1", "A0 B30 C70", 2, 2, 2),
    ("second anchor wins", "A0 A50 B70 C80", 3, 3, 3),
    ("equal timestamps", "A0 B0", 2, 2, 2),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("note", "spec", "ordered", "strict", "any_"), TABLE)
def test_reference_table(
    data_dir: Path,
    write_rows: Callable[..., None],
    engine: str,
    note: str,
    spec: str,
    ordered: int,
    strict: int,
    any_: int,
) -> None:
    write_rows("events", events_of("u", spec))
    for order, expected in (("ordered", ordered), ("strict", strict), ("any", any_)):
        counts = reached(data_dir, query("A", "B", "C", order=order), engine)
        assert counts == [1] * expected + [0] * (3 - expected), (note, order)


@pytest.mark.parametrize("engine", ENGINES)
def test_window_from_prior_measures_each_step_from_the_previous(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows("events", events_of("u", "A0 B30 C70"))
    assert reached(data_dir, query("A", "B", "C", window_from="prior"), engine) == [1, 1, 1]
    assert reached(data_dir, query("A", "B", "C", order="strict", window_from="prior"), engine) == [
        1,
        1,
        1,
    ]


def test_window_from_prior_is_not_greedy(data_dir: Path, write_rows: Callable[..., None]) -> None:
    # the first B is too early for C, the second one is not
    write_rows("events", events_of("u", "A0 B10 B50 C100"))
    assert reached(data_dir, query("A", "B", "C", window_from="prior")) == [1, 1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_window_is_closed(data_dir: Path, write_rows: Callable[..., None], engine: str) -> None:
    write_rows("events", events_of("u", "A0 B60"))
    assert reached(data_dir, query("A", "B"), engine) == [1, 1]
    assert reached(data_dir, query("A", "B", window=59 * MIN), engine) == [1, 0]


@pytest.mark.parametrize("engine", ENGINES)
def test_equal_times_order_by_event_id(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    rows = events_of("u", "A0 B0")
    rows[0]["event_id"], rows[1]["event_id"] = "u-2", "u-1"  # B now sorts first
    write_rows("events", rows)
    assert reached(data_dir, query("A", "B"), engine) == [1, 0]


def test_units_that_share_a_hash_are_joined_on_their_text(
    data_dir: Path, write_rows: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import polars as pl

    from trailcli.reports import funnel_chain

    # u2's A comes after u1's and before u1's B: joined on a shared key it would take u1's B
    write_rows("events", events_of("u1", "A0 B10 C20") + events_of("u2", "A5 C30"))
    q = query("A", "B", "C")
    assert reached(data_dir, q) == [2, 1, 1]
    monkeypatch.setattr(funnel_chain, "unit_key", lambda: pl.lit(7, dtype=pl.UInt64))
    assert reached(data_dir, q) == [2, 1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_exclusion_drops_the_unit_from_every_count(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows("events", events_of("u1", "A0 E5 B10") + events_of("u2", "A0 B10 E15"))
    for order in ("ordered", "strict", "any"):
        q = query("A", "B", exclude=tuple(parse_steps(["E"])), order=order)
        counts = reached(data_dir, q, engine)
        # u1 is excluded (not a drop-off; under strict, E is what broke its chain);
        # u2's E comes after its last step
        assert counts == [1, 1], order


@pytest.mark.parametrize("engine", ENGINES)
def test_exclusion_uses_the_attempt_that_reached_the_level(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    # the first attempt reaches only A (E after it is outside any chain); the second reaches B
    write_rows("events", events_of("u", "A0 E70 A80 B90"))
    q = query("A", "B", exclude=tuple(parse_steps(["E"])))
    assert reached(data_dir, q, engine) == [1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_unit_choice_person_versus_session(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows("events", events_of("u", "A0 B40"))  # a 40-minute gap: two sessions
    assert reached(data_dir, query("A", "B"), engine) == [1, 1]
    assert reached(data_dir, query("A", "B", unit="session"), engine) == [1, 0]
    assert reached(data_dir, query("A", "B", unit="session", session_timeout=HOUR), engine) == [
        1,
        1,
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicate_steps_need_distinct_events(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows("events", events_of("u1", "A0 B10 B20 C30") + events_of("u2", "A0 B10 C30"))
    assert reached(data_dir, query("A", "B", "B", "C"), engine) == [2, 2, 1, 1]
    assert reached(data_dir, query("A", "B", "B", "C", order="any"), engine) == [2, 2, 2, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_one_event_satisfies_one_step_of_a_chain(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows("events", events_of("u", "A0"))
    assert reached(data_dir, query("A", "*"), engine) == [1, 0]
    assert reached(data_dir, query("A", "*", order="any"), engine) == [1, 0]


def test_unit_visit_and_user(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows(
        "events",
        events_of("a1", "A0", visitor_token="p", visit_token="v1", user_id="u1")
        + events_of("a2", "B5", visitor_token="p", visit_token="v2", user_id="u1")
        + events_of("b1", "A0 B5", visitor_token="q", visit_token="v3"),
    )
    assert reached(data_dir, query("A", "B")) == [2, 2]
    assert reached(data_dir, query("A", "B", unit="visit")) == [2, 1]
    # the user unit leaves out events of visits with no bound user
    assert reached(data_dir, query("A", "B", unit="user")) == [1, 1]


def test_user_unit_uses_identity_bindings(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows(
        "events",
        events_of("a", "A0", visitor_token="p", visit_token="v1")
        + events_of("b", "B5", visitor_token="q", visit_token="v2"),
    )
    write_rows(
        "identities",
        [
            {"time": T0, "visit_token": "v1", "visitor_token": "p", "user_id": "u9"},
            {"time": T0, "visit_token": "v2", "visitor_token": "q", "user_id": "u9"},
        ],
    )
    assert reached(data_dir, query("A", "B", unit="user")) == [1, 1]
    assert reached(data_dir, query("A", "B")) == [1, 0]


@pytest.mark.parametrize("engine", ENGINES)
def test_range_selects_the_first_steps_time(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows("events", events_of("u1", "A0 B50") + events_of("u2", "A30 B40"))
    q = query("A", "B", start=T0 + 20 * MIN, end=T0 + 45 * MIN)
    assert reached(data_dir, q, engine) == [1, 1]  # u2 only
    q = query("A", "B", start=T0, end=T0 + 10 * MIN)
    assert reached(data_dir, q, engine) == [1, 1]  # u1: B50 falls after --to, within the window


def test_range_without_partitions_is_no_data(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", events_of("u", "A0 B5"))
    with pytest.raises(NoDataError):
        funnel(data_dir, query("A", "B", start=T0 + timedelta(days=30)))


def test_missing_events_table_is_no_data(data_dir: Path) -> None:
    with pytest.raises(NoDataError):
        funnel(data_dir, query("A", "B"))


def test_empty_result_has_zero_rows_per_step(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", events_of("u", "X0"))
    frame = funnel(data_dir, query("A", "B"))
    assert frame["reached"].to_list() == [0, 0]
    assert frame["conv_total"].to_list() == [None, None]


def test_output_columns_and_rates(data_dir: Path, write_rows: Callable[..., None]) -> None:
    rows = []
    for i in range(4):
        rows += events_of(f"u{i}", "A0 B10" if i < 3 else "A0")
    rows += events_of("u9", "A0 B5 C15")
    write_rows("events", rows)
    frame = funnel(data_dir, query("A", "B", "C"))
    assert frame.columns == [
        "step",
        "name",
        "reached",
        "dropoff",
        "conv_total",
        "conv_step",
        "median_seconds",
        "p90_seconds",
    ]
    assert frame["name"].to_list() == ["A", "B", "C"]
    assert frame["reached"].to_list() == [5, 4, 1]
    assert frame["dropoff"].to_list() == [0, 1, 3]
    assert frame["conv_total"].to_list() == [1.0, 0.8, 0.2]
    assert frame["conv_step"].to_list() == [1.0, 0.8, 0.25]
    # step 2 times: 600, 600, 600, 300 s -> median 600, p90 interpolated = 600
    # (sorted 300, 600, 600, 600: position 0.9 * 3 = 2.7 -> 600)
    assert frame["median_seconds"].to_list() == [None, 600.0, 600.0]
    assert frame["p90_seconds"].to_list()[1] == 600.0


def test_timings_are_interpolated_quantiles(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    rows = []
    for i, gap in enumerate((1, 2, 3, 4)):
        rows += events_of(f"u{i}", f"A0 B{gap}")
    write_rows("events", rows)
    frame = funnel(data_dir, query("A", "B"))
    assert frame["median_seconds"][1] == pytest.approx(150.0)  # between 120 and 180
    assert frame["p90_seconds"][1] == pytest.approx(60 * (3 + 0.7))  # 3.7 minutes


def test_timings_are_null_under_any_order(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows("events", events_of("u", "A0 B10"))
    frame = funnel(data_dir, query("A", "B", order="any"))
    assert frame["median_seconds"].to_list() == [None, None]
    assert frame["p90_seconds"].to_list() == [None, None]


def test_timings_come_from_the_earliest_attempt_at_the_level(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", events_of("u", "A0 A5 B20"))
    frame = funnel(data_dir, query("A", "B"))
    assert frame["median_seconds"][1] == 20 * 60.0


@pytest.mark.parametrize("engine", ENGINES)
def test_step_filters_on_properties_and_visit_fields(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows(
        "events",
        events_of("u1", "A0 B5", properties=json.dumps({"total": 12}), visit_token="v1")
        + events_of("u2", "A0 B5", properties=json.dumps({"total": 8}), visit_token="v2"),
    )
    write_rows(
        "visits",
        [
            {"visit_token": "v1", "visitor_token": "u1", "started_at": T0, "utm_source": "mail"},
            {"visit_token": "v2", "visitor_token": "u2", "started_at": T0, "utm_source": "ads"},
        ],
    )
    assert reached(data_dir, query("A", "B total>=10"), engine) == [2, 1]
    assert reached(data_dir, query("A visit.utm_source=ads", "B"), engine) == [1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_breakdown_with_limit_and_other(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    sources = {"s1": ["A0 B5"] * 3, "s2": ["A0 B5", "A0"], "s3": ["A0"], "s4": ["A0 B1"]}
    rows, visits = [], []
    for source, specs in sources.items():
        for i, spec in enumerate(specs):
            unit = f"{source}-{i}"
            rows += events_of(unit, spec)
            visits.append(
                {
                    "visit_token": f"visit-{unit}",
                    "visitor_token": unit,
                    "started_at": T0,
                    "utm_source": source,
                }
            )
    write_rows("events", rows)
    write_rows("visits", visits)
    q = query("A", "B", breakdown="visit.utm_source", breakdown_limit=2)
    frame = funnel(data_dir, q, engine)
    table = [(r["breakdown"], r["step"], r["reached"]) for r in frame.iter_rows(named=True)]
    assert table == [
        ("s1", 1, 3),
        ("s1", 2, 3),
        ("s2", 1, 2),
        ("s2", 2, 1),
        ("(other)", 1, 2),
        ("(other)", 2, 1),
    ]
    assert frame.filter(frame["breakdown"] == "(other)")["conv_total"].to_list() == [1.0, 0.5]


@pytest.mark.parametrize("engine", ENGINES)
def test_breakdown_takes_the_value_at_the_first_step_of_the_chosen_attempt(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    rows = events_of("u", "A0 A50 B70")
    rows[0]["properties"] = json.dumps({"plan": "free"})
    rows[1]["properties"] = json.dumps({"plan": "pro"})
    write_rows("events", rows)
    frame = funnel(data_dir, query("A", "B", breakdown="plan"), engine)
    assert frame["breakdown"].to_list() == ["pro", "pro"]


@pytest.mark.parametrize("engine", ENGINES)
def test_breakdown_of_simultaneous_first_steps_is_the_lowest_event_ids(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    rows = events_of("u", "A0 A0 B10")
    rows[0]["event_id"], rows[1]["event_id"] = "u-5", "u-1"  # the second A sorts first
    rows[0]["properties"] = json.dumps({"plan": "free"})
    rows[1]["properties"] = json.dumps({"plan": "pro"})
    write_rows("events", rows)
    frame = funnel(data_dir, query("A", "B", breakdown="plan"), engine)
    assert frame["breakdown"].to_list() == ["pro", "pro"]
    assert frame["reached"].to_list() == [1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_dropped_at_lists_units_that_stopped(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows(
        "events",
        events_of("u1", "A0 B10", user_id="x1")
        + events_of("u2", "A0 B10 C20")
        + events_of("u3", "A0 B30"),
    )
    table = dropped_at(data_dir, query("A", "B", "C"), 2, engine)
    assert table.column_names == ["visitor_token", "visit_token", "user_id", "reached_at"]
    assert table.to_pylist() == [
        {
            "visitor_token": "u1",
            "visit_token": "visit-u1",
            "user_id": "x1",
            "reached_at": T0 + 10 * MIN,
        },
        {
            "visitor_token": "u3",
            "visit_token": "visit-u3",
            "user_id": None,
            "reached_at": T0 + 30 * MIN,
        },
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_strict_dropped_at_leaves_out_chains_an_exclusion_broke(
    data_dir: Path, write_rows: Callable[..., None], engine: str
) -> None:
    write_rows(
        "events",
        events_of("u1", "A0 B10 X15 C20", user_id="x1")
        + events_of("u2", "A0 B10 C20")
        + events_of("u3", "A0 E5 B10")
        + events_of("u4", "A0 A3 E4 B10"),
    )
    q = query("A", "B", "C", order="strict", exclude=tuple(parse_steps(["E"])))
    # u3 is left out (E broke its chain); u4's first attempt (A0, broken by A3) is chosen
    assert reached(data_dir, q, engine) == [3, 2, 1]
    rows = dropped_at(data_dir, q, 2, engine).to_pylist()
    assert [(r["visitor_token"], r["reached_at"]) for r in rows] == [("u1", T0 + 10 * MIN)]
    rows = dropped_at(data_dir, q, 1, engine).to_pylist()
    assert [(r["visitor_token"], r["reached_at"]) for r in rows] == [("u4", T0)]


def test_dropped_at_must_be_a_step_before_the_last(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", events_of("u", "A0"))
    for bad in (0, 3):
        with pytest.raises(UsageError):
            dropped_at(data_dir, query("A", "B", "C"), bad)


def test_bots_are_left_out_unless_asked(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows("events", events_of("h", "A0 B5") + events_of("bot", "A0 B5"))
    write_rows(
        "visits",
        [
            {
                "visit_token": "visit-h",
                "visitor_token": "h",
                "started_at": T0,
                "device_type": "Desktop",
            },
            {
                "visit_token": "visit-bot",
                "visitor_token": "bot",
                "started_at": T0,
                "device_type": "Bot",
            },
        ],
    )
    assert reached(data_dir, query("A", "B")) == [1, 1]
    assert reached(data_dir, query("A", "B", include_bots=True)) == [2, 2]


@pytest.mark.parametrize(
    "options",
    [
        {"order": "sideways"},
        {"unit": "household"},
        {"window_from": "last"},
        {"order": "any", "window_from": "prior"},
        {"window": timedelta(0)},
        {"breakdown_limit": 0},
        {"breakdown": "visit.password"},
        {"breakdown": "bad key!"},
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any], data_dir: Path) -> None:
    with pytest.raises(UsageError):
        funnel(data_dir, query("A", "B", **options))


@pytest.mark.parametrize("count", [1, 21])
def test_two_to_twenty_steps(count: int, data_dir: Path) -> None:
    with pytest.raises(UsageError):
        funnel(data_dir, query(*["A"] * count))


def test_twenty_steps_work(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows("events", events_of("u", " ".join(f"A{i}" for i in range(20))))
    assert reached(data_dir, query(*["A"] * 20)) == [1] * 20
    assert reached(data_dir, query(*["A"] * 20, order="strict")) == [1] * 20


# --- property: the engine agrees with an exhaustive reference on random logs -------------------

VISITS = {"v0": ("p", "u1"), "v1": ("p", None), "v2": ("q", "u1")}
MODES = [
    ("ordered", "first", "auto"),
    ("ordered", "first", "match"),
    ("ordered", "prior", "auto"),
    ("strict", "first", "auto"),
    ("strict", "first", "match"),
    ("strict", "prior", "auto"),
    ("strict", "prior", "match"),
    ("any", "first", "auto"),
]


@st.composite
def random_logs(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(1, 9))
    ids = draw(st.permutations(range(size)))
    events = []
    for i in range(size):
        visit = draw(st.sampled_from(sorted(VISITS)))
        events.append(
            {
                "id": f"e{ids[i]:02d}",
                "visit": visit,
                "visitor": VISITS[visit][0],
                "user": VISITS[visit][1],
                "name": draw(st.sampled_from("ABCXE")),
                "t": draw(st.integers(0, 150)),
                "plan": draw(st.sampled_from([None, "x", "y"])),
            }
        )
    exclude = draw(st.sampled_from([None, "E"]))
    alphabet = "ABC" if exclude else "ABC*"
    steps = draw(st.lists(st.sampled_from(alphabet), min_size=2, max_size=3))
    lo = draw(st.sampled_from([None, 0, 20]))
    hi = draw(st.sampled_from([None, 60, 100]))
    return {
        "events": events,
        "steps": steps,
        "exclude": exclude,
        "window": draw(st.sampled_from([30, 60])),
        "unit": draw(st.sampled_from(["visitor", "visit", "user", "session"])),
        "lo": lo,
        "hi": hi,
    }


def _engine_groups(frame: Any) -> dict[Any, dict[str, list[Any]]]:
    out: dict[Any, dict[str, list[Any]]] = {}
    for row in frame.iter_rows(named=True):
        group = out.setdefault(row["breakdown"], {"reached": [], "median": []})
        group["reached"].append(row["reached"])
        group["median"].append(row["median_seconds"])
    return out


@settings(
    max_examples=int(os.environ.get("TRAIL_FUNNEL_EXAMPLES", "30")),  # more: set it higher
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(log=random_logs())
def test_engine_matches_the_reference(log: dict[str, Any], tmp_path_factory: Any) -> None:
    from trailcli.store import tables

    data_dir = tmp_path_factory.mktemp("funnel")
    rows = [
        {
            "event_id": e["id"],
            "visit_token": e["visit"],
            "visitor_token": e["visitor"],
            "user_id": e["user"],
            "name": e["name"],
            "properties": json.dumps({"plan": e["plan"]}) if e["plan"] else None,
            "time": T0 + e["t"] * MIN,
            "received_at": T0,
        }
        for e in log["events"]
    ]
    tables.bulk_write(data_dir, "events", tables.to_arrow("events", rows))
    for order, window_from, engine in MODES:
        q = query(
            *log["steps"],
            unit=log["unit"],
            order=order,
            window_from=window_from,
            window=log["window"] * MIN,
            exclude=tuple(parse_steps([log["exclude"]])) if log["exclude"] else (),
            breakdown="plan",
            start=None if log["lo"] is None else T0 + log["lo"] * MIN,
            end=None if log["hi"] is None else T0 + log["hi"] * MIN,
        )
        expected = reference.funnel(
            log["events"],
            log["steps"],
            {"visitor": "visitor", "visit": "visit", "user": "user", "session": "session"}[
                log["unit"]
            ],
            order,
            log["window"],
            window_from == "prior",
            log["exclude"],
            log["lo"],
            log["hi"],
        )
        got = _engine_groups(funnel(data_dir, q, engine))
        assert got == expected, (order, window_from, engine)
    _check_counts_alone(data_dir, log)


def _check_counts_alone(data_dir: Path, log: dict[str, Any]) -> None:
    """The ordered funnel without --exclude or --breakdown (the lean fast path: no event ids
    read) against the reference with every event in one breakdown group."""
    q = query(
        *log["steps"],
        unit=log["unit"],
        window=log["window"] * MIN,
        start=None if log["lo"] is None else T0 + log["lo"] * MIN,
        end=None if log["hi"] is None else T0 + log["hi"] * MIN,
    )
    expected = reference.funnel(
        [{**e, "plan": None} for e in log["events"]],
        log["steps"],
        log["unit"],
        "ordered",
        log["window"],
        False,
        None,
        log["lo"],
        log["hi"],
    )
    nothing = {"reached": [0] * len(log["steps"]), "median": [None] * len(log["steps"])}
    frame = funnel(data_dir, q)
    got = {"reached": frame["reached"].to_list(), "median": frame["median_seconds"].to_list()}
    assert got == expected.get(None, nothing)


def test_matcher_reads_units_in_slices(
    data_dir: Path, write_rows: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trailcli.reports import funnel as funnel_module

    rows = []
    for i, spec in enumerate(["A0 B5 C9", "A0 X1 B2", "B0 A1 B2 C3", "A0", "A0 B1"] * 3):
        rows += events_of(f"u{i:02d}", spec)
    write_rows("events", rows)
    q = query("A", "B", "C", order="strict")
    whole = reached(data_dir, q, "match")
    monkeypatch.setattr(funnel_module, "CHUNK_ROWS", 2)
    assert reached(data_dir, q, "match") == reached(data_dir, q) == whole == [15, 9, 6]
