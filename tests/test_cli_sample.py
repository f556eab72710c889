"""`trail sample` on the command line: options, output streams and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trailcli.store import tables


def test_sample_writes_tables_summary_and_ground_truth(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ["sample", "--out", out, "--seed", "4", "--end", "2026-05-01", "--days", "2"]
    result = run_cli(*args, "--visitors", "200", "--format", "json")
    assert result.exit_code == 0, result.stderr
    summary = {r["table"]: r["rows"] for r in json.loads(result.stdout)}
    assert set(summary) == {"visits", "events", "presence", "identities"}
    assert all(n > 0 for n in summary.values())
    assert "day 2/2" in result.stderr  # progress goes to stderr, never stdout
    doc = json.loads((out / "ground_truth.json").read_text())
    assert doc["generator"]["end"] == "2026-05-01T00:00:00Z"
    assert doc["generator"]["data_dir"] == str(out)
    assert doc["funnel"]["command"].startswith(f"trail report funnel --data-dir {out} --step")
    assert doc["peak"]["from"] == "2026-04-29T00:00:00Z"


def test_data_dir_env_and_tables_subset(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "env"
    result = run_cli(
        "sample", "--days", "1", "--visitors", "50", "--tables", "presence",
        env={"TRAIL_DATA_DIR": str(out)},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert tables.table_exists(out, "presence")
    assert not tables.table_exists(out, "events")


def test_default_end_is_the_last_utc_midnight(run_cli: Any, tmp_path: Path) -> None:
    from trailcli.sample.generator import last_midnight

    out = tmp_path / "d"
    assert run_cli("sample", "--data-dir", out, "--days", "1", "--visitors", "20").exit_code == 0
    doc = json.loads((out / "ground_truth.json").read_text())
    assert doc["generator"]["end"] == last_midnight().isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "args",
    [
        ["--visitors", "10", "--events", "100"],
        ["--visitors", "10", "--peak-online", "5"],
        ["--days", "0"],
        ["--visitors", "-3"],
        ["--tables", "visits,bogus"],
        ["--end", "next tuesday"],
        ["--days", "many"],
    ],
)
def test_bad_options_exit_2(run_cli: Any, tmp_path: Path, args: list[str]) -> None:
    result = run_cli("sample", "--data-dir", tmp_path / "bad", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert not (tmp_path / "bad").exists()


def test_existing_tables_are_left_alone(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "twice"
    assert run_cli("sample", "--out", out, "--days", "1", "--visitors", "30").exit_code == 0
    before = (out / "ground_truth.json").read_text()
    result = run_cli("sample", "--out", out, "--days", "1", "--visitors", "30", "--seed", "9")
    assert result.exit_code == 2
    assert "already holds" in result.stderr
    assert (out / "ground_truth.json").read_text() == before


SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def _run_truth_command(run_cli: Any, command: str) -> Any:
    """Run a ground-truth command line against the committed sample; its JSON output."""
    import shlex

    args = shlex.split(command)[1:]
    args[args.index("--data-dir") + 1] = str(SAMPLE)
    result = run_cli(*args)
    assert result.exit_code == 0, (command, result.stderr)
    return json.loads(result.stdout)


def test_committed_sample_matches_the_generator(tmp_path: Path) -> None:
    """sample_data is what its README's command produces with the current generator."""
    from datetime import UTC, datetime

    from trailcli.sample.generator import SampleOptions, generate

    out = tmp_path / "again"
    end = datetime(2026, 11, 1, tzinfo=UTC)
    generate(SampleOptions(data_dir=out, seed=1, end=end, days=2, visitors=800))
    fresh = json.loads((out / "ground_truth.json").read_text())
    committed = json.loads((SAMPLE / "ground_truth.json").read_text())
    assert json.dumps(fresh).replace(str(out), "sample_data") == json.dumps(committed)


def test_the_commands_in_the_sample_ground_truth_reproduce_its_figures(run_cli: Any) -> None:
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    funnel = _run_truth_command(run_cli, truth["funnel"]["command"])
    assert [row["reached"] for row in funnel] == truth["funnel"]["reached"]
    for instant in truth["online"]:
        rows = _run_truth_command(run_cli, instant["command"])
        persons = sorted(row["user_id"] or row["visitor_token"] for row in rows)
        assert persons == instant["persons"], instant["label"]
    buckets = _run_truth_command(run_cli, truth["peak"]["command"])
    peak = max(b["peak_online"] for b in buckets)
    first_at = min(b["peak_at"] for b in buckets if b["peak_online"] == peak)
    assert peak == truth["peak"]["peak_online"]
    assert first_at.replace("+00:00", "Z") == truth["peak"]["peak_at"]
    sources = _run_truth_command(run_cli, truth["visits_by_source"]["command"])
    assert {row["source"]: row["visits"] for row in sources} == truth["visits_by_source"]["visits"]


def test_progress_counts_what_each_calendar_day_holds(run_cli: Any, tmp_path: Path) -> None:
    """Each progress line reports the visits and (distinct) events stored for that UTC day,
    not the cohort of visitors first seen that day."""
    import re

    out = tmp_path / "days"
    args = ["sample", "--out", out, "--end", "2026-05-01", "--days", "4", "--visitors", "300"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    progress = {
        m.group(1): (int(m.group(2).replace(",", "")), int(m.group(3).replace(",", "")))
        for m in re.finditer(
            r"^(\d{4}-\d{2}-\d{2}) \(day \d/4\): ([\d,]+) visits, ([\d,]+) events$",
            result.stderr,
            re.MULTILINE,
        )
    }
    assert list(progress) == ["2026-04-27", "2026-04-28", "2026-04-29", "2026-04-30"]
    query = (
        "SELECT d, sum(v) AS visits, sum(e) AS events FROM ("
        "SELECT strftime(started_at, '%Y-%m-%d') AS d, 1 AS v, 0 AS e FROM visits UNION ALL "
        "SELECT strftime(time, '%Y-%m-%d'), 0, 1 FROM events) GROUP BY d ORDER BY d"
    )
    stored = json.loads(run_cli("sql", query, "--data-dir", out, "-f", "json").stdout)
    assert {r["d"]: (r["visits"], r["events"]) for r in stored} == progress
