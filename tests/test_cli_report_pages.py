"""`trail report pages` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_reports_paths import REFERENCE, view_rows


def test_pages_json_and_limit(run_cli, data_dir: Path, write_rows) -> None:
    write_rows("events", view_rows(REFERENCE))
    result = run_cli("report", "pages", "--data-dir", data_dir, "-f", "json", "--limit", "2")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"page": "/", "views": 3, "visitors": 3, "entries": 3, "exits": 0, "exit_rate": 0.0},
        {"page": "/pricing", "views": 2, "visitors": 2, "entries": 0, "exits": 1, "exit_rate": 0.5},
    ]


def test_bad_by_and_missing_data(run_cli, data_dir: Path, write_rows, tmp_path: Path) -> None:
    write_rows("events", view_rows(REFERENCE))
    bad = run_cli("report", "pages", "--data-dir", data_dir, "--by", "url")
    assert bad.exit_code == 2 and "page, title or day" in bad.stderr
    assert run_cli("report", "pages", "--data-dir", tmp_path / "none").exit_code == 3
