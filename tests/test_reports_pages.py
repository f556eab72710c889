"""Pages: the reference's example sessions give exactly these page figures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.test_reports_paths import REFERENCE, T0, view_rows
from trailcli.reports.pages import PagesQuery, pages_report


def _rows(table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


def test_reference_pages(data_dir: Path, write_rows) -> None:
    write_rows("events", view_rows(REFERENCE))
    assert _rows(pages_report(data_dir, PagesQuery())) == [
        ("/", 3, 3, 3, 0, 0.0),
        ("/pricing", 2, 2, 0, 1, 0.5),
        ("/docs", 1, 1, 0, 1, 1.0),
        ("/signup", 1, 1, 0, 1, 1.0),
    ]
    titles = pages_report(data_dir, PagesQuery(by="title", limit=1))
    assert titles.column_names[0] == "title"
    assert _rows(titles) == [("Title /", 3, 3, 3, 0, 0.0)]


def test_repeat_views_sessions_range_and_bots(data_dir: Path, write_rows) -> None:
    rows = view_rows([("a", ["/", "/", "/x"]), ("a", ["/x"]), ("bot", ["/"])])
    rows.append(
        {
            "event_id": "click",
            "visit_token": "v0",
            "visitor_token": "a",
            "name": "click",
            "time": T0 + timedelta(minutes=5),
        }
    )
    write_rows("events", rows)
    write_rows(
        "visits",
        [{"visit_token": "v2", "visitor_token": "bot", "device_type": "Bot", "started_at": T0}],
    )
    assert _rows(pages_report(data_dir, PagesQuery())) == [
        ("/", 2, 1, 1, 0, 0.0),
        ("/x", 2, 1, 1, 2, 1.0),
    ]
    with_bots = pages_report(data_dir, PagesQuery(include_bots=True)).to_pylist()
    assert with_bots[0]["views"] == 3 and with_bots[0]["visitors"] == 2
    later = pages_report(data_dir, PagesQuery(start=T0 + timedelta(minutes=30)))
    assert _rows(later) == [("/x", 1, 1, 1, 1, 1.0)]
    # with a 2-hour timeout the two sessions of `a` are one: one entry, one exit
    long = pages_report(data_dir, PagesQuery(session_timeout=timedelta(hours=2)))
    assert _rows(long) == [("/", 2, 1, 1, 0, 0.0), ("/x", 2, 1, 0, 1, 0.5)]
