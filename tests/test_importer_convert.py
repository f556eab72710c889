"""An imported visit equals what the collector's visit builder makes of the same fields.

The import converts batches column by column; the collector builds one visit at a time
(`ahoy_payload.visit_record` plus the enrichment of `collector/ahoy.py`). Generated rows with
awkward text (long URLs, NUL, empty strings, non-URLs, click ids, UTM tags) must give the same
fields both ways.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trailcli.collector import ahoy_payload as payload
from trailcli.collector import enrich
from trailcli.importer import raw
from trailcli.importer.convert import VisitConverter, stored_device

URLS = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(
        [
            "https://www.google.com/search?q=red+shoes",
            "https://www.bing.com/search?q=caf%C3%A9&form=x",
            "https://m.facebook.com/",
            "https://www.shop.example/p/1?utm_source=News&utm_medium=email&gclid=abc",
            "https://www.shop.example/?fbclid=1&utm_campaign=spring",
            "android-app://com.google.android.gm",
            "not a url",
            "http://[::1",
            "https://example.org/" + "x" * 5000,
        ]
    ),
    st.text(max_size=40).map(lambda t: "https://site.example/" + t),
)
TEXT = st.one_of(st.none(), st.just(""), st.text(max_size=30), st.just("with\x00nul"))
AGENTS = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(
        [
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:78.0) Gecko/20100101 Firefox/78.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "curl/8.0",
        ]
    ),
)
ROW = st.fixed_dictionaries(
    {
        "visit_token": st.one_of(st.just(""), st.text(min_size=1, max_size=12)),
        "visitor_token": TEXT,
        "user_id": st.one_of(st.none(), st.integers(0, 10**6).map(str)),
        "ip": TEXT,
        "user_agent": AGENTS,
        "referrer": URLS,
        "landing_page": URLS,
        "browser": TEXT,
        "os": TEXT,
        "device_type": st.sampled_from([None, "Desktop", "Smartphone", "Tablet", "TV", "Bot"]),
        "city": TEXT,
        "utm_source": TEXT,
        "utm_medium": TEXT,
        "platform": TEXT,
        "screen_width": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
        "latitude": st.one_of(st.none(), st.floats(-90, 90)),
        "accept_language": TEXT,
    }
)


def collector_visit(row: dict[str, Any], started: datetime) -> dict[str, Any] | None:
    """The collector's way: the visit builder over the row's params, then the enrichment."""
    token = payload.text_or_none(row["visit_token"], 1024)
    if token is None:
        return None
    skip = (
        "id",
        "started_at",
        "ip",
        "user_agent",
        "browser",
        "os",
        "device_type",
        "city",
        "latitude",
    )
    params = {k: v for k, v in row.items() if v is not None and k not in skip}
    record = payload.visit_record(
        params,
        visit_token=token,
        visitor_token=payload.text_or_none(row["visitor_token"], 1024),
        user_id=payload.text_or_none(row["user_id"], 255),
        started_at=started,
    )
    agent = payload.text_or_none(row["user_agent"], 2048)
    device = enrich.parse_user_agent(agent) if agent else stored_device(row)
    record.update(
        ip=payload.text_or_none(row["ip"], 64), user_agent=agent, browser=device.browser,
        os=device.os, device_type=device.device_type, city=payload.text_or_none(row["city"], 255),
        latitude=row["latitude"], country=None, region=None, longitude=None,
    )  # fmt: skip
    return record


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=12))
def test_the_batch_conversion_equals_the_collectors_visit_builder(
    rows: list[dict[str, Any]],
) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    names = [*raw.VISIT_RAW, "accept_language"]
    full = [
        {**dict.fromkeys(names), **row, "id": i + 1, "started_at": start + timedelta(seconds=i)}
        for i, row in enumerate(rows)
    ]
    batch = raw.from_rows(names, ([r[n] for n in names] for r in full))
    visits, identities, source_ids = VisitConverter().convert(batch)
    got = visits.to_pylist()
    want = [v for r in full if (v := collector_visit(r, r["started_at"])) is not None]
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert mine.pop("date") == mine["started_at"].strftime("%Y-%m-%d")
        for key, value in theirs.items():
            if key == "extra":
                assert (json.loads(mine[key]) if mine[key] else None) == (
                    json.loads(value) if value else None
                )
            else:
                assert mine[key] == value, (key, mine[key], value)
    with_user = [
        (r["id"], v)
        for r, v in zip(full, [collector_visit(r, r["started_at"]) for r in full], strict=True)
        if v and v["user_id"]
    ]
    assert source_ids.to_pylist() == [i for i, _ in with_user]
    assert [(i["visit_token"], i["user_id"], i["source"]) for i in identities.to_pylist()] == [
        (v["visit_token"], v["user_id"], "import") for _, v in with_user
    ]
