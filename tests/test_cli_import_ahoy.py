"""`trail import ahoy` as a command: progress and summary, errors, and an import killed half-way
(SIGKILL of the process) that a rerun completes with every row exactly once."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ahoy_databases import PostgresServer, create_postgres_tables, free_port

from trailcli.store import layout, tables

pytestmark = pytest.mark.slow

VISITS = 4000
EVENTS = 40_000


@pytest.fixture(scope="module")
def big_source(postgres_server: PostgresServer) -> str:
    """Ahoy's tables with VISITS visits and EVENTS events, written by SQL."""
    import psycopg

    url = postgres_server.create_database("ahoy_big")
    create_postgres_tables(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ahoy_visits (visit_token, visitor_token, user_id, user_agent, "
            "landing_page, referrer, started_at) SELECT 'v' || g, 'w' || (g % 900), "
            "CASE WHEN g % 3 = 0 THEN g % 50 END, 'Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0', "
            "'https://shop.example/p/' || (g % 20), CASE WHEN g % 4 = 0 THEN 'https://www.google.com/' END, "
            f"timestamp '2026-03-01' + g * interval '61 seconds' FROM generate_series(1, {VISITS}) g"
        )
        conn.execute(
            "INSERT INTO ahoy_events (visit_id, user_id, name, properties, time) "
            f"SELECT 1 + g % {VISITS}, NULL, 'event ' || (g % 7), jsonb_build_object('n', g), "
            f"timestamp '2026-03-01' + g * interval '6 seconds' FROM generate_series(1, {EVENTS}) g"
        )
    return url


def trail(*args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def count_in_files(data_dir: Path, kind: str, key: str) -> tuple[int, int]:
    """(rows, distinct keys) over the table's current files: duplicates are not hidden."""
    import duckdb

    files = tables.file_list(data_dir, kind)
    row = duckdb.sql(
        f"SELECT count(*), count(DISTINCT {key}) FROM read_parquet($f)", params={"f": files}
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def test_progress_on_stderr_and_a_summary_on_stdout(big_source: str, tmp_path: Path) -> None:
    proc = trail("import", "ahoy", "--database", big_source, "--data-dir", str(tmp_path),
                 "--batch-size", "10000", "--format", "json")  # fmt: skip
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = {(r["source_table"], r["table"]): r for r in json.loads(out)}
    assert summary["ahoy_visits", "visits"]["rows_written"] == VISITS
    assert summary["ahoy_visits", "identities"]["rows_written"] == VISITS // 3
    assert summary["ahoy_events", "events"] == {
        "source_table": "ahoy_events", "table": "events", "rows_read": EVENTS,
        "rows_written": EVENTS, "rows_skipped": 0, "watermark": EVENTS,
    }  # fmt: skip
    lines = err.splitlines()
    assert "ahoy_events: 10,000 rows read (25% of ids), up to id 10000" in lines[1]
    assert lines[-2].startswith("ahoy_events: 40,000 rows read (100% of ids), up to id 40000, ")
    assert lines[-1] == (
        f"Imported {VISITS:,} visits, {VISITS // 3:,} identities, {EVENTS:,} events; "
        "'trail compact' rewrites the imported days into one file each."
    )
    again = trail("import", "ahoy", "--database", big_source, "--data-dir", str(tmp_path))
    _out, err = again.communicate(timeout=300)
    assert err.splitlines() == [
        "Nothing new to import (a later run imports rows added after the watermarks)."
    ]
    assert "secret" not in err


@pytest.mark.parametrize("stage", ["ahoy_visits", "ahoy_events"])
def test_an_import_killed_half_way_resumes_with_every_row_once(
    big_source: str, tmp_path: Path, stage: str
) -> None:
    proc = trail("import", "ahoy", "--database", big_source, "--data-dir", str(tmp_path),
                 "--batch-size", "300")  # fmt: skip
    assert proc.stderr is not None
    half = (VISITS if stage == "ahoy_visits" else EVENTS) // 2
    for line in proc.stderr:
        if line.startswith(stage) and int(line.split()[1].replace(",", "")) >= half:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    app = f"trail-import:ahoy:ahoy_big/{stage}"
    done = tables.transaction_version(tmp_path, stage.removeprefix("ahoy_"), app)
    assert done is not None and 0 < done < (VISITS if stage == "ahoy_visits" else EVENTS)

    rerun = trail("import", "ahoy", "--database", big_source, "--data-dir", str(tmp_path),
                  "--format", "json")  # fmt: skip
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    summary = {r["table"]: r for r in json.loads(out)}
    assert (
        0
        < summary[stage.removeprefix("ahoy_")]["rows_read"]
        < (VISITS if stage == "ahoy_visits" else EVENTS)
    )
    assert count_in_files(tmp_path, "visits", "visit_token") == (VISITS, VISITS)
    assert count_in_files(tmp_path, "identities", "visit_token") == (VISITS // 3, VISITS // 3)
    assert count_in_files(tmp_path, "events", "event_id") == (EVENTS, EVENTS)


def test_a_crash_between_the_identities_and_the_visits_commit(
    big_source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The identities of a batch are committed before its visits: a stop between the two must
    write neither twice."""
    from trailcli.importer import ahoy

    real = ahoy._commit
    commits: list[str] = []

    def failing(data_dir: Path, kind: str, *args: Any) -> int:
        commits.append(kind)
        if kind == "visits" and commits.count("visits") == 3:
            raise KeyboardInterrupt  # as a stop between the two commits of the third batch
        return real(data_dir, kind, *args)

    monkeypatch.setattr(ahoy, "_commit", failing)
    request = ahoy.AhoyImport(big_source, batch_size=500)
    with pytest.raises(KeyboardInterrupt):
        ahoy.import_ahoy(tmp_path, request)
    app = "trail-import:ahoy:ahoy_big/ahoy_visits"
    assert tables.transaction_version(tmp_path, "visits", app) == 1000
    assert tables.transaction_version(tmp_path, "identities", app) == 1500
    monkeypatch.setattr(ahoy, "_commit", real)
    ahoy.import_ahoy(tmp_path, request)
    assert count_in_files(tmp_path, "visits", "visit_token") == (VISITS, VISITS)
    assert count_in_files(tmp_path, "identities", "visit_token") == (VISITS // 3, VISITS // 3)


def test_a_second_import_at_the_same_time_is_refused(
    big_source: str, tmp_path: Path, run_cli: Any
) -> None:
    lock = layout.import_lock_path(tmp_path)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = run_cli("import", "ahoy", "--database", big_source, "--data-dir", tmp_path)
    finally:
        os.close(fd)
    assert result.exit_code == 1
    assert f"Error: Another 'trail import' is writing to {tmp_path} (pid 4242)." in result.stderr
    assert not (tmp_path / "visits").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///db.sqlite3", "Error: Unsupported database URL scheme 'sqlite'."),
        ("postgresql://127.0.0.1:5432/", "Error: The database URL names no database."),
        ("postgresql://127.0.0.1:99999/app", "Error: Cannot read the database URL"),
    ],
)
def test_a_bad_url_is_a_usage_error(tmp_path: Path, run_cli: Any, url: str, message: str) -> None:
    result = run_cli("import", "ahoy", "--database", url, "--data-dir", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert "Hint: use postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in result.stderr


def test_the_url_may_come_from_database_url(tmp_path: Path, run_cli: Any) -> None:
    port = free_port()
    result = run_cli("import", "ahoy", "--data-dir", tmp_path,
                     env={"DATABASE_URL": f"mysql2://app:pw@127.0.0.1:{port}/app_production"})  # fmt: skip
    assert result.exit_code == 1
    assert f"Error: Cannot connect to mysql://app@127.0.0.1:{port}/app_production" in result.stderr
    assert "pw" not in result.stderr.replace("app_production", "")


def test_a_schema_problem_is_an_error_with_a_hint(
    big_source: str, tmp_path: Path, run_cli: Any
) -> None:
    result = run_cli("import", "ahoy", "--database", big_source, "--events-table", "events",
                     "--data-dir", tmp_path)  # fmt: skip
    assert result.exit_code == 1
    assert "Error: The source database has no table events." in result.stderr
    assert "Hint: pass --events-table with the table's name" in result.stderr


def test_a_missing_driver_names_the_extra(
    tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    result = run_cli(
        "import", "ahoy", "--database", "postgresql://127.0.0.1/app", "--data-dir", tmp_path
    )
    assert result.exit_code == 1
    assert "Error: Reading PostgreSQL needs the psycopg package." in result.stderr
    assert "Hint: pip install 'trailcli[import]'" in result.stderr
