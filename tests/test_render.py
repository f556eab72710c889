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
    assert set(lines[1].replace(" ", "")) == {"─"}
    assert lines[2].startswith("u1 ")
    starts = {line.index("2026") for line in lines[2:]}
    assert len(starts) == 1  # the time column starts at the same place on every row


def table_cells(rows, tz: str = "UTC", width: int = 200) -> list[dict[str, str]]:
    """The cells of a rendered table whose cells are all filled and hold no double space."""
    import re

    from trailcli.render_table import write_table

    out = io.StringIO()
    names = list(rows[0])
    write_table(names, rows, out, ZoneInfo(tz), width=width)
    header, _rule, *body = out.getvalue().splitlines()
    assert header.split() == names
    return [dict(zip(names, re.split(r"\s{2,}", line.strip()), strict=True)) for line in body]


def test_table_shows_values_for_people() -> None:
    rows = [
        {
            "name": "checkout",
            "reached": 12345,
            "conv_step": 0.2317,
            "exit_rate": 1.0,
            "median_seconds": 29_580.0,
            "gap_seconds": 82.4,
            "p90_seconds": 4.25,
            "time": datetime(2026, 3, 1, 13, 0, 5, 123456, tzinfo=UTC),
            "seq": 1772370000000000,
            "avg_online": 1234.5678,
        }
    ]
    (cells,) = table_cells(rows, tz="Europe/Paris")
    assert cells["reached"] == "12,345"
    assert cells["conv_step"] == "23.2 %" and cells["exit_rate"] == "100.0 %"
    assert cells["median_seconds"] == "8h 13m"
    assert cells["gap_seconds"] == "1m 22s" and cells["p90_seconds"] == "4.2s"
    assert cells["time"] == "2026-03-01 14:00:05+01"
    assert cells["seq"] == "1772370000000000"  # not a count: no separators
    assert cells["avg_online"] == "1,234.57"


def test_table_keeps_machine_formats_exact() -> None:
    rows = [{"conv_step": 0.2317, "median_seconds": 29_580.0, "reached": 12345}]
    assert json.loads(rendered(rows, Format.json)) == rows
    assert rendered(rows, Format.csv).splitlines()[1] == "0.2317,29580.0,12345"


def test_long_json_cells_are_shortened_to_the_width() -> None:
    from trailcli.render_table import write_table

    rows = [
        {"time": datetime(2026, 3, 1, tzinfo=UTC), "n": 5, "detail": {"k": "v" * 300}},
        {"time": datetime(2026, 3, 1, tzinfo=UTC), "n": 123456, "detail": {"k": 1}},
    ]
    out = io.StringIO()
    write_table(list(rows[0]), rows, out, width=70)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 70
    assert lines[2].endswith("…") and "123,456" in lines[3]
    assert lines[3].endswith('{"k":1}')


def test_stream_rows_share_one_layout() -> None:
    from trailcli.render_table import TableStream

    out = io.StringIO()
    stream = TableStream(
        ["time", "name", "detail", "gap_seconds"],
        out,
        widths={"time": 22, "name": 10, "gap_seconds": 11},
        right=["gap_seconds"],
        width=80,
    )
    stream.write({"time": datetime(2026, 3, 1, tzinfo=UTC), "name": "a", "detail": {"x": 1}})
    stream.write(
        {"time": datetime(2026, 3, 1, 0, 1, 22, tzinfo=UTC), "name": "purchase-long-name",
         "detail": {"x": "y" * 200}, "gap_seconds": 82.0}
    )  # fmt: skip
    header, _rule, first, second = out.getvalue().splitlines()
    assert header.split() == ["time", "name", "detail", "gap_seconds"]
    assert second.endswith("1m 22s") and len(second) <= 80
    assert first.index("{") == second.index("{") == header.index("detail")
    assert "purchase-…" in second


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
