"""Output formats: table, CSV, JSON, NDJSON; nested values, times in --tz, empty results."""

import csv
import io
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa
import pytest

from trailcli.render import Format, bar, render, sparkline

ROWS = [
    {
        "user_id": "u1",
        "online_since": datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        "clients": 2,
        "channels": ["/chat", "/news"],
        "detail": {"reason": "disconnect", "n": 1},
        "share": 0.25,
        "note": None,
    },
    {
        "user_id": 'u,2"x',
        "online_since": datetime(2026, 2, 1, 0, 0, tzinfo=UTC),
        "clients": 1,
        "channels": [],
        "detail": {},
        "share": 1.0,
        "note": "a b",
    },
]


def rendered(frame, fmt: Format, tz: str = "UTC") -> str:
    out = io.StringIO()
    render(frame, fmt, out, tz=ZoneInfo(tz))
    return out.getvalue()


@pytest.mark.parametrize(
    "make", [lambda: ROWS, lambda: pl.DataFrame(ROWS), lambda: pa.Table.from_pylist(ROWS)]
)
def test_json_is_one_array_of_flat_objects_with_nested_values(make) -> None:
    data = json.loads(rendered(make(), Format.json, "Europe/Paris"))
    assert isinstance(data, list) and len(data) == 2
    first = data[0]
    assert first["online_since"] == "2026-02-01T00:30:00+01:00"
    assert first["channels"] == ["/chat", "/news"]
    assert first["detail"]["reason"] == "disconnect"
    assert first["share"] == 0.25 and first["note"] is None


def test_ndjson_one_object_per_line() -> None:
    lines = rendered(ROWS, Format.ndjson).splitlines()
    assert [json.loads(line)["user_id"] for line in lines] == ["u1", 'u,2"x']


def test_csv_encodes_nested_values_as_json_and_quotes_text() -> None:
    rows = list(csv.DictReader(io.StringIO(rendered(ROWS, Format.csv))))
    assert rows[0]["channels"] == '["/chat","/news"]'
    assert json.loads(rows[0]["detail"]) == {"reason": "disconnect", "n": 1}
    assert rows[1]["user_id"] == 'u,2"x'
    assert rows[0]["note"] == "" and rows[0]["online_since"] == "2026-01-31T23:30:00+00:00"


def test_table_aligns_columns() -> None:
    lines = rendered(ROWS, Format.table).splitlines()
    assert lines[0].split() == list(ROWS[0].keys())
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].startswith("u1 ")


@pytest.mark.parametrize("fmt", list(Format))
def test_empty_results(fmt: Format) -> None:
    empty = pl.DataFrame({"user_id": pl.Series([], dtype=pl.String)})
    text = rendered(empty, fmt)
    if fmt is Format.json:
        assert json.loads(text) == []
    elif fmt is Format.ndjson:
        assert text == ""
    elif fmt is Format.csv:
        assert text == "user_id\n"
    else:
        assert "(no rows)" in text


def test_sparkline_and_bar() -> None:
    assert sparkline([0, 4, 8]) == " ▄█"
    assert sparkline([]) == ""
    assert bar(5, 10, width=10) == "█" * 5
    assert bar(0, 0) == ""
