"""`trail forget --ips-older-than`: the stored addresses of old days masked in place, as
`--mask-ips` masks them at collection; the SQL mask and the collector's rule agree."""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from trailcli.collector.enrich import mask_ip
from trailcli.sample.generator import last_midnight
from trailcli.store import layout
from trailcli.store.retention import mask_ip_sql

MIDNIGHT = last_midnight()
LIMIT_DAY = layout.day_of(MIDNIGHT - timedelta(days=1))  # --ips-older-than 1d keeps this one

FIXED = [
    "1.2.3.4", "255.255.255.255", "0.0.0.0", "10.0.0.1", "1.2.3.0", " 1.2.3.4 ",
    "::", "::1", "2001:db8::1", "2001:db8:1:2::", "2001:db8:1::", "fe80::1%eth0",
    "[2001:db8::1]", "::ffff:1.2.3.4", "2001:0DB8:0000:0001::", "1:2:3:4:5:6:7:8", "0:0:1::",
    "1:0:0:0:0:0:0:1", "1::2:3:4:5:6:7", "1:2:3:4:5:6:1.2.3.4",
    # not addresses: left as they are
    "unknown", "", "1.2.3", "01.2.3.4", "256.1.1.1", "1:::2", ":1", "1::2::3", "1:2:3:4:5:6:7:8:9",
    None,
]  # fmt: skip


def _cases() -> list[str | None]:
    r = random.Random(7)
    cases: list[str | None] = list(FIXED)
    for _ in range(2000):
        if r.random() < 0.5:
            cases.append(str(ipaddress.IPv4Address(r.getrandbits(32))))
            continue
        bits = r.getrandbits(128)
        if r.random() < 0.5:  # runs of zero groups at the end
            bits &= ~((1 << r.randrange(128)) - 1)
        if r.random() < 0.3:  # and at the start
            bits &= (1 << r.randrange(1, 128)) - 1
        address = ipaddress.IPv6Address(bits)
        cases.append(r.choice([str(address), address.exploded, address.exploded.upper()]))
    return cases


def test_the_sql_mask_is_the_collectors_rule() -> None:
    cases = _cases()
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT unnest($c::VARCHAR[]) AS ip, "
        "generate_subscripts($c::VARCHAR[], 1) AS i",
        {"c": cases},
    )
    rows = con.execute(f"SELECT i, {mask_ip_sql('ip')} FROM t ORDER BY i").fetchall()
    got = [masked for _, masked in rows]
    assert got == [mask_ip(c) for c in cases]
    assert got[:2] == ["1.2.3.0", "255.255.255.0"]


@pytest.fixture(scope="module")
def sample_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from trailcli.cli import app

    root = tmp_path_factory.mktemp("mask") / "data"
    args = ["sample", "--data-dir", str(root), "--days", "3", "--visitors", "200", "--seed", "3"]
    assert CliRunner().invoke(app, args, catch_exceptions=False).exit_code == 0
    return root


@pytest.fixture
def sample(sample_once: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(sample_once, copy)
    return copy


def _ips(data_dir: Path) -> dict[str, list[tuple[str, str | None]]]:
    """Every stored (visit, ip) by day, from every Parquet file on disk (current or not)."""
    files = [str(p) for p in layout.table_path(data_dir, "visits").glob("date=*/*.parquet")]
    rows = duckdb.sql(
        "SELECT visit_token, ip, filename FROM read_parquet($f, filename = true)",
        params={"f": files},
    ).fetchall()
    found: dict[str, list[tuple[str, str | None]]] = {}
    for token, ip, name in rows:
        day = layout.partition_of(name)
        assert day is not None
        found.setdefault(day, []).append((token, ip))
    return {d: sorted(v, key=lambda x: (x[0], x[1] or "")) for d, v in found.items()}


def test_old_addresses_are_masked_on_disk_and_the_rest_unchanged(
    sample: Path, run_cli: Callable[..., Any]
) -> None:
    before = _ips(sample)
    old_days = sorted(d for d in before if d < LIMIT_DAY)
    assert len(old_days) == 2 and any(ip != mask_ip(ip) for _, ip in before[old_days[0]])
    d = ("--data-dir", sample)
    pages = run_cli("report", "referrers", *d, "--format", "json").stdout

    result = run_cli("forget", "--ips-older-than", "1d", *d, "--format", "json")
    assert result.exit_code == 0, result.stderr
    [row] = json.loads(result.stdout)
    expected = sum(ip != mask_ip(ip) for day in old_days for _, ip in before[day])
    assert row["table"] == "visits" and row["rows"] == expected
    assert f"of the days before {LIMIT_DAY}" in result.stderr

    after = _ips(sample)  # every file on disk: no replaced file is left with the raw address
    for day in old_days:
        assert after[day] == sorted(
            ((t, mask_ip(ip)) for t, ip in before[day]), key=lambda x: (x[0], x[1] or "")
        )
    assert after[LIMIT_DAY] == before[LIMIT_DAY]
    assert run_cli("report", "referrers", *d, "--format", "json").stdout == pages

    again = run_cli("forget", "--ips-older-than", "1d", *d, "--format", "json")
    assert json.loads(again.stdout)[0]["rows"] == 0


def test_dry_run_counts_and_changes_nothing(sample: Path, run_cli: Callable[..., Any]) -> None:
    files = sorted(p for p in sample.rglob("*") if p.is_file())
    result = run_cli("forget", "--ips-older-than", "1d", "--dry-run", "--data-dir", sample)
    assert result.exit_code == 0 and "would mask" in result.stderr
    assert sorted(p for p in sample.rglob("*") if p.is_file()) == files


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--ips-older-than", "2h"], 2, "at least one day"),
        (["--ips-older-than", "soon"], 2, "Cannot read the duration"),
        (["--ips-older-than", "30d", "--visitor", "v1"], 2, "takes no selector"),
    ],
)
def test_bad_input_changes_nothing(
    sample: Path, run_cli: Callable[..., Any], args: list[str], code: int, message: str
) -> None:
    before = _ips(sample)
    result = run_cli("forget", *args, "--data-dir", sample)
    assert result.exit_code == code and message in result.stderr
    assert _ips(sample) == before


def test_no_visits_table_is_no_data(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("forget", "--ips-older-than", "30d", "--data-dir", tmp_path / "none")
    assert result.exit_code == 3 and "No visits table" in result.stderr
