"""`trail purge` on the sample: the days before the limit leave the disk and the Delta log, the
later days answer as before, kept daily figures equal the ones computed before the purge, and a
question about a purged time says where the log now starts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trailcli.sample.generator import last_midnight
from trailcli.store import layout

KINDS = ("visits", "events", "presence", "identities")
MIDNIGHT = last_midnight()  # the sample ends here: its days are the four before
FIRST = MIDNIGHT - timedelta(days=4)
LIMIT = MIDNIGHT - timedelta(days=2)  # --older-than 2d keeps the two days from here
KEPT_DAY = layout.day_of(LIMIT)
DAY = timedelta(days=1)
PURGED_DAYS = [layout.day_of(FIRST), layout.day_of(FIRST + timedelta(days=1))]


def _iso(at: datetime) -> str:
    return at.isoformat()


@pytest.fixture(scope="module")
def compacted_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of sample traffic, compacted (replaced files left on disk) with snapshots."""
    from typer.testing import CliRunner

    from trailcli.cli import app

    root = tmp_path_factory.mktemp("retention") / "data"
    runner = CliRunner()
    args = ["sample", "--data-dir", str(root), "--days", "4", "--visitors", "300", "--seed", "5"]
    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0
    assert runner.invoke(app, ["compact", "--data-dir", str(root)]).exit_code == 0
    return root


@pytest.fixture
def sample(compacted_sample: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(compacted_sample, copy)
    return copy


def _json(run_cli: Callable[..., Any], *args: Any) -> Any:
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _active_days(data_dir: Path, kind: str) -> set[str]:
    from deltalake import DeltaTable

    from trailcli.store.maintenance import partitions

    return set(partitions(DeltaTable(str(layout.table_path(data_dir, kind)))))


def _later_figures(run_cli: Callable[..., Any], data_dir: Path) -> dict[str, Any]:
    """Answers about the days kept, which the purge must not change."""
    d = ("--data-dir", data_dir)
    rest = ("--from", _iso(LIMIT), "--to", _iso(MIDNIGHT))
    return {
        "pages": _json(run_cli, "report", "pages", *rest, *d),
        "referrers": _json(run_cli, "report", "referrers", *rest, *d),
        "funnel": _json(
            run_cli, "report", "funnel", "--step", "$view", "--step", "purchase", *rest, *d
        ),
        "timeline": _json(run_cli, "online", "timeline", *rest, "--every", "1h", *d),
        "at_late": _json(run_cli, "online", "--at", _iso(MIDNIGHT - timedelta(hours=10)), *d),
        "sql": _json(run_cli, "sql", "SELECT count(*) AS n FROM events", *d),
    }


def _by_day(run_cli: Callable[..., Any], data_dir: Path) -> dict[str, Any]:
    d = ("--data-dir", data_dir)
    span = ("--from", _iso(FIRST), "--to", _iso(MIDNIGHT))
    return {
        "timeline": _json(run_cli, "online", "timeline", *span, "--every", "1d", *d),
        "pages": _json(run_cli, "report", "pages", "--by", "day", *span, *d),
        "referrers": _json(run_cli, "report", "referrers", "--by", "day", *span, *d),
    }


def test_purge_removes_the_old_days_from_disk_and_log_and_keeps_the_rest(
    sample: Path, run_cli: Callable[..., Any]
) -> None:
    before = _later_figures(run_cli, sample)
    n_before = before.pop("sql")[0]["n"]
    old_at = _iso(FIRST + timedelta(hours=12))
    assert _json(run_cli, "online", "--at", old_at, "--data-dir", sample) != []

    result = run_cli("purge", "--older-than", "2d", "--data-dir", sample, "--format", "json")
    assert result.exit_code == 0, result.stderr
    removed = {r["kind"]: r for r in json.loads(result.stdout)}
    assert set(removed) == set(KINDS)
    for kind in KINDS:
        assert removed[kind]["days"] == 2 and removed[kind]["first_day"] == PURGED_DAYS[0]
        root = layout.table_path(sample, kind)
        on_disk = [p for day in PURGED_DAYS for p in (root / layout.partition_dir(day)).rglob("*")]
        assert on_disk == [] and not (root / layout.partition_dir(PURGED_DAYS[0])).exists()
        assert min(_active_days(sample, kind)) == KEPT_DAY
    snapshots = sorted(p.name for p in layout.snapshot_dir(sample).glob("*.json"))
    assert snapshots and min(snapshots) >= KEPT_DAY

    after = _later_figures(run_cli, sample)
    assert after.pop("sql")[0]["n"] < n_before
    assert after == before

    # a timeline over purged days answers from the first day kept, never with empty buckets
    span = ("--from", _iso(FIRST), "--to", _iso(MIDNIGHT), "--every", "1h")
    rows = _json(run_cli, "online", "timeline", *span, "--data-dir", sample)
    assert rows[0]["bucket_start"].startswith(KEPT_DAY) and len(rows) == 48
    purged_only = ("--from", _iso(FIRST), "--to", _iso(LIMIT), "--every", "1h")
    assert run_cli("online", "timeline", *purged_only, "--data-dir", sample).exit_code == 3

    old = run_cli("online", "--at", old_at, "--data-dir", sample)
    assert old.exit_code == 3
    assert f"the log now starts on {KEPT_DAY}" in old.stderr
    assert f"days before {KEPT_DAY} were purged" in old.stderr


def test_online_just_after_the_limit_still_counts_sessions_from_before_it(
    sample: Path, run_cli: Callable[..., Any]
) -> None:
    """The snapshot at the limit carries the sessions open across it, visit fields aside (their
    visits were purged)."""
    at = ("--at", _iso(LIMIT + timedelta(minutes=20)), "--data-dir", sample)
    who = ("user_id", "visitor_token", "visit_token", "online_since", "clients", "last_page")

    def persons() -> list[dict[str, Any]]:
        return [{k: r[k] for k in who} for r in _json(run_cli, "online", *at)]

    before = persons()
    assert run_cli("purge", "--older-than", "2d", "--data-dir", sample).exit_code == 0
    assert persons() == before


def test_keep_daily_figures_equal_the_ones_computed_before_the_purge(
    sample: Path, run_cli: Callable[..., Any]
) -> None:
    before = _by_day(run_cli, sample)
    assert [r["day"] for r in before["pages"]][:2] == PURGED_DAYS
    args = ("purge", "--older-than", "2d", "--keep-daily", "--data-dir", sample)
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert "2 daily row(s) kept" in result.stderr
    assert min(_active_days(sample, "events")) == KEPT_DAY
    assert _by_day(run_cli, sample) == before
    # a range of purged days only, answered from the kept figures alone
    only = ("--from", _iso(FIRST), "--to", _iso(LIMIT), "--data-dir", sample)
    pages = _json(run_cli, "report", "pages", "--by", "day", *only)
    assert pages == before["pages"][:2]
    # counted otherwise than the kept figures: purged days are not made up
    bots = run_cli("report", "pages", "--by", "day", "--include-bots", *only)
    assert bots.exit_code == 3


def test_dry_run_lists_the_days_and_changes_nothing(
    sample: Path, run_cli: Callable[..., Any]
) -> None:
    files = _files(sample)
    result = run_cli("purge", "--older-than", "2d", "--dry-run", "--data-dir", sample)
    assert result.exit_code == 0, result.stderr
    assert "would remove the days before " + KEPT_DAY in result.stderr
    assert "presence" in result.stdout and PURGED_DAYS[0] in result.stdout
    assert _files(sample) == files


def test_only_the_named_kind_is_purged(sample: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("purge", "--older-than", "2d", "--kind", "events", "--data-dir", sample)
    assert result.exit_code == 0, result.stderr
    assert min(_active_days(sample, "events")) == KEPT_DAY
    for kind in ("visits", "presence", "identities"):
        assert PURGED_DAYS[0] in _active_days(sample, kind)
    at = _iso(FIRST + timedelta(hours=12))
    assert run_cli("online", "--at", at, "--data-dir", sample).exit_code == 0


def test_a_second_purge_with_the_same_limit_changes_nothing(
    sample: Path, run_cli: Callable[..., Any]
) -> None:
    assert run_cli("purge", "--older-than", "2d", "--data-dir", sample).exit_code == 0
    files = _files(sample)
    again = run_cli("purge", "--older-than", "2d", "--data-dir", sample, "--format", "json")
    assert again.exit_code == 0
    assert all(r["days"] == 0 for r in json.loads(again.stdout))
    assert _files(sample) == files


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--older-than", "soon"], 2, "Cannot read the duration"),
        (["--older-than", "6h"], 2, "at least one day"),
        (["--older-than", "2d", "--kind", "pageviews"], 2, "Unknown log kind"),
    ],
)
def test_bad_input_is_refused_and_deletes_nothing(
    sample: Path, run_cli: Callable[..., Any], args: list[str], code: int, message: str
) -> None:
    files = _files(sample)
    result = run_cli("purge", *args, "--data-dir", sample)
    assert result.exit_code == code
    assert message in result.stderr
    assert _files(sample) == files


def test_no_tables_is_no_data(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("purge", "--older-than", "30d", "--data-dir", tmp_path / "none")
    assert result.exit_code == 3
    assert "No trail tables to purge" in result.stderr


def test_collector_daily_upkeep_purges_with_its_clock(sample: Path) -> None:
    """The collector's daily upkeep with a clock passed in: the retention's days go, compaction
    and snapshots run after."""
    from trailcli.cli.collect import retention_purge
    from trailcli.collector.app import daily_upkeep
    from trailcli.collector.settings import Settings

    settings = Settings(data_dir=sample, retention=timedelta(days=400).total_seconds())
    purge = retention_purge(settings)
    assert purge is not None
    daily_upkeep(sample, FIRST + timedelta(days=401, hours=1), purge)  # the first day goes
    assert min(_active_days(sample, "presence")) == layout.day_of(FIRST + timedelta(days=1))
    daily_upkeep(sample, MIDNIGHT + timedelta(days=399, hours=1), purge)  # the day before goes
    for kind in KINDS:
        assert _active_days(sample, kind) == {layout.day_of(MIDNIGHT - timedelta(days=1))}
    assert retention_purge(Settings(data_dir=sample)) is None


def test_collector_daily_upkeep_keeps_daily_figures(sample: Path) -> None:
    from trailcli.cli.collect import retention_purge
    from trailcli.collector.app import daily_upkeep
    from trailcli.collector.settings import Settings
    from trailcli.store.views import daily_rows

    settings = Settings(data_dir=sample, retention=400 * 86400.0, keep_daily=True)
    daily_upkeep(sample, LIMIT + timedelta(days=400, hours=2), retention_purge(settings))
    assert [r["date"] for r in daily_rows(sample)] == PURGED_DAYS
    assert all(r["visits"] and r["views"] and r["max_online"] for r in daily_rows(sample))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"retention": 3600.0}, "Invalid retention"),
        ({"retention": 400 * 86400.0, "compact": False}, "background compaction"),
    ],
)
def test_collector_refuses_a_retention_it_cannot_run(fields: dict[str, Any], message: str) -> None:
    from trailcli.collector.settings import Settings
    from trailcli.errors import UsageError

    with pytest.raises(UsageError, match=message):
        Settings(data_dir=Path("x"), **fields)


def test_collect_reads_retention_from_flags_and_environment(
    run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import trailcli.cli.collect as collect_cmd

    seen: list[Any] = []
    monkeypatch.setattr(collect_cmd, "start", seen.append)
    d = ("--data-dir", tmp_path)
    assert run_cli("collect", *d, "--retention", "400d", "--keep-daily").exit_code == 0
    assert seen[-1].retention == 400 * 86400 and seen[-1].keep_daily
    env = {"TRAIL_RETENTION": "30d", "TRAIL_KEEP_DAILY": "true"}
    assert run_cli("collect", *d, env=env).exit_code == 0
    assert seen[-1].retention == 30 * 86400 and seen[-1].keep_daily
    assert run_cli("collect", *d, "--retention", "2h").exit_code == 2


def test_purge_is_in_utc_days_at_the_midnight_edge() -> None:
    from trailcli.retention.purge import first_kept_day

    now = datetime(2026, 5, 10, 0, 0, tzinfo=UTC)
    assert first_kept_day(now, timedelta(days=400)) == "2025-04-05"
    assert first_kept_day(now + timedelta(microseconds=1), timedelta(days=400)) == "2025-04-05"
    assert first_kept_day(now - timedelta(microseconds=1), timedelta(days=400)) == "2025-04-04"


def test_by_day_adds_up_to_the_other_groupings(
    compacted_sample: Path, run_cli: Callable[..., Any]
) -> None:
    d = ("--data-dir", compacted_sample)
    by_page = _json(run_cli, "report", "pages", *d)
    by_day = _json(run_cli, "report", "pages", "--by", "day", *d)
    assert [r["day"] for r in by_day] == [*PURGED_DAYS, KEPT_DAY, layout.day_of(LIMIT + DAY)]
    for figure in ("views", "entries", "exits"):
        assert sum(r[figure] for r in by_day) == sum(r[figure] for r in by_page)
    assert all(r["exit_rate"] == r["exits"] / r["views"] for r in by_day)
    sources = _json(run_cli, "report", "referrers", *d)
    days = _json(run_cli, "report", "referrers", "--by", "day", "--goal", "purchase", *d)
    assert sum(r["visits"] for r in days) == sum(r["visits"] for r in sources)
    assert abs(sum(r["share"] for r in days) - 1) < 1e-9
    assert all(0 <= r["conversions"] <= r["visits"] for r in days)
