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


def _start_collector(data_dir: Path, token: str):
    """`trail collect` on a free loopback port; returns (process, base URL)."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "TRAIL_API_TOKEN": token, "TRAIL_SECRET": "s3cret-for-tests"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from trailcli.cli import main; main()",
            "collect",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for _ in range(200):
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("trail collect did not start")


@pytest.mark.timeout(60)
def test_follow_prints_an_event_posted_after_it_started(tmp_path: Path) -> None:
    """A live collector: `trail replay --follow` prints the person's new event, not others'."""
    import os
    import subprocess
    import sys
    import urllib.request

    token = "follow-read-token"
    collector, base = _start_collector(tmp_path / "live", token)
    follower = None
    try:
        follower = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from trailcli.cli import main; main()",
                "replay",
                "--visitor",
                "vis-live",
                "--follow",
                f"{base}/faye",
                "--token",
                token,
                "--format",
                "ndjson",
                "--data-dir",
                str(tmp_path / "empty"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TRAIL_API_TOKEN": ""},
        )
        assert follower.stderr is not None and follower.stdout is not None
        assert "Following" in follower.stderr.readline()
        for visitor, name in (("someone-else", "ignored"), ("vis-live", "signup")):
            body = json.dumps(
                {
                    "visit_token": f"v-{visitor}",
                    "visitor_token": visitor,
                    "events": [{"id": f"e-{visitor}", "name": name, "properties": {"plan": "pro"}}],
                }
            ).encode()
            request = urllib.request.Request(
                f"{base}/ahoy/events",
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                },
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        row = json.loads(follower.stdout.readline())
        assert (row["kind"], row["name"], row["visit_token"]) == ("event", "signup", "v-vis-live")
        assert row["detail"] == {"plan": "pro"}
    finally:
        for proc in (follower, collector):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
