"""`trail replay` on the command line: every format, grouping by visit, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_reports_replay import log  # noqa: F401  (the literal log fixture)


def test_json_rows(run_cli, log: Path) -> None:  # noqa: F811
    result = run_cli("replay", "--visitor", "A", "--data-dir", log, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["kind"] for r in rows] == [
        "visit",
        "event",
        "online",
        "identify",
        "event",
        "offline",
        "visit",
        "event",
    ]
    assert rows[0]["time"] == "2026-03-01T09:00:00+00:00"
    assert rows[7]["detail"] == {"sku": "X1", "qty": 1, "gift": False}


def test_tz_changes_printed_times(run_cli, log: Path) -> None:  # noqa: F811
    result = run_cli(
        "replay", "--visit", "v2", "--data-dir", log, "-f", "ndjson", "--tz", "Europe/Paris"
    )
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert lines[0]["time"] == "2026-03-01T12:00:00+01:00"


def test_csv_encodes_detail_as_json(run_cli, log: Path) -> None:  # noqa: F811
    result = run_cli("replay", "--visit", "v2", "--data-dir", log, "-f", "csv")
    header, first, _ = result.stdout.splitlines()
    assert header == "time,kind,visit_token,name,detail,gap_seconds,new_session"
    assert '""source"":""Twitter""' in first


def test_table_groups_rows_by_visit(run_cli, log: Path) -> None:  # noqa: F811
    result = run_cli("replay", "--visitor", "A", "--data-dir", log)
    assert result.exit_code == 0
    out = result.stdout
    assert out.index("visit v1") < out.index("visit v2")
    assert out.count("add_to_cart") == 1 and out.index("add_to_cart") > out.index("visit v2")


def test_unknown_person_is_an_empty_list(run_cli, log: Path) -> None:  # noqa: F811
    result = run_cli("replay", "--user", "nobody", "--data-dir", log, "-f", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--user", "a", "--visitor", "b"],
        ["--visitor", "A", "--from", "yesterday-ish"],
        ["--visitor", "A", "--session-timeout", "soon"],
        ["--visitor", "A", "--follow", "http://127.0.0.1:9/faye"],
    ],
)
def test_usage_errors_exit_2(run_cli, log: Path, args) -> None:  # noqa: F811
    result = run_cli("replay", *args, "--data-dir", log, env={"TRAIL_API_TOKEN": ""})
    assert result.exit_code == 2
    assert "Error:" in result.stderr and result.stdout == ""


def test_missing_data_exits_3(run_cli, tmp_path: Path) -> None:
    result = run_cli("replay", "--visitor", "A", "--data-dir", tmp_path / "none")
    assert result.exit_code == 3
