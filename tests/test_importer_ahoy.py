"""`trail import ahoy` from real PostgreSQL and MariaDB servers: every field of every row, reruns,
new rows, `--since`, odd text, and schema problems named before anything is written."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ahoy_databases import (
    START,
    AhoyData,
    MariaDBServer,
    PostgresServer,
    create_mysql_tables,
    create_postgres_tables,
    fill_postgres,
    generate,
)
from collector_support import stored

from trailcli.collector import enrich
from trailcli.errors import TrailError
from trailcli.importer.ahoy import AhoyImport, ImportResult, import_ahoy
from trailcli.sources.referrer_facts import source_facts

pytestmark = pytest.mark.slow

UTM = ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
AHOY_DEVICES = {"Smartphone": "Mobile"}


# --- what each row must become (worked out from the generated rows, not from the import) ---------


def _first_query_value(url: str | None, name: str) -> str | None:
    if not url:
        return None
    return parse_qs(urlsplit(url).query).get(name, [None])[0]


def expected_visit(v: dict[str, Any]) -> dict[str, Any]:
    agent = v["user_agent"] or None
    landing = v["landing_page"][:4096] if v["landing_page"] else None
    referrer = v["referrer"]
    if agent:
        device = enrich.parse_user_agent(agent)
        browser, os_name, device_type = device.browser, device.os, device.device_type
    else:  # what Ahoy stored, in trail's device types
        browser, os_name = v["browser"], v["os"]
        device_type = AHOY_DEVICES.get(v["device_type"], v["device_type"]) or "Other"
    try:
        host = urlsplit(referrer).hostname if referrer else None
    except ValueError:
        host = None
    extra = v.get("accept_language")
    return {
        "visit_token": v["visit_token"],
        "visitor_token": v["visitor_token"],
        "user_id": None if v["user_id"] is None else str(v["user_id"]),
        "started_at": v["started_at"],
        "ip": v["ip"],
        "user_agent": agent,
        "referrer": referrer,
        "referring_domain": host,
        **source_facts(referrer, landing),
        "landing_page": landing,
        "browser": browser,
        "os": os_name,
        "device_type": device_type,
        "country": v["country"],
        "region": v["region"],
        "city": v["city"],
        "latitude": v["latitude"],
        "longitude": v["longitude"],
        **{k: v[k] or _first_query_value(landing, k) for k in UTM},
        "platform": v["platform"],
        "app_version": v["app_version"],
        "os_version": v["os_version"],
        "screen_width": None,
        "screen_height": None,
        "extra": None if extra is None else {"accept_language": extra},
    }


def expected_event(
    e: dict[str, Any], visits: dict[int, dict[str, Any]], database: str
) -> dict[str, Any]:
    visit = visits.get(e["visit_id"]) or {}
    return {
        "event_id": f"ahoy:{database}/ahoy_events:{e['id']}",
        "visit_token": visit.get("visit_token"),
        "visitor_token": visit.get("visitor_token"),
        "user_id": None if e["user_id"] is None else str(e["user_id"]),
        "name": e["name"].replace("\x00", "\ufffd"),
        "properties": {} if e["properties"] is None else e["properties"],
        "time": e["time"],
        "received_at": e["time"],
    }


def _same(column: str, got: Any, want: Any, approximate: bool) -> bool:
    if column in ("latitude", "longitude") and approximate and got is not None and want is not None:
        return math.isclose(got, want, rel_tol=1e-6)  # MySQL's FLOAT is single precision
    if column in ("properties", "extra") and got is not None:
        return json.loads(got) == want
    return bool(got == want)


def assert_rows_match(
    got: list[dict[str, Any]], want: list[dict[str, Any]], key: str, approximate: bool = False
) -> None:
    by_key = {row[key]: row for row in got}
    assert len(by_key) == len(got), f"duplicate {key}s"
    assert sorted(by_key) == sorted(w[key] for w in want)
    for expected in want:
        row = by_key[expected[key]]
        for column, value in expected.items():
            assert _same(column, row[column], value, approximate), (
                expected[key],
                column,
                row[column],
                value,
            )


def check_everything(
    data_dir: Path, data: AhoyData, database: str, approximate: bool = False
) -> None:
    visits = [expected_visit(v) for v in data.visits]
    assert_rows_match(stored(data_dir, "visits"), visits, "visit_token", approximate)
    by_id = {v["id"]: v for v in data.visits}
    events = [expected_event(e, by_id, database) for e in data.events]
    assert_rows_match(stored(data_dir, "events"), events, "event_id")
    identities = [
        {"visit_token": v["visit_token"], "visitor_token": v["visitor_token"], "user_id": v["user_id"],
         "time": v["started_at"], "source": "import", "node_id": None}
        for v in visits if v["user_id"] is not None
    ]  # fmt: skip
    assert_rows_match(stored(data_dir, "identities"), identities, "visit_token")


def written(result: ImportResult) -> dict[str, int]:
    return {step.table: step.written for step in result.steps}


def all_rows(data_dir: Path, kind: str) -> int:
    """Rows in the table's files, duplicates included (the views would hide them)."""
    import duckdb

    from trailcli.store import tables

    files = tables.file_list(data_dir, kind)
    if not files:
        return 0
    return int(
        duckdb.sql("SELECT count(*) FROM read_parquet($f)", params={"f": files}).fetchall()[0][0]
    )


# --- PostgreSQL -----------------------------------------------------------------------------------


def test_postgres_rows_arrive_field_by_field(ahoy_pg_main: Any) -> None:
    _url, data, data_dir, result, _ = ahoy_pg_main
    check_everything(data_dir, data, "ahoy_main")
    assert written(result) == {
        "visits": len(data.visits),
        "identities": sum(v["user_id"] is not None for v in data.visits),
        "events": len(data.events),
    }


def test_postgres_import_reports_progress_per_batch(ahoy_pg_main: Any) -> None:
    _url, data, _data_dir, _result, progress = ahoy_pg_main
    events = [n for table, n in progress if table == "events"]
    assert events == [min(128 * (i + 1), len(data.events)) for i in range(len(events))]
    assert events[-1] == len(data.events)


def test_postgres_second_import_adds_nothing(ahoy_pg_main: Any) -> None:
    url, data, data_dir, _result, _ = ahoy_pg_main
    before = {k: all_rows(data_dir, k) for k in ("visits", "events", "identities")}
    again = import_ahoy(data_dir, AhoyImport(url, batch_size=128))
    assert written(again) == {"visits": 0, "identities": 0, "events": 0}
    assert {s.table: s.read for s in again.steps} == {"visits": 0, "identities": 0, "events": 0}
    assert {k: all_rows(data_dir, k) for k in before} == before
    check_everything(data_dir, data, "ahoy_main")


def test_postgres_new_rows_are_imported_on_the_next_run(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database("ahoy_grow")
    data = generate(seed=2, visits=60, odd=False)
    create_postgres_tables(url, extra_column=data.extra_column)
    first = AhoyData(
        data.visits[:40], [e for e in data.events if e["visit_id"] <= 40], data.extra_column
    )
    fill_postgres(url, first)
    import_ahoy(tmp_path, AhoyImport(url))
    rest = AhoyData(
        data.visits[40:], [e for e in data.events if e["visit_id"] > 40], data.extra_column
    )
    fill_postgres(url, rest)
    result = import_ahoy(tmp_path, AhoyImport(url))
    assert written(result)["visits"] == 20
    assert written(result)["events"] == len(rest.events)
    check_everything(tmp_path, data, "ahoy_grow")


def test_since_limits_visits_by_start_and_events_by_time(ahoy_pg_main: Any, tmp_path: Path) -> None:
    url, data, _data_dir, _result, _ = ahoy_pg_main
    since = START + timedelta(days=2)
    import_ahoy(tmp_path, AhoyImport(url, since=since))
    visits = {r["visit_token"] for r in stored(tmp_path, "visits")}
    assert visits == {v["visit_token"] for v in data.visits if v["started_at"] >= since}
    events = {r["event_id"] for r in stored(tmp_path, "events")}
    assert events == {
        f"ahoy:ahoy_main/ahoy_events:{e['id']}" for e in data.events if e["time"] >= since
    }


def test_people_erased_from_the_data_dir_are_not_imported_again(
    ahoy_pg_main: Any, tmp_path: Path
) -> None:
    from trailcli.store import erasure

    url, data, _data_dir, _result, _ = ahoy_pg_main
    gone = data.visits[0]["visitor_token"]
    erasure.add(tmp_path, {"visitor_token": [gone]})
    import_ahoy(tmp_path, AhoyImport(url))
    visits = {r["visit_token"] for r in stored(tmp_path, "visits")}
    assert visits == {v["visit_token"] for v in data.visits if v["visitor_token"] != gone}
    assert all(e["visitor_token"] != gone for e in stored(tmp_path, "events"))


def test_non_utf8_bytes_become_replacement_characters(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A SQL_ASCII database stores bytes as they came: Latin-1 text, broken UTF-8."""
    import psycopg

    url = postgres_server.create_database("ahoy_sql_ascii", encoding="SQL_ASCII")
    create_postgres_tables(url, properties_type="text")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ahoy_visits (id, visit_token, visitor_token, user_agent, landing_page, "
            "started_at) VALUES (1, 'v1', 'w1', convert_from('\\x4361666520c3a920e9'::bytea, "
            "'SQL_ASCII'), 'https://shop.example/caf' || convert_from('\\xe9'::bytea, 'SQL_ASCII'), "
            "'2026-03-02 10:00:00')"
        )
        conn.execute(
            "INSERT INTO ahoy_events (id, visit_id, name, properties, time) VALUES "
            "(1, 1, 'na' || convert_from('\\xefbbbf'::bytea, 'SQL_ASCII') || convert_from('\\xff'::bytea, 'SQL_ASCII'), "
            "'{\"k\": \"' || convert_from('\\xe9'::bytea, 'SQL_ASCII') || '\"}', '2026-03-02 10:00:01'), "
            "(2, 1, 'yaml', E'---\\n:a: 1\\n', '2026-03-02 10:00:02')"
        )
    import_ahoy(tmp_path, AhoyImport(url))
    [visit] = stored(tmp_path, "visits")
    assert visit["user_agent"] == "Cafe é \ufffd"
    assert visit["landing_page"] == "https://shop.example/caf\ufffd"
    events = {e["event_id"]: e for e in stored(tmp_path, "events")}
    first = events["ahoy:ahoy_sql_ascii/ahoy_events:1"]
    assert first["name"] == "na\ufeff\ufffd"
    assert json.loads(first["properties"]) == {"k": "\ufffd"}
    # text properties that are not JSON (YAML from an old serializer) are kept as a string
    assert json.loads(events["ahoy:ahoy_sql_ascii/ahoy_events:2"]["properties"]) == "---\n:a: 1\n"


def test_rows_without_a_time_are_skipped_and_counted(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    import psycopg

    url = postgres_server.create_database("ahoy_no_time")
    create_postgres_tables(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ahoy_visits (id, visit_token, visitor_token, started_at) VALUES "
            "(1, 'v1', 'w1', '2026-03-02 10:00'), (2, 'v2', 'w2', NULL), (3, NULL, 'w3', '2026-03-02'),"
            "(4, 'v4', 'w4', 'infinity')"
        )
        conn.execute(
            "INSERT INTO ahoy_events (id, visit_id, name, properties, time) VALUES "
            "(1, 1, 'a', '{}', '2026-03-02 10:00:01'), (2, 1, 'b', '{}', NULL)"
        )
    result = import_ahoy(tmp_path, AhoyImport(url))
    assert {s.table: (s.read, s.written, s.skipped) for s in result.steps} == {
        "visits": (4, 1, 3),
        "identities": (4, 0, 0),
        "events": (2, 1, 1),
    }
    assert "ahoy_visits: skipped 3 rows without a visit token or start time" in result.notes
    assert "ahoy_events: skipped 1 rows without a time" in result.notes
    # the watermark passed them: a rerun reads nothing
    assert {s.table: s.read for s in import_ahoy(tmp_path, AhoyImport(url)).steps}["events"] == 0


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ("DROP TABLE ahoy_events", "The source database has no table ahoy_events."),
        (
            "ALTER TABLE ahoy_visits DROP COLUMN visitor_token",
            "ahoy_visits has no column visitor_token",
        ),
        (
            "ALTER TABLE ahoy_events RENAME COLUMN time TO occurred_at",
            "ahoy_events has no column time",
        ),
        (
            "ALTER TABLE ahoy_events ALTER COLUMN time TYPE text",
            "ahoy_events.time is text; the import reads it as a timestamp.",
        ),
        (
            "ALTER TABLE ahoy_visits ALTER COLUMN latitude TYPE text",
            "ahoy_visits.latitude is text; the import reads it as a number or an integer.",
        ),
        (
            "DROP INDEX index_ahoy_events_on_properties; ALTER TABLE ahoy_events ALTER COLUMN properties TYPE bytea USING NULL",
            "ahoy_events.properties is bytea; the import reads it as JSON or text.",
        ),
        (
            "ALTER TABLE ahoy_visits ALTER COLUMN id DROP DEFAULT, ALTER COLUMN id TYPE uuid USING gen_random_uuid()",
            "ahoy_visits.id is uuid; the import reads it as an integer.",
        ),
    ],
)
def test_schema_problems_are_named_before_anything_is_written(
    postgres_server: PostgresServer, tmp_path: Path, ddl: str, message: str
) -> None:
    import psycopg

    url = postgres_server.create_database("ahoy_bad_schema")
    data = generate(seed=3, visits=5, odd=False)
    create_postgres_tables(url, extra_column=data.extra_column)
    fill_postgres(url, data)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ddl)
    with pytest.raises(TrailError) as caught:
        import_ahoy(tmp_path, AhoyImport(url))
    assert caught.value.message.startswith(message)
    assert caught.value.hint
    assert not (tmp_path / "visits").exists() and not (tmp_path / "events").exists()


def test_optional_columns_may_be_missing(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """Ahoy's template: "the rest are recommended but optional, simply remove any you don't want"."""
    import psycopg

    url = postgres_server.create_database("ahoy_slim")
    data = generate(seed=4, visits=20, odd=False)
    create_postgres_tables(url, extra_column=data.extra_column)
    fill_postgres(url, data)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE ahoy_visits DROP COLUMN user_id, DROP COLUMN city, DROP COLUMN ip"
        )
        conn.execute("ALTER TABLE ahoy_events DROP COLUMN user_id")
    import_ahoy(tmp_path, AhoyImport(url))
    visits = stored(tmp_path, "visits")
    assert len(visits) == 20
    assert {(v["user_id"], v["city"], v["ip"]) for v in visits} == {(None, None, None)}
    assert {e["user_id"] for e in stored(tmp_path, "events")} == {None}
    assert not (tmp_path / "identities").exists()


# --- MariaDB --------------------------------------------------------------------------------------


def test_mariadb_rows_arrive_field_by_field(ahoy_maria_main: Any) -> None:
    _url, data, data_dir, result = ahoy_maria_main
    check_everything(data_dir, data, "ahoy_main", approximate=True)
    assert written(result)["events"] == len(data.events)


def test_mariadb_second_import_adds_nothing(ahoy_maria_main: Any) -> None:
    url, _data, data_dir, _result = ahoy_maria_main
    before = {k: all_rows(data_dir, k) for k in ("visits", "events", "identities")}
    again = import_ahoy(data_dir, AhoyImport(url))
    assert written(again) == {"visits": 0, "identities": 0, "events": 0}
    assert {k: all_rows(data_dir, k) for k in before} == before


def test_mariadb_latin1_tables_arrive_as_text(
    mariadb_server: MariaDBServer, tmp_path: Path
) -> None:
    """Tables made in a latin1 database (MySQL's old default) hold Latin-1 bytes, not UTF-8."""
    url = mariadb_server.create_database("ahoy_latin1", charset="latin1")
    create_mysql_tables(mariadb_server, "ahoy_latin1")
    conn = mariadb_server.connect("ahoy_latin1")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'ahoy_latin1' AND COLUMN_NAME = 'user_agent'"
        )
        assert cur.fetchone()[0] == "latin1"
        cur.execute(
            "INSERT INTO ahoy_visits (id, visit_token, visitor_token, city, referrer, started_at) "
            "VALUES (1, 'v1', 'w1', %s, %s, '2026-03-02 10:00:00')",
            ("Zürich", "https://www.google.de/search?q=caf%C3%A9"),
        )
        cur.execute(
            "INSERT INTO ahoy_events (id, visit_id, name, properties, time) VALUES "
            "(1, 1, %s, %s, '2026-03-02 10:00:01')",
            ("Bestätigt", json.dumps({"k": "é"})),
        )
    conn.close()
    import_ahoy(tmp_path, AhoyImport(url))
    [visit] = stored(tmp_path, "visits")
    assert visit["city"] == "Zürich"
    assert visit["search_term"] == "café"
    [event] = stored(tmp_path, "events")
    assert event["name"] == "Bestätigt"
    assert json.loads(event["properties"]) == {"k": "é"}


def test_a_database_that_cannot_be_reached_is_named(tmp_path: Path) -> None:
    from ahoy_databases import free_port

    port = free_port()
    for url in (
        f"postgresql://me:secret@127.0.0.1:{port}/app",
        f"mysql://me:secret@127.0.0.1:{port}/app",
    ):
        with pytest.raises(TrailError) as caught:
            import_ahoy(tmp_path, AhoyImport(url))
        assert caught.value.message.startswith(
            f"Cannot connect to {url.split(':')[0]}://me@127.0.0.1:{port}/app"
        )
        assert "secret" not in str(caught.value)


def test_tabs_newlines_and_backslashes_survive_the_copy(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    import psycopg

    url = postgres_server.create_database("ahoy_escapes")
    create_postgres_tables(url, extra_column="note")
    tricky = "a\tb\nc\\nd\\\\e\rf\x0bg\x08h\x0ci \\N"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ahoy_visits (id, visit_token, visitor_token, user_agent, city, note, started_at) "
            "VALUES (1, 'v1', 'w1', %s, '', %s, '2026-03-02 10:00')",
            (tricky, "\\N"),
        )
        conn.execute(
            "INSERT INTO ahoy_events (id, visit_id, name, properties, time) VALUES "
            "(1, 1, %s, %s, '2026-03-02 10:00:01')",
            (tricky, json.dumps({"k": tricky, "back": "\\"})),
        )
    import_ahoy(tmp_path, AhoyImport(url))
    [visit] = stored(tmp_path, "visits")
    assert visit["user_agent"] == tricky
    assert visit["city"] is None  # empty text is null, as everywhere in trail
    assert json.loads(visit["extra"]) == {"note": "\\N"}  # the text \N, not a NULL
    [event] = stored(tmp_path, "events")
    assert event["name"] == tricky
    assert json.loads(event["properties"]) == {"k": tricky, "back": "\\"}
