"""`trail replay` on the command line: every format, grouping by visit, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.collector_support import BROWSER_UA
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


def _post_event(base: str, visitor: str, event_id: str, name: str) -> None:
    import urllib.request

    body = json.dumps(
        {
            "visit_token": f"v-{visitor}",
            "visitor_token": visitor,
            "events": [{"id": event_id, "name": name, "properties": {"n": event_id}}],
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/ahoy/events",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": BROWSER_UA},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


class _Lines:
    """The lines a process writes to one stream, gathered by a thread."""

    def __init__(self, stream) -> None:
        import queue
        import threading

        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.queue.put(line)

    def until(self, predicate, seconds: float = 30.0) -> str:
        """The first new line for which `predicate` holds (lines before it are kept in `seen`)."""
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except Exception:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no such line within {seconds} s; got {self.seen}")


@pytest.mark.timeout(120)
def test_follow_reconnects_when_the_collector_restarts(tmp_path: Path, monkeypatch) -> None:
    """Across a collector restart --follow says it reconnects, then goes on: every event once,
    including the one accepted while it was away, and nothing printed twice."""
    import os
    import socket
    import subprocess
    import sys

    from tests.collector_support import Daemon

    token = "follow-read-token"
    monkeypatch.setenv("TRAIL_API_TOKEN", token)
    monkeypatch.setenv("TRAIL_FLUSH_INTERVAL", "0.2s")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "data"
    collector = Daemon(data, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from trailcli.cli import main; main()", "replay",
               "--visitor", "vis", "--follow", f"{base}/faye", "--data-dir", str(data),
               "--format", "ndjson"]  # fmt: skip
    follower = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    out, err = _Lines(follower.stdout), _Lines(follower.stderr)
    try:
        err.until(lambda line: line.startswith("Following"))
        _post_event(base, "vis", "e1", "first")
        out.until(lambda line: '"first"' in line)
        assert collector.stop() == 0
        err.until(lambda line: "reconnecting in 1 s" in line)
        collector = Daemon(data, "--port", str(port))
        _post_event(base, "vis", "e2", "while-away")
        err.until(lambda line: line.startswith("Reconnected"))
        _post_event(base, "vis", "e3", "after")
        out.until(lambda line: '"after"' in line)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        collector.stop()
    rows = [json.loads(line) for line in out.seen]
    events = [r["name"] for r in rows if r["kind"] == "event"]
    assert events == ["first", "while-away", "after"]
    # every row continues the one before it, as re-reading the stored trail gives them
    stored = json.loads(
        subprocess.run(
            [*command[:6], "--data-dir", str(data), "--format", "json"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    printed = {(r["kind"], r["time"], r["name"]): r for r in rows}
    for row in stored:
        if row["kind"] == "event":
            assert printed[(row["kind"], row["time"], row["name"])]["detail"] == row["detail"]


def test_followed_table_rows_keep_one_layout(capsys, monkeypatch) -> None:
    """Stored and live rows streamed as a table line up under one header, fitted to the width."""
    from datetime import UTC, datetime

    from trailcli.cli.replay import _LineWriter
    from trailcli.render import Format

    monkeypatch.setenv("COLUMNS", "120")
    write = _LineWriter(Format.table, "Europe/Paris")
    base = {"kind": "event", "visit_token": "v-1234567890abcdef", "new_session": False}
    write({**base, "time": datetime(2026, 3, 1, 9, tzinfo=UTC), "name": "$view",
           "detail": {"page": "/"}, "gap_seconds": None, "new_session": True})  # fmt: skip
    write({**base, "time": datetime(2026, 3, 1, 9, 1, 22, tzinfo=UTC), "name": "purchase",
           "detail": {"note": "x" * 300}, "gap_seconds": 82.4})  # fmt: skip
    header, rule, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "time", "kind", "visit_token", "name", "detail", "gap_seconds", "new_session"
    ]  # fmt: skip
    assert max(len(line) for line in (header, rule, first, second)) <= 120
    assert first.startswith("2026-03-01 10:00:00+01") and second.startswith(
        "2026-03-01 10:01:22+01"
    )
    assert first.index("{") == second.index("{") == header.index("detail")
    assert "…" in second and "1m 22s" in second and second.endswith("false")
