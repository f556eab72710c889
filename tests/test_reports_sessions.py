"""Sessionization: the gap boundary, (time, event_id) order, session attributes, the sql view."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trailcli.errors import UsageError
from trailcli.reports.sessions import use_timeout
from trailcli.store import views

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _event(i: int, at: timedelta, visitor: str = "v1", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": extra.pop("event_id", f"e{i:03d}"),
        "visit_token": extra.pop("visit_token", f"visit-{visitor}"),
        "visitor_token": visitor,
        "name": extra.pop("name", "click"),
        "time": T0 + at,
        "received_at": T0 + at,
        **extra,
    }


def _sessions(data_dir: Path, timeout: timedelta | None = None) -> list[dict[str, Any]]:
    con = views.connect(data_dir)
    use_timeout(con, timeout)
    rel = con.execute("SELECT * FROM sessions ORDER BY visitor_token, started_at")
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


M = timedelta(minutes=1)
S = timedelta(seconds=1)


def test_gaps_just_under_the_timeout_stay_one_session(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", [_event(0, 0 * S), _event(1, 29 * M + 59 * S), _event(2, 59 * M + 58 * S)])
    (only,) = _sessions(data_dir)
    assert only["events"] == 3
    assert only["ended_at"] - only["started_at"] == 59 * M + 58 * S


def test_a_gap_of_exactly_the_timeout_starts_a_new_session(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", [_event(0, 0 * S), _event(1, 30 * M)])
    first, second = _sessions(data_dir)
    assert (first["events"], second["events"]) == (1, 1)
    assert first["session_id"] != second["session_id"]
    assert second["started_at"] == T0 + 30 * M


def test_timeout_is_configurable(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows("events", [_event(0, 0 * M), _event(1, 20 * M), _event(2, 60 * M)])
    assert len(_sessions(data_dir)) == 2
    assert len(_sessions(data_dir, timeout=10 * M)) == 3
    assert len(_sessions(data_dir, timeout=2 * timedelta(hours=1))) == 1


def test_nonpositive_timeout_is_a_usage_error(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows("events", [_event(0, 0 * M)])
    with pytest.raises(UsageError):
        _sessions(data_dir, timeout=timedelta(0))


def test_visitors_are_sessionized_apart(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows("events", [_event(0, 0 * M, "a"), _event(1, 5 * M, "b"), _event(2, 10 * M, "a")])
    rows = _sessions(data_dir)
    assert [(r["visitor_token"], r["events"]) for r in rows] == [("a", 2), ("b", 1)]


def test_pages_entry_exit_and_pageviews(data_dir: Path, write_rows: Callable[..., None]) -> None:
    def view(i: int, at: timedelta, page: str, **kw: Any) -> dict[str, Any]:
        return _event(i, at, name="$view", properties=json.dumps({"page": page}), **kw)

    write_rows(
        "events",
        [
            # equal times order by event_id: "e002" (/b) comes before "e003" (/c)
            view(3, 5 * M, "/c"),
            view(2, 5 * M, "/b"),
            view(1, 0 * M, "/a"),
            _event(4, 6 * M, name="signup"),
        ],
    )
    (only,) = _sessions(data_dir)
    assert (only["events"], only["pageviews"]) == (4, 3)
    assert (only["entry_page"], only["exit_page"]) == ("/a", "/c")


def test_event_id_order_decides_the_boundary_at_equal_times(
    data_dir: Path, write_rows: Callable[..., None]
) -> None:
    write_rows(
        "events",
        [
            _event(0, 0 * M, event_id="a"),
            _event(1, 40 * M, event_id="c"),
            _event(2, 40 * M, event_id="b"),
        ],
    )
    first, second = _sessions(data_dir)
    assert (first["events"], second["events"]) == (1, 2)


def test_user_is_the_first_bound_user(data_dir: Path, write_rows: Callable[..., None]) -> None:
    write_rows(
        "events",
        [_event(0, 0 * M), _event(1, 1 * M, user_id="u7"), _event(2, 2 * M, user_id="u8")],
    )
    (only,) = _sessions(data_dir)
    assert only["user_id"] == "u7"


def test_sessions_view_in_trail_sql(
    data_dir: Path, write_rows: Callable[..., None], run_cli: Callable[..., Any]
) -> None:
    write_rows("events", [_event(0, 0 * M), _event(1, 45 * M)])
    result = run_cli(
        "sql",
        "--data-dir",
        data_dir,
        "--format",
        "json",
        "SELECT count(*) AS n, CAST(sum(events) AS BIGINT) AS e FROM sessions",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 2, "e": 2}]
