"""`trail report paths` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_reports_paths import REFERENCE, view_rows


@pytest.fixture
def site(data_dir: Path, write_rows) -> Path:
    write_rows("events", view_rows(REFERENCE))
    return data_dir


def test_transitions_json(run_cli, site: Path) -> None:
    result = run_cli(
        "report", "paths", "--data-dir", site, "-f", "json", "--from-page", "/", "--steps", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"step": 1, "from": "/", "to": "/pricing", "sessions": 2, "visitors": 2},
        {"step": 1, "from": "/", "to": "/docs", "sessions": 1, "visitors": 1},
    ]


def test_sequences_csv_encodes_lists(run_cli, site: Path) -> None:
    result = run_cli(
        "report",
        "paths",
        "--data-dir",
        site,
        "-f",
        "csv",
        "--sequences",
        "--top",
        "1",
        "--steps",
        "1",
        "--clean",
        "/p*=/P",
    )
    assert result.stdout.splitlines() == [
        "rank,sequence,sessions,visitors",
        '1,"[""/"",""/P""]",2,2',
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--from-page", "/", "--to-page", "/x"],
        ["--steps", "0"],
        ["--clean", "nonsense"],
        ["--session-timeout", "0s"],
    ],
)
def test_usage_errors(run_cli, site: Path, args) -> None:
    result = run_cli("report", "paths", "--data-dir", site, *args)
    assert result.exit_code == 2 and result.stdout == ""


def test_missing_data_exits_3(run_cli, tmp_path: Path) -> None:
    assert run_cli("report", "paths", "--data-dir", tmp_path / "x").exit_code == 3
