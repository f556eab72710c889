"""`trail sql`: every output format and the exit codes of docs/cli.md (0 ok, 2 usage, 3 no data)."""

import csv
import io
import json
from datetime import UTC, datetime

import pytest

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def events(write_rows):
    write_rows(
        "events",
        [
            {
                "event_id": "e1",
                "visit_token": "v1",
                "visitor_token": "a",
                "name": "$view",
                "properties": {"page": "/", "n": 1},
                "time": T0,
                "received_at": T0,
            },
            {
                "event_id": "e2",
                "visit_token": "v1",
                "visitor_token": "a",
                "name": "buy",
                "properties": {"total": 9.5},
                "time": T0,
                "received_at": T0,
            },
        ],
    )


QUERY = "SELECT event_id, name, time FROM events ORDER BY event_id"


def test_json(run_cli, data_dir, events) -> None:
    result = run_cli("sql", QUERY, "--data-dir", data_dir, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"event_id": "e1", "name": "$view", "time": "2026-01-05T10:00:00+00:00"},
        {"event_id": "e2", "name": "buy", "time": "2026-01-05T10:00:00+00:00"},
    ]


def test_tz_changes_how_times_print(run_cli, data_dir, events) -> None:
    result = run_cli("sql", QUERY, "--data-dir", data_dir, "-f", "ndjson", "--tz", "Asia/Tokyo")
    assert json.loads(result.stdout.splitlines()[0])["time"] == "2026-01-05T19:00:00+09:00"


def test_csv_and_table(run_cli, data_dir, events) -> None:
    rows = list(
        csv.DictReader(
            io.StringIO(run_cli("sql", QUERY, "--data-dir", data_dir, "-f", "csv").stdout)
        )
    )
    assert [r["event_id"] for r in rows] == ["e1", "e2"]
    table = run_cli("sql", QUERY, "--data-dir", data_dir).stdout
    assert table.splitlines()[0].split() == ["event_id", "name", "time"]


def test_data_dir_from_environment(run_cli, data_dir, events) -> None:
    result = run_cli(
        "sql",
        "SELECT count(*) AS n FROM events",
        "-f",
        "json",
        env={"TRAIL_DATA_DIR": str(data_dir)},
    )
    assert json.loads(result.stdout) == [{"n": 2}]


def test_empty_result_is_an_empty_array(run_cli, data_dir, events) -> None:
    result = run_cli(
        "sql", "SELECT * FROM events WHERE false", "--data-dir", data_dir, "-f", "json"
    )
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_missing_tables_read_as_empty_views(run_cli, data_dir, events) -> None:
    result = run_cli(
        "sql", "SELECT count(*) AS n FROM visits", "--data-dir", data_dir, "-f", "json"
    )
    assert result.exit_code == 0 and json.loads(result.stdout) == [{"n": 0}]


def test_no_data_is_exit_3_and_says_where_it_looked(run_cli, tmp_path) -> None:
    result = run_cli("sql", "SELECT 1", "--data-dir", tmp_path / "nothing")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert str(tmp_path / "nothing" / "events") in result.stderr
    assert "trail sample" in result.stderr


@pytest.mark.parametrize("query", ["SELEC 1", "SELECT nope FROM events", "SELECT * FROM nowhere"])
def test_bad_sql_is_a_usage_error(run_cli, data_dir, events, query) -> None:
    result = run_cli("sql", query, "--data-dir", data_dir)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: The query failed" in result.stderr


def test_bad_option_values_are_usage_errors(run_cli, data_dir, events) -> None:
    assert run_cli("sql", QUERY, "--data-dir", data_dir, "-f", "xml").exit_code == 2
    result = run_cli("sql", QUERY, "--data-dir", data_dir, "--tz", "Nowhere/City")
    assert result.exit_code == 2 and "IANA" in result.stderr


def test_statement_without_result_prints_nothing(run_cli, data_dir, events) -> None:
    result = run_cli("sql", "SET threads = 1", "--data-dir", data_dir, "-f", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_decimal_results_print_as_numbers(run_cli, data_dir, events) -> None:
    query = "SELECT sum(1) AS n, sum(0.5) AS half FROM events"
    result = run_cli("sql", query, "--data-dir", data_dir, "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 2, "half": 1.0}]


SEVERAL = "SELECT 1 AS a; SELECT 'x' AS b, 2 AS c UNION ALL SELECT 'y', 3 ORDER BY b"


def test_several_statements_print_each_result_in_order(run_cli, data_dir, events) -> None:
    text = run_cli("sql", SEVERAL, "--data-dir", data_dir, "-f", "json").stdout
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(text)
    second, _ = decoder.raw_decode(text, end + 1)
    assert first == [{"a": 1}]
    assert second == [{"b": "x", "c": 2}, {"b": "y", "c": 3}]
    csv_text = run_cli("sql", SEVERAL, "--data-dir", data_dir, "-f", "csv").stdout
    assert csv_text == "a\n1\n\nb,c\nx,2\ny,3\n"
    ndjson = run_cli("sql", SEVERAL, "--data-dir", data_dir, "-f", "ndjson").stdout
    assert [json.loads(line) for line in ndjson.splitlines()] == [{"a": 1}, *second]
    table = run_cli("sql", SEVERAL, "--data-dir", data_dir).stdout
    assert [block.splitlines()[0].split() for block in table.split("\n\n")] == [["a"], ["b", "c"]]


def test_later_statements_see_what_earlier_ones_created(run_cli, data_dir, events) -> None:
    query = (
        "CREATE TEMP TABLE buys AS SELECT * FROM events WHERE name = 'buy'; "
        "SELECT count(*) AS n FROM buys;"
    )
    result = run_cli("sql", query, "--data-dir", data_dir, "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 1}]


def test_an_error_in_a_later_statement_is_a_usage_error(run_cli, data_dir, events) -> None:
    result = run_cli("sql", "SELECT 1 AS a; SELECT nope FROM events", "--data-dir", data_dir)
    assert result.exit_code == 2
    assert result.stdout == "" and "nope" in result.stderr
