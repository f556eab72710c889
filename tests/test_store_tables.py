"""Records to Arrow: whole-column conversion for the WAL's text records, value by value otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from trailcli.store import tables
from trailcli.store.schema import KINDS

AT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _event(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_id": "e1", "visit_token": "v1", "visitor_token": "u1", "user_id": None,
        "name": "$view", "properties": '{"page":"/p"}',
        "time": AT.isoformat(), "received_at": AT.isoformat(),
    }  # fmt: skip
    row.update(changes)
    return row


@pytest.mark.parametrize(
    "changes",
    [
        {},  # as the WAL holds them: text times with their offset, properties as text
        {"time": "2026-03-01T14:30:15.123456+02:00"},  # another offset: the same instant
        {"time": "2026-03-01T12:30:15.123456"},  # no offset: UTC, value by value
        {"time": AT},  # a datetime
        {"time": AT.timestamp()},  # epoch seconds
        {"properties": {"page": "/p"}},  # an object
        {"user_id": None, "name": None},
        {"time": "2026-03-01T12:30:15.1234567+00:00"},  # beyond microseconds: truncated
    ],
)
def test_every_record_shape_gives_the_table_of_the_value_by_value_conversion(
    changes: dict[str, object],
) -> None:
    rows = [_event(), _event(event_id="e2", **changes)]
    table = tables.to_arrow("events", rows)
    expected = tables.with_date(KINDS["events"], tables._value_by_value(KINDS["events"], rows))
    assert table.equals(expected)
    assert table.column("time")[1].as_py() == datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert table.column("date").to_pylist() == ["2026-03-01", "2026-03-01"]


def test_text_times_are_converted_whole_columns_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(*_: object) -> pa.Table:
        raise AssertionError("converted value by value")

    monkeypatch.setattr(tables, "_value_by_value", no_fallback)
    offset = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))).isoformat()
    table = tables.to_arrow("events", [_event(), _event(event_id="e2", time=offset)])
    assert table.column("time")[1].as_py() == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_value_no_conversion_can_store_still_fails() -> None:
    with pytest.raises((TypeError, ValueError)):
        tables.to_arrow("events", [_event(time="not a time")])
