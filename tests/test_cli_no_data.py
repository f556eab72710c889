"""One contract for "no data" (exit 3) across every command that reads the tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trailcli.errors import NoDataError
from trailcli.store import coverage

DAY = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
EMPTY = ("--from", "2020-01-01", "--to", "2020-01-02")
COVERED = ("--from", "2026-03-01", "--to", "2026-03-02")

# Every command that reads the tables, with the options it needs besides a range.
RANGED = {
    "report funnel": ["report", "funnel", "--step", "$view", "--step", "purchase"],
    "report referrers": ["report", "referrers"],
    "report paths": ["report", "paths"],
    "report pages": ["report", "pages"],
    "replay": ["replay", "--visitor", "A"],
}
# Presence sessions outlive the day they start in: `online` asks for rows at or before the end.
PRESENCE = {
    "online range": ["online"],
    "online timeline": ["online", "timeline", "--every", "1h"],
}
UNRANGED = {
    "online at": ["online", "--at", "2020-01-01"],
    "sql": ["sql", "SELECT count(*) AS n FROM events"],
    "compact": ["compact"],
}


@pytest.fixture
def one_day(data_dir: Path, write_rows: Callable[..., None]) -> Path:
    """One visit with two events and a presence session on 2026-03-01 (UTC)."""
    ids = {"visit_token": "v1", "visitor_token": "A"}
    write_rows("visits", [{**ids, "started_at": DAY, "landing_page": "https://x.example/"}])
    write_rows(
        "events",
        [
            {**ids, "event_id": "e1", "name": "$view", "time": DAY, "received_at": DAY,
             "properties": '{"page": "/"}'},
            {**ids, "event_id": "e2", "name": "purchase", "time": DAY + timedelta(minutes=1),
             "received_at": DAY},
        ],
    )  # fmt: skip
    write_rows(
        "presence",
        [
            {"time": DAY, "seq": 1, "node_id": "n1", "transition": "heartbeat"},
            {**ids, "time": DAY, "seq": 2, "node_id": "n1", "client_id": "c1",
             "transition": "online", "reason": "handshake"},
            {**ids, "time": DAY + timedelta(minutes=5), "seq": 3, "node_id": "n1",
             "client_id": "c1", "transition": "offline", "reason": "disconnect"},
        ],
    )  # fmt: skip
    write_rows("identities", [{**ids, "time": DAY, "user_id": "42", "source": "api"}])
    return data_dir


@pytest.mark.parametrize("command", sorted(RANGED))
def test_every_command_exits_3_on_a_range_without_data(
    one_day: Path, run_cli: Callable[..., Any], command: str
) -> None:
    args = RANGED[command]
    result = run_cli(*args, "--data-dir", one_day, *EMPTY, "--format", "json")
    assert result.exit_code == 3, (command, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "rows between 2020-01-01T00:00:00+00:00 and 2020-01-02T00:00:00+00:00" in result.stderr
    assert "the data covers 2026-03-01 (UTC)" in result.stderr
    assert "Hint: widen --from/--to" in result.stderr
    _answers_over_the_covered_day(one_day, run_cli, args)


@pytest.mark.parametrize("command", sorted(PRESENCE))
def test_online_exits_3_before_the_presence_log(
    one_day: Path, run_cli: Callable[..., Any], command: str
) -> None:
    args = PRESENCE[command]
    result = run_cli(*args, "--data-dir", one_day, *EMPTY, "--format", "json")
    assert result.exit_code == 3, (command, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "No presence rows at or before 2020-01-02T00:00:00+00:00" in result.stderr
    assert "the data covers 2026-03-01 (UTC)" in result.stderr
    _answers_over_the_covered_day(one_day, run_cli, args)


def _answers_over_the_covered_day(one_day: Path, run_cli: Callable[..., Any], args) -> None:
    # the same command over the day that has data answers (exit 0)
    covered = run_cli(*args, "--data-dir", one_day, *COVERED, "--format", "json")
    assert covered.exit_code == 0, (args, covered.stderr)
    assert covered.stdout.startswith("[")


@pytest.mark.parametrize("command", sorted({**RANGED, **PRESENCE, **UNRANGED}))
def test_every_command_exits_3_without_tables(
    tmp_path: Path, run_cli: Callable[..., Any], command: str
) -> None:
    args = UNRANGED.get(command) or [*{**RANGED, **PRESENCE}[command], *COVERED]
    result = run_cli(*args, "--data-dir", tmp_path / "nothing-here")
    assert result.exit_code == 3, (command, result.stdout, result.stderr)
    assert result.stderr.startswith("Error: No ") and "Hint:" in result.stderr


def test_online_at_before_the_log_exits_3(one_day: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(*UNRANGED["online at"], "--data-dir", one_day)
    assert result.exit_code == 3
    assert "No presence rows at or before 2020-01-01T00:00:00+00:00" in result.stderr


def test_an_unknown_person_in_a_covered_range_is_an_empty_answer(
    one_day: Path, run_cli: Callable[..., Any]
) -> None:
    result = run_cli("replay", "--visitor", "nobody", "--data-dir", one_day, *COVERED, "-f", "json")
    assert result.exit_code == 0 and result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC), True),
        (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC), False),
        (datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), False),  # half-open
        (datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 1, 0, 1, tzinfo=UTC), True),
        (None, datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC), True),
        (datetime(2026, 3, 1, 23, 59, tzinfo=UTC), None, True),
        (datetime(2026, 3, 2, tzinfo=UTC), None, False),
    ],
)
def test_overlap_of_a_range_with_utc_day_partitions(start, end, expected) -> None:
    assert coverage.overlaps(["2026-03-01"], start, end) is expected


def test_an_instant_at_midnight_reads_that_day(tmp_path: Path) -> None:
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    assert coverage.overlaps(["2026-03-01"], None, midnight, inclusive=True)
    with pytest.raises(NoDataError):
        coverage.require(tmp_path, {"presence": ["2026-03-01"]}, None, midnight)
