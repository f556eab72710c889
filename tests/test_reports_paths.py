"""Paths: the reference's example sessions give exactly the documented transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trailcli.errors import UsageError
from trailcli.reports.paths import PathsQuery, clean_rules, parse_clean_rule, paths_report

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def view_rows(sessions: list[tuple[str, list[str]]], device: str | None = None) -> list[dict]:
    """$view events: each (visitor, pages) is one session an hour after the previous one."""
    rows = []
    for i, (visitor, pages) in enumerate(sessions):
        for j, page in enumerate(pages):
            rows.append(
                {
                    "event_id": f"e{i:03d}{j:03d}",
                    "visit_token": f"v{i}",
                    "visitor_token": visitor,
                    "name": "$view",
                    "properties": {"page": page, "title": f"Title {page}"},
                    "time": T0 + timedelta(hours=i, minutes=j),
                }
            )
    return rows


REFERENCE = [("a", ["/", "/pricing", "/signup"]), ("b", ["/", "/docs"]), ("c", ["/", "/pricing"])]


@pytest.fixture
def reference(data_dir: Path, write_rows) -> Path:
    write_rows("events", view_rows(REFERENCE))
    return data_dir


def _edges(table) -> list[tuple]:
    return [
        (r["step"], r["from"], r["to"], r["sessions"], r["visitors"]) for r in table.to_pylist()
    ]


def test_reference_transitions(reference: Path) -> None:
    assert _edges(paths_report(reference, PathsQuery())) == [
        (1, "/", "/pricing", 2, 2),
        (1, "/", "/docs", 1, 1),
        (2, "/docs", "(exit)", 1, 1),
        (2, "/pricing", "(exit)", 1, 1),
        (2, "/pricing", "/signup", 1, 1),
        (3, "/signup", "(exit)", 1, 1),
    ]


def test_reference_sequences(reference: Path) -> None:
    rows = paths_report(reference, PathsQuery(sequences=True)).to_pylist()
    assert [(r["rank"], r["sequence"], r["sessions"]) for r in rows] == [
        (1, ["/", "/docs"], 1),
        (2, ["/", "/pricing"], 1),
        (3, ["/", "/pricing", "/signup"], 1),
    ]


def test_from_page_steps_and_top(reference: Path) -> None:
    got = _edges(paths_report(reference, PathsQuery(from_page="/pricing", steps=1)))
    assert got == [(1, "/pricing", "(exit)", 1, 1), (1, "/pricing", "/signup", 1, 1)]
    top1 = _edges(paths_report(reference, PathsQuery(top=1, steps=2)))
    assert top1 == [(1, "/", "/pricing", 2, 2), (2, "/docs", "(exit)", 1, 1)]


def test_to_page_walks_back_to_entry(reference: Path) -> None:
    assert _edges(paths_report(reference, PathsQuery(to_page="/pricing"))) == [
        (1, "/", "/pricing", 2, 2),
        (2, "(entry)", "/", 2, 2),
    ]
    seq = paths_report(reference, PathsQuery(to_page="/signup", sequences=True)).to_pylist()
    assert [r["sequence"] for r in seq] == [["/", "/pricing", "/signup"]]


def test_repeats_collapse_sessions_split_and_cleaning(data_dir: Path, write_rows) -> None:
    rows = view_rows([("a", ["/users/1", "/users/1", "/users/2", "/users/2/edit"])])
    # a second session of the same visitor, 45 minutes after the first one ends
    rows += [
        {
            "event_id": "z1",
            "visit_token": "v9",
            "visitor_token": "a",
            "name": "$view",
            "properties": {"url": "https://shop.example.com/users/3?x=1"},
            "time": T0 + timedelta(minutes=48),
        },
    ]
    write_rows("events", rows)
    plain = _edges(paths_report(data_dir, PathsQuery()))
    assert plain == [
        (1, "/users/1", "/users/2", 1, 1),
        (1, "/users/3", "(exit)", 1, 1),
        (2, "/users/2", "/users/2/edit", 1, 1),
        (3, "/users/2/edit", "(exit)", 1, 1),
    ]
    rules = clean_rules(["/users/*=/users/:id", "/users/**=/users/:id/…"])
    cleaned = _edges(paths_report(data_dir, PathsQuery(clean=rules)))
    assert cleaned == [
        (1, "/users/:id", "(exit)", 1, 1),
        (1, "/users/:id", "/users/:id/…", 1, 1),
        (2, "/users/:id/…", "(exit)", 1, 1),
    ]
    globbed = _edges(paths_report(data_dir, PathsQuery(from_page="/users/2*", steps=1)))
    assert globbed == [(1, "/users/2", "/users/2/edit", 1, 1)]


def test_bots_left_out_unless_asked(data_dir: Path, write_rows) -> None:
    write_rows("events", view_rows([("a", ["/", "/x"]), ("bot", ["/", "/y"])]))
    write_rows(
        "visits",
        [{"visit_token": "v1", "visitor_token": "bot", "device_type": "Bot", "started_at": T0}],
    )
    assert {e[2] for e in _edges(paths_report(data_dir, PathsQuery(steps=1)))} == {"/x"}
    with_bots = _edges(paths_report(data_dir, PathsQuery(steps=1, include_bots=True)))
    assert {e[2] for e in with_bots} == {"/x", "/y"}


@pytest.mark.parametrize("text", ["/users/*", "=x", "/a=", ""])
def test_bad_cleaning_rules(text: str) -> None:
    with pytest.raises(UsageError):
        parse_clean_rule(text)


def test_from_and_to_together_is_a_usage_error(reference: Path) -> None:
    with pytest.raises(UsageError):
        paths_report(reference, PathsQuery(from_page="/", to_page="/x"))
