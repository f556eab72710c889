"""Step expressions: parsing, errors that point at the bad token, and the SQL they become."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest

from trailcli.errors import UsageError
from trailcli.reports.steps import Params, breakdown_sql, parse_step, step_sql


def test_name_only() -> None:
    step = parse_step("signup")
    assert step.name.value == "signup" and step.filters == ()


def test_filters_with_every_operator() -> None:
    step = parse_step("buy a=1 b!=2 c>3 d>=4 e<5 f<=6")
    assert [(f.key, f.op, f.value.value) for f in step.filters] == [
        ("a", "=", "1"),
        ("b", "!=", "2"),
        ("c", ">", "3"),
        ("d", ">=", "4"),
        ("e", "<", "5"),
        ("f", "<=", "6"),
    ]


@pytest.mark.parametrize("text", ["buy total >= 10", "buy total>= 10", "buy total >=10"])
def test_operator_may_stand_apart(text: str) -> None:
    (flt,) = parse_step(text).filters
    assert (flt.key, flt.op, flt.value.value) == ("total", ">=", "10")


def test_quotes_group_spaces_and_make_text_literal() -> None:
    step = parse_step("\"sign up\" title='Hello *world' page=/a/*")
    assert step.name.value == "sign up"
    title, page = step.filters
    assert title.value.value == "Hello *world" and not title.value.is_glob
    assert page.value.is_glob


def test_visit_key() -> None:
    (flt,) = parse_step("buy visit.utm_source=newsletter").filters
    assert flt.visit_column == "utm_source"
    assert parse_step("buy visit.utm_source=newsletter").needs_visit


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("buy total~3", "total~3"),
        ("buy total", "total"),
        ("buy visit.nope=1", "visit.nope=1"),
        ("buy a=", "a="),
        ("buy >3", ">3"),
        ("buy total>1*", "total>1*"),
        ("page=/x", "page=/x"),
        ("buy 'open", "'open"),
        ("buy a=1 9x=2", "9x=2"),
    ],
)
def test_bad_step_points_at_token(text: str, bad: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_step(text)
    lines = info.value.message.splitlines()
    assert lines[1].strip() == text
    start = text.index(bad)
    caret = lines[2][2:]
    assert caret.index("^") == start
    assert caret.count("^") == len(bad)


def test_empty_step_is_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_step("   ")


def _match(step_text: str, events: list[dict[str, Any]]) -> list[int]:
    """Indices of `events` the step's SQL predicate selects."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE ev (i INT, name VARCHAR, properties VARCHAR, page VARCHAR, "
        "utm_source VARCHAR, screen_width INT)"
    )
    for i, event in enumerate(events):
        con.execute(
            "INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?)",
            [
                i,
                event.get("name", "x"),
                json.dumps(event.get("props", {})),
                event.get("page"),
                event.get("utm_source"),
                event.get("screen_width"),
            ],
        )
    params = Params()
    where = step_sql(parse_step(step_text), params, event="e", visit="e")
    rows = con.execute(f"SELECT i FROM ev AS e WHERE {where} ORDER BY i", params.values)
    return [r[0] for r in rows.fetchall()]


def test_name_glob_and_literal() -> None:
    events = [{"name": "checkout_start"}, {"name": "checkout_end"}, {"name": "check"}]
    assert _match("checkout_*", events) == [0, 1]
    assert _match("check", events) == [2]
    assert _match("'checkout_*'", [*events, {"name": "checkout_*"}]) == [3]


def test_glob_escapes_like_wildcards() -> None:
    events = [{"props": {"p": "a_b"}}, {"props": {"p": "axb"}}, {"props": {"p": "a%b"}}]
    assert _match("x p=a_*", events) == [0]
    assert _match("x p=a%b", events) == [2]


def test_numbers_compare_as_numbers_when_both_sides_are_numeric() -> None:
    events = [
        {"props": {"total": 9}},
        {"props": {"total": 10}},
        {"props": {"total": "100"}},
        {"props": {"total": "abc"}},
        {"props": {}},
    ]
    assert _match("x total>=10", events) == [1, 2]
    assert _match("x total=10.0", events) == [1]
    assert _match("x total<10", events) == [0]
    # text compares as text; a number never orders text, and a missing key never compares
    assert _match("x total=abc", events) == [3]
    assert _match("x total>=a", events) == [3]


def test_not_equal_holds_when_key_is_absent() -> None:
    events = [{"props": {"plan": "pro"}}, {"props": {"plan": "free"}}, {"props": {}}]
    assert _match("x plan!=pro", events) == [1, 2]
    assert _match("x plan!=p*", events) == [1, 2]


def test_nested_property_and_page_property() -> None:
    events = [
        {"props": {"cart": {"total": 5}}},
        {"name": "$view", "props": {"page": "/product/1", "url": "http://h/product/1"}},
        {"props": {"page": "/product/2"}},
        {"name": "$view", "props": {"page": "/about"}},
    ]
    assert _match("x cart.total=5", events) == [0]
    assert _match("* page=/product/*", events) == [1, 2]


def test_visit_columns_string_and_numeric() -> None:
    events = [
        {"utm_source": "newsletter", "screen_width": 1280},
        {"utm_source": "google", "screen_width": 375},
    ]
    assert _match("x visit.utm_source=news*", events) == [0]
    assert _match("x visit.screen_width>=1000", events) == [0]


def test_values_are_bound_never_formatted() -> None:
    params = Params()
    sql = step_sql(parse_step('"x\'; DROP TABLE ev; --" a="\'; --"'), params)
    assert "DROP" not in sql and "--" not in sql
    assert "x'; DROP TABLE ev; --" in params.values.values()


def test_breakdown_sql_rejects_unknown_visit_field() -> None:
    with pytest.raises(UsageError):
        breakdown_sql("visit.password", Params())
    assert "v.device_type" in breakdown_sql("visit.device_type", Params())
