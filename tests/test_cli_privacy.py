"""`trail forget` and `trail export` on the sample: every byte of the person gone from the data dir,
everyone else's figures unchanged, an audit entry; exports; dry runs, batches and bad input."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from erasure_support import files_holding

from trailcli.store import layout, tables, views
from trailcli.store.schema import KINDS

Run = Callable[..., Any]
END = "2026-11-01"
INSTANTS = [
    f"2026-10-{d}T{h:02d}:{m:02d}:00Z"
    for d in (29, 30, 31)
    for h in range(0, 24, 5)
    for m in (0, 40)
]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from trailcli.cli import app

    out = tmp_path_factory.mktemp("forget") / "sample"
    runner = CliRunner()
    for args in (
        ["sample", "--data-dir", out, "--days", "3", "--visitors", "300", "--end", END],
        ["compact", "--data-dir", out, "--older-than", "2026-11-02"],
    ):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    return out


def the_person(data_dir: Path) -> tuple[str, str | None, list[str], str]:
    """A visitor with visits on several days and a presence session across a snapshot instant (a
    multiple of 3 h), signed in if one such is, with a user id of theirs alone; its visits and
    that instant."""
    con = views.connect(data_dir, need=("visits", "presence"))
    ((visitor, user, instant),) = con.execute(
        """
        WITH person AS (
            SELECT visitor_token, any_value(user_id) AS user_id FROM visits GROUP BY 1
            HAVING count(DISTINCT date) >= 2),
        shared AS (
            SELECT user_id FROM visits WHERE user_id IS NOT NULL
            GROUP BY 1 HAVING count(DISTINCT visitor_token) > 1),
        sessions AS (
            SELECT client_id, any_value(visitor_token) AS visitor_token,
                   min(time) FILTER (WHERE transition = 'online') AS a,
                   max(time) FILTER (WHERE transition = 'offline') AS b
            FROM presence GROUP BY 1)
        SELECT p.visitor_token, p.user_id,
               time_bucket(INTERVAL 3 HOUR, s.b) AS instant
        FROM person p JOIN sessions s USING (visitor_token)
        WHERE time_bucket(INTERVAL 3 HOUR, s.b) > s.a
          AND (p.user_id IS NULL OR p.user_id NOT IN (SELECT user_id FROM shared))
        ORDER BY p.user_id NULLS LAST, 1 LIMIT 1
        """
    ).fetchall()
    visits = [
        v for (v,) in con.execute(
            "SELECT DISTINCT visit_token FROM visits WHERE visitor_token = $v", {"v": visitor}
        ).fetchall()
    ]  # fmt: skip
    return visitor, user, visits, instant.isoformat()


def figures(run_cli: Run, data_dir: Path, instants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for at in instants:
        out[at] = json.loads(run(run_cli, "online", "--data-dir", data_dir, "--at", at))
    out["funnel"] = json.loads(
        run(run_cli, "report", "funnel", "--data-dir", data_dir, "-s", "$view", "-s", "add_to_cart")
    )
    out["referrers"] = json.loads(run(run_cli, "report", "referrers", "--data-dir", data_dir))
    return out


def run(run_cli: Run, *args: Any) -> str:
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def delete_with_deltalake(data_dir: Path, visitor: str, visits: list[str]) -> None:
    """The reference: the same rows deleted by deltalake's own delete, snapshots dropped."""
    listed = ", ".join(f"'{v}'" for v in visits)
    for kind in KINDS:
        DeltaTable(str(layout.table_path(data_dir, kind))).delete(
            f"visitor_token = '{visitor}' OR visit_token IN ({listed})"
        )
    shutil.rmtree(layout.snapshot_dir(data_dir))


def test_forget_a_visitor_leaves_no_byte_and_changes_no_one_else(
    run_cli: Run, sample_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(sample_dir, data_dir)
    visitor, user, visits, boundary = the_person(data_dir)
    assert any(p.name.startswith(boundary[:10]) for p in layout.snapshot_dir(data_dir).iterdir())
    instants = [*INSTANTS, boundary]
    before = figures(run_cli, data_dir, instants)
    assert any(r["visitor_token"] == visitor for r in before[boundary])  # online across it
    reference = tmp_path / "reference"
    shutil.copytree(data_dir, reference)
    delete_with_deltalake(reference, visitor, visits)
    needles = [visitor] + ([user] if user else [])
    assert files_holding(data_dir, needles)

    result = run_cli("forget", "--data-dir", data_dir, "--visitor", visitor, "--format", "json")

    assert result.exit_code == 0, result.stderr
    counts = {r["table"]: r["rows"] for r in json.loads(result.stdout)}
    assert counts["visits"] == len(visits) >= 2 and counts["presence"] > 0
    assert files_holding(data_dir, [*needles, *visits]) == []
    patched = re.search(r"presence snapshots: (\d+) patched", result.stderr)
    assert patched and int(patched.group(1)) > 0  # fresh snapshots are patched, not rebuilt
    after = figures(run_cli, data_dir, instants)
    for at in instants:  # everyone else's online rows as before
        assert after[at] == [r for r in before[at] if r["visitor_token"] != visitor], at
    assert after == figures(run_cli, reference, instants)  # funnel and referrers too
    assert after["funnel"] != before["funnel"] or after["referrers"] != before["referrers"]

    log = run_cli("forget", "--data-dir", data_dir, "--log", "--format", "json")
    assert log.exit_code == 0
    (entry,) = json.loads(log.stdout)
    assert entry["selectors"].startswith("visitor:") and entry["visits_rows"] == len(visits)
    assert visitor not in log.stdout and visitor not in log.stderr


def test_forget_a_user_takes_every_visitor_bound_to_it(
    run_cli: Run, sample_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(sample_dir, data_dir)
    con = views.connect(data_dir, need=("visits",))
    ((user, visitors),) = con.execute(
        "SELECT user_id, list(DISTINCT visitor_token) FROM visits WHERE user_id IS NOT NULL "
        "GROUP BY 1 ORDER BY count(DISTINCT visitor_token) DESC, 1 LIMIT 1"
    ).fetchall()
    selectors = tmp_path / "erase.txt"
    selectors.write_text(f"# one request\n\nuser:{user}\n")

    result = run_cli("forget", "--data-dir", data_dir, "--from-file", selectors)

    assert result.exit_code == 0, result.stderr
    assert files_holding(data_dir, [*visitors]) == []
    con = views.connect(data_dir, need=("identities",))
    assert con.execute(
        "SELECT count(*) FROM identities WHERE user_id = $u", {"u": user}
    ).fetchall() == [(0,)]


def test_a_dry_run_counts_and_changes_nothing(
    run_cli: Run, sample_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(sample_dir, data_dir)
    visitor, _, visits, _ = the_person(data_dir)
    files = {k: tables.file_list(data_dir, k) for k in KINDS}

    result = run_cli(
        "forget", "--data-dir", data_dir, "--visitor", visitor, "--dry-run", "-f", "json"
    )

    assert result.exit_code == 0, result.stderr
    assert {r["table"]: r["rows"] for r in json.loads(result.stdout)}["visits"] == len(visits)
    assert {k: tables.file_list(data_dir, k) for k in KINDS} == files
    assert not (layout.erasure_dir(data_dir) / "audit.ndjson").exists()
    assert not (layout.erasure_dir(data_dir) / "erased.ndjson").exists()


@pytest.mark.parametrize(
    ("args", "file_text", "code", "says"),
    [
        ((), None, 2, "Nothing to forget"),
        (("--visitor", ""), None, 2, "Invalid visitor selector"),
        (("--visitor", "a\tb"), None, 2, "Invalid visitor selector"),
        (("--log", "--visitor", "x"), None, 2, "--log"),
        (("--from-file",), "visitor:ok\nnot a selector\n", 2, "Line 2"),
        (("--from-file",), "person:x\n", 2, "Unknown selector kind 'person' on line 1"),
        (("--from-file", "/nonexistent/selectors.txt"), None, 2, "Cannot read the selectors file"),
        (("--from-file",), "visitor:\n", 2, "Invalid visitor selector on line 1"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(
    run_cli: Run, data_dir: Path, tmp_path: Path, args: tuple[str, ...],
    file_text: str | None, code: int, says: str,
) -> None:  # fmt: skip
    if file_text is not None:
        path = tmp_path / "selectors.txt"
        path.write_text(file_text)
        args = (*args, str(path))
    result = run_cli("forget", "--data-dir", data_dir, *args)
    assert result.exit_code == code
    assert says in result.stderr
    assert not layout.erasure_dir(data_dir).exists()


def test_a_data_dir_without_tables_is_no_data(run_cli: Run, data_dir: Path) -> None:
    result = run_cli("forget", "--data-dir", data_dir, "--visitor", "x")
    assert result.exit_code == 3
    assert "No trail tables" in result.stderr


def test_export_lists_every_row_of_the_person_in_time_order(
    run_cli: Run, sample_dir: Path, tmp_path: Path
) -> None:
    visitor, _, visits, _ = the_person(sample_dir)

    result = run_cli("export", "--data-dir", sample_dir, "--visitor", visitor)

    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    con = views.connect(sample_dir)
    for kind in KINDS:
        ((expected,),) = con.execute(
            f"SELECT count(*) FROM {kind} WHERE visitor_token = $v OR list_contains($w, visit_token)",
            {"v": visitor, "w": visits},
        ).fetchall()
        assert sum(r["table"] == kind for r in rows) == expected, kind
    times = [r["started_at"] if r["table"] == "visits" else r["time"] for r in rows]
    assert times == sorted(times)
    visit = next(r for r in rows if r["table"] == "visits")
    assert visit["source"] and visit["device"] and "country" in visit
    views_of = [r for r in rows if r["table"] == "events" and r["name"] == "$view"]
    assert views_of and all(r["page"] for r in views_of)
    assert all(r["source"] for r in views_of)  # the visit's source, on each of its rows
    assert isinstance(views_of[0]["properties"], dict)

    archive = tmp_path / "person.zip"
    zipped = run_cli(
        "export", "--data-dir", sample_dir, "--visitor", visitor, "-f", "zip", "-o", archive
    )
    assert zipped.exit_code == 0, zipped.stderr
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"{k}.ndjson" for k in KINDS)
        events = [json.loads(line) for line in z.read("events.ndjson").splitlines()]
    assert events == [
        {k: v for k, v in r.items() if k != "table"} for r in rows if r["table"] == "events"
    ]


def test_after_forget_the_export_finds_nothing(
    run_cli: Run, sample_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(sample_dir, data_dir)
    visitor, *_ = the_person(data_dir)
    assert run_cli("forget", "--data-dir", data_dir, "--visitor", visitor).exit_code == 0

    result = run_cli("export", "--data-dir", data_dir, "--visitor", visitor)
    assert result.exit_code == 3
    assert "Nothing is stored" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "Whose rows"),
        (("--visitor", "x", "-f", "zip"), "--output"),
        (("--user", " "), "Invalid user"),
    ],
)
def test_export_refuses_bad_input(
    run_cli: Run, sample_dir: Path, args: tuple[str, ...], says: str
) -> None:
    result = run_cli("export", "--data-dir", sample_dir, *args)
    assert result.exit_code == 2
    assert says in result.stderr
