"""`trail online` end to end: formats, exit codes, a live collector, and the sample's ground truth."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def small_log(data_dir, write_rows) -> Path:
    rows: list[dict[str, Any]] = [
        {"time": iso(s), "seq": i + 1, "node_id": "n1", "transition": "heartbeat"}
        for i, s in enumerate(range(0, 400, 10))
    ]
    for i, (client, visitor, on, off) in enumerate(
        [("c1", "a", 10, 100), ("c2", "a", 50, 200), ("c3", "b", 60, 90), ("c4", None, 60, 90)]
    ):
        ids = {"client_id": client, "visitor_token": visitor, "visit_token": f"v-{client}"}
        rows.append({"time": iso(on), "seq": 100 + 2 * i, "node_id": "n1",
                     "transition": "online", "reason": "handshake", **ids})  # fmt: skip
        rows.append({"time": iso(off), "seq": 101 + 2 * i, "node_id": "n1",
                     "transition": "offline", "reason": "disconnect", **ids})  # fmt: skip
    write_rows("presence", rows)
    return data_dir


def test_at_as_json_lists_persons(run_cli, small_log) -> None:
    result = run_cli("online", "--data-dir", small_log, "--at", iso(70), "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["visitor_token"], r["clients"], r["online_since"]) for r in rows] == [
        ("a", 2, "2026-03-01T10:00:10+00:00"),
        ("b", 1, "2026-03-01T10:01:00+00:00"),
    ]
    assert list(rows[0]) == [
        "user_id", "visitor_token", "visit_token", "online_since", "clients", "channels",
        "last_page", "browser", "os", "device_type", "country", "referring_domain",
    ]  # fmt: skip


def test_at_imports_no_arrow_polars_or_urllib(small_log, write_rows) -> None:
    """`trail online --at` reads through DuckDB only: pyarrow and polars cost a large share of
    the command's start-up, and urllib (with ssl) is only for --url."""
    import subprocess
    import sys

    write_rows("visits", [{"visit_token": "v-c1", "started_at": iso(5), "browser": "Firefox"}])
    write_rows("identities", [{"time": iso(20), "visit_token": "v-c1", "user_id": "u1"}])
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from trailcli.cli import app\n"
        f"args = ['online', '--data-dir', {str(small_log)!r}, '--at', {iso(70)!r}, '-f', 'json']\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = ('pyarrow', 'polars', 'urllib.request')\n"
        "print(json.dumps([json.loads(result.stdout), [m for m in heavy if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rows, imported = json.loads(out.stdout)
    assert [(r["user_id"], r["visit_token"], r["browser"]) for r in rows] == [
        ("u1", "v-c1", "Firefox"),
        (None, "v-c2", None),
        (None, "v-c3", None),
    ]
    assert imported == []


def test_by_client_csv_includes_anonymous_sessions(run_cli, small_log) -> None:
    result = run_cli(
        "online", "--data-dir", small_log, "--at", iso(70), "--by", "client", "-f", "csv"
    )
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["client_id"] for r in rows) == ["c1", "c2", "c3", "c4"]
    assert next(r for r in rows if r["client_id"] == "c1")["channels"] == "[]"


def test_range_in_another_zone(run_cli, small_log) -> None:
    result = run_cli(
        "online", "--data-dir", small_log, "--from", "2026-03-01T11:00", "--to",
        "2026-03-01T12:00", "--tz", "Europe/Paris", "-f", "ndjson",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["visitor_token"], r["online_seconds"]) for r in rows] == [("a", 190.0), ("b", 30.0)]
    assert rows[0]["first_seen"] == "2026-03-01T11:00:10+01:00"


def test_timeline_table_has_a_sparkline(run_cli, small_log) -> None:
    args = ("online", "timeline", "--data-dir", small_log, "--from", iso(0), "--to", iso(300))
    result = run_cli(*args, "--every", "1m")
    assert result.exit_code == 0, result.stderr
    table, footer = result.stdout.split("\n\n")
    assert footer.splitlines()[1] == "peak 2 online at 2026-03-01 10:01:00+00"
    assert any(block in footer for block in "▁▂▃▄▅▆▇█")
    header, _rule, *buckets = table.splitlines()
    assert header.split() == ["bucket_start", "max_online", "min_online", "avg_online"]
    assert len(buckets) == 5 and buckets[0].startswith("2026-03-01 10:00:00+00")
    rows = json.loads(run_cli(*args, "--every", "1m", "-f", "json").stdout)
    assert [r["max_online"] for r in rows] == [1, 2, 1, 1, 0]
    assert {r["peak_online"] for r in rows} == {2}
    before = ("online", "--data-dir", small_log, "timeline", "--from", iso(0), "--to", iso(300))
    assert json.loads(run_cli(*before, "--every", "1m", "-f", "json").stdout) == rows


@pytest.mark.parametrize(
    "args",
    [
        ("--at", "yesterday-ish"),
        ("--at", iso(10), "--from", iso(0)),
        ("--to", iso(10)),
        ("--by", "household"),
        ("--grace", "soon"),
        ("--channel", "chat"),
        ("--from", iso(10), "--to", iso(0)),
        ("--url", "ftp://x", "--token", "t"),
        ("--url", "http://127.0.0.1:9", "--at", "-1h", "--token", "t"),
    ],
)
def test_bad_options_exit_2(run_cli, small_log, args) -> None:
    result = run_cli("online", "--data-dir", small_log, *args)
    assert result.exit_code == 2
    assert "Hint:" in result.stderr


def test_timeline_needs_a_range(run_cli, small_log) -> None:
    result = run_cli("online", "timeline", "--data-dir", small_log)
    assert result.exit_code == 2
    result = run_cli(
        "online", "timeline", "--data-dir", small_log, "--from", iso(0), "--every", "0s"
    )
    assert result.exit_code == 2


def test_no_data_exits_3(run_cli, data_dir, small_log) -> None:
    assert run_cli("online", "--data-dir", data_dir / "nothing", "--at", iso(0)).exit_code == 3
    result = run_cli("online", "--data-dir", small_log, "--at", "2020-01-01")
    assert result.exit_code == 3
    assert "No presence rows at or before" in result.stderr


def test_url_without_a_token_is_a_usage_error(run_cli, small_log) -> None:
    result = run_cli("online", "--url", "http://127.0.0.1:9", env={"TRAIL_API_TOKEN": ""})
    assert result.exit_code == 2


def test_unreachable_collector_is_a_runtime_error(run_cli) -> None:
    result = run_cli("online", "--url", "http://127.0.0.1:9", "--token", "t")
    assert result.exit_code == 1
    assert "Cannot reach" in result.stderr


async def test_url_reads_a_running_collector(aiohttp_client, data_dir, run_cli) -> None:
    from trailcli.collector.app import create_app
    from trailcli.collector.settings import Settings

    settings = Settings(
        data_dir=data_dir, node_id="n-cli", secret="s", api_token="read", compact=False,
        access_log=False, heartbeat_interval=0.2, flush_interval=0.2,
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    hello = {"channel": "/meta/handshake", "version": "1.0",
             "supportedConnectionTypes": ["long-polling"], "ext": {"trail": {"visitor_token": "vt"}}}  # fmt: skip
    (answer,) = await (await client.post("/faye", json=[hello])).json()
    assert answer["successful"]
    base = str(client.make_url("/")).rstrip("/")
    args = ("online", "--url", base, "-f", "json")
    wrong = await asyncio.to_thread(run_cli, *args, "--token", "nope")
    assert wrong.exit_code == 1 and "401" in wrong.stderr
    result = await asyncio.to_thread(run_cli, *args, env={"TRAIL_API_TOKEN": "read"})
    assert result.exit_code == 0, result.stderr
    assert [(r["visitor_token"], r["clients"]) for r in json.loads(result.stdout)] == [("vt", 1)]


def _check_ground_truth(truth_path: Path, data_dir: Path, run_cli: Any) -> None:
    """Run each command of a ground_truth.json (on `data_dir`) and compare persons and peak."""
    truth = json.loads(truth_path.read_text())
    assert truth.get("online"), "the ground truth lists no online instants"

    def run(command: str) -> Any:
        args = shlex.split(command)
        args[args.index("--data-dir") + 1] = str(data_dir)
        result = run_cli(*args[1:])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    for instant in truth["online"]:
        rows = run(instant["command"])
        persons = sorted(r["user_id"] or r["visitor_token"] for r in rows)
        assert persons == sorted(instant["persons"]), instant["at"]
        assert len(rows) == instant["count"]
    peak = truth["peak"]
    rows = run(peak["command"])
    assert rows[0]["peak_online"] == peak["peak_online"]
    got = datetime.fromisoformat(rows[0]["peak_at"])
    assert got == datetime.fromisoformat(peak["peak_at"].replace("Z", "+00:00"))


@pytest.mark.slow
def test_a_generated_sample_matches_its_ground_truth_through_snapshots(tmp_path, run_cli) -> None:
    from trailcli.presence import online, snapshots

    data_dir = tmp_path / "sample"
    result = run_cli(
        "sample", "--data-dir", data_dir, "--days", "2", "--visitors", "300", "--end", "2026-02-01"
    )
    assert result.exit_code == 0, result.stderr
    built = snapshots.build_snapshots(data_dir)
    steps = [f"T{h:02d}0000" for h in range(3, 24, 3)]
    assert built == [*(f"2026-01-30{s}" for s in steps), "2026-01-31",
                     *(f"2026-01-31{s}" for s in steps)]  # fmt: skip
    at = datetime(2026, 1, 31, 13, tzinfo=UTC)
    window = online.load_window(
        data_dir, at, at, datetime(2026, 3, 1, tzinfo=UTC), online.Options()
    )
    assert window.carry is not None and window.carry.instant == at.replace(hour=12)
    _check_ground_truth(data_dir / "ground_truth.json", data_dir, run_cli)


def test_the_shipped_sample_matches_its_ground_truth(run_cli) -> None:
    truth = REPO / "sample_data" / "ground_truth.json"
    if not truth.exists():
        pytest.skip("sample_data/ground_truth.json is not in the tree yet")
    _check_ground_truth(truth, REPO / "sample_data", run_cli)


def test_watch_redraws_until_interrupted(run_cli, small_log, monkeypatch) -> None:
    import trailcli.cli.online as command

    naps = []

    def nap(seconds: float) -> None:  # the user presses Ctrl-C during the second wait
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(command.time, "sleep", nap)
    result = run_cli("online", "--data-dir", small_log, "--at", iso(70), "--watch", "-f", "csv")
    assert result.exit_code == 130
    assert result.stdout.count("user_id,visitor_token") == 2
    assert naps == [command.WATCH_SECONDS, command.WATCH_SECONDS]
