"""Every report gives the same answer on a lake before and after `trail compact`: compaction
changes how rows are stored (deduplicated, sorted, marked clean, snapshots built), never what
they say."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from trailcli.sample.figures import FUNNEL_STEPS
from trailcli.sample.generator import SampleOptions, generate
from trailcli.store import tables
from trailcli.store.schema import KINDS
from trailcli.store.views import Lake

END = datetime(2026, 3, 2, tzinfo=UTC)
DAY = END - timedelta(days=1)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _resend(data_dir: Path, kind: str, every: int) -> None:
    """Write a copy of every `every`-th row again, received later, through the plain bulk path:
    each kind then has dirty partitions whose duplicates must lose to the stored originals."""
    k = KINDS[kind]
    stored = pa.concat_tables(
        [tables.with_date(k, _read(f, k)) for f in tables.file_list(data_dir, kind)]
    )
    copies = stored.take(pa.array(range(0, stored.num_rows, every)))
    if k.first_wins_by not in k.key:  # a later receipt, with a value a wrong winner would show
        later = pc.add(copies[k.first_wins_by], pa.scalar(timedelta(hours=1)))
        copies = copies.set_column(
            copies.schema.get_field_index(k.first_wins_by), k.first_wins_by, later
        )
        altered = {"visits": "browser", "events": "name", "presence": "transition"}[kind]
        index = copies.schema.get_field_index(altered)
        copies = copies.set_column(index, altered, pa.array(["re-sent"] * copies.num_rows))
    tables.bulk_write(data_dir, kind, copies)


def _read(path: str, k: Any) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path).cast(pa.schema([f for f in k.table_schema if f.name != "date"]))


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    before = tmp_path_factory.mktemp("invariance") / "before"
    generate(SampleOptions(data_dir=before, end=END, days=3, seed=5, visitors=400))
    for kind in KINDS:
        _resend(before, kind, every=17)
    lake = Lake(before)
    assert all(not lake.clean[k] for k in KINDS)  # every kind has a partition to deduplicate
    after = before.parent / "after"
    shutil.copytree(before, after)
    return before, after


def _visitor(data_dir: Path) -> str:
    lake = Lake(data_dir)
    lake.bind("events")
    (row,) = lake.fetch_sql(
        "SELECT visitor_token FROM events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    return str(row["visitor_token"])


def _reports(data_dir: Path, visitor: str) -> dict[str, list[str]]:
    steps = [a for s in FUNNEL_STEPS for a in ("--step", s)]
    span = ["--from", _iso(END - timedelta(days=3)), "--to", _iso(END)]
    return {
        "funnel": ["report", "funnel", *steps, *span],
        "funnel by browser": ["report", "funnel", *steps[:4], "--breakdown", "browser"],
        "referrers": ["report", "referrers", *span],
        "referrers by goal": ["report", "referrers", "--goal", "purchase"],
        "pages": ["report", "pages", *span],
        "pages last day": ["report", "pages", "--from", _iso(DAY + timedelta(hours=9))],
        "paths": ["report", "paths", "--steps", "3"],
        "replay": ["replay", "--visitor", visitor],
        "online at noon": ["online", "--at", _iso(DAY + timedelta(hours=12))],
        "online at night": ["online", "--at", _iso(DAY - timedelta(hours=2, minutes=17))],
        "online by client": ["online", "--at", _iso(DAY + timedelta(hours=15)), "--by", "client"],
        "online range": ["online", "--from", _iso(DAY + timedelta(hours=10)), "--to",
                         _iso(DAY + timedelta(hours=11))],
        "online timeline": ["online", "timeline", *span, "--every", "1h"],
    }  # fmt: skip


def _answers(run_cli: Callable[..., Any], data_dir: Path, visitor: str) -> dict[str, Any]:
    answers = {}
    for name, args in _reports(data_dir, visitor).items():
        result = run_cli(*args, "--data-dir", data_dir, "--format", "json")
        assert result.exit_code == 0, (name, result.stdout, result.stderr)
        answers[name] = json.loads(result.stdout)
        assert answers[name], name  # an empty answer would prove nothing
    return answers


def test_each_report_answers_the_same_before_and_after_compaction(
    lakes: tuple[Path, Path], run_cli: Callable[..., Any]
) -> None:
    before, after = lakes
    visitor = _visitor(before)
    expected = _answers(run_cli, before, visitor)
    result = run_cli("compact", "--data-dir", after, "--older-than", _iso(END + timedelta(days=1)))
    assert result.exit_code == 0, result.stderr
    lake = Lake(after)
    assert all(lake.clean[k] == set(lake.dates(k)) for k in KINDS)
    got = _answers(run_cli, after, visitor)
    for name in expected:
        assert got[name] == expected[name], name
