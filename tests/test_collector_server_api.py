"""POST /api/visits and /api/events: the app server's tracking with the secret, on a real app and WAL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from collector_support import BOT_UA, BROWSER_UA, Clock, make_settings, stored

from trailcli.collector.ahoy import AHOY
from trailcli.collector.app import create_app
from trailcli.collector.keys import METRICS

SECRET = "app-server-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.5 Mobile/15E148 Safari/604.1"
)


class Api:
    """A live in-process collector with a fixed clock; `rows(kind)` closes it and reads the table."""

    def __init__(self, client: Any, data_dir: Path) -> None:
        self.client = client
        self.data_dir = data_dir
        self.app = client.server.app

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        resp = await self.client.post(path, json=body, headers=AUTH if headers is None else headers)
        text = await resp.text()
        return resp.status, json.loads(text) if text.startswith(("{", "[")) else text

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return float(self.app[METRICS].value(name, labels))

    async def rows(self, kind: str) -> list[dict[str, Any]]:
        await self.client.close()
        return stored(self.data_dir, kind)


@pytest.fixture
def start(aiohttp_client: Any, data_dir: Path) -> Any:
    async def go(**overrides: Any) -> Api:
        app = create_app(make_settings(data_dir, **{"secret": SECRET, **overrides}))
        app[AHOY].clock = Clock(NOW)
        return Api(await aiohttp_client(app), data_dir)

    return go


def track(**kw: Any) -> dict[str, Any]:
    event = {"id": "e-1", "name": "Viewed product", "properties": {"product_id": 7, "gift": True}}
    return {"visit_token": "v-1", "visitor_token": "w-1", "events": [{**event, **kw}]}


async def test_events_need_the_secret(start: Any) -> None:
    api = await start()
    assert (await api.post("/api/events", track(), headers={}))[0] == 401
    status, body = await api.post("/api/events", track(), headers={"Authorization": "Bearer nope"})
    assert status == 401 and body["error"] == "Missing or wrong bearer secret."
    assert (await api.post("/api/visits", {"visit_token": "v", "visitor_token": "w"}, headers={}))[
        0
    ] == 401
    assert await api.rows("events") == []


async def test_without_a_configured_secret_the_api_is_closed(start: Any) -> None:
    api = await start(secret=None)
    status, body = await api.post("/api/events", track())
    assert status == 403 and body["hint"] == "set TRAIL_SECRET or --secret-file"


async def test_an_event_keeps_the_trusted_user_and_time(start: Any) -> None:
    api = await start()
    earlier = NOW - timedelta(hours=3)  # older than the browser's 60 s window: kept all the same
    status, body = await api.post("/api/events", {**track(time=earlier.timestamp()), "user_id": 42})
    assert (status, body) == (200, {"stored": 1, "duplicates": 0, "excluded": 0})
    [row] = await api.rows("events")
    assert row["event_id"] == "e-1"
    assert (row["visit_token"], row["visitor_token"], row["user_id"]) == ("v-1", "w-1", "42")
    assert row["time"] == earlier
    assert row["received_at"] == NOW
    assert json.loads(row["properties"]) == {"product_id": 7, "gift": True}


async def test_a_time_in_the_future_or_missing_is_the_time_of_receipt(start: Any) -> None:
    api = await start()
    body = track(time=(NOW + timedelta(hours=1)).isoformat())
    body["events"].append({"id": "e-2", "name": "no time"})
    assert (await api.post("/api/events", body))[1]["stored"] == 2
    assert {r["time"] for r in await api.rows("events")} == {NOW}


async def test_a_repeated_event_id_is_stored_once(start: Any) -> None:
    api = await start()
    assert (await api.post("/api/events", track()))[1]["stored"] == 1
    assert (await api.post("/api/events", track()))[1] == {
        "stored": 0,
        "duplicates": 1,
        "excluded": 0,
    }
    assert api.metric("drops_total", {"reason": "duplicate_event"}) == 1
    assert len(await api.rows("events")) == 1


async def test_a_single_event_at_the_top_level(start: Any) -> None:
    api = await start()
    body = {"visit_token": "v-1", "name": "Signed up", "properties": {"plan": "pro"}, "id": "e-9"}
    assert (await api.post("/api/events", body))[1]["stored"] == 1
    [row] = await api.rows("events")
    assert (row["name"], row["event_id"]) == ("Signed up", "e-9")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"events": [{"name": "x"}]}, 400, "visit_token is required."),
        ({"visit_token": "v-1", "events": {"name": "x"}}, 400, "Invalid parameters"),
        ({"visit_token": "v-1", "events": [{"name": "x"}, 3]}, 400, "Invalid parameters"),
        (
            {"visit_token": "v-1", "events": [{"name": "x", "properties": "p" * 9000}]},
            413,
            "Payload too large",
        ),
    ],
)
async def test_bad_bodies_are_refused_and_nothing_is_stored(
    start: Any, body: Any, status: int, error: str
) -> None:
    api = await start()
    got_status, got = await api.post("/api/events", body)
    assert (got_status, got["error"]) == (status, error)
    assert got["hint"]
    assert await api.rows("events") == []


async def test_only_the_first_ten_events_are_kept_as_on_the_ahoy_path(start: Any) -> None:
    api = await start()
    body = {"visit_token": "v-1", "events": [{"id": f"e-{i}", "name": "n"} for i in range(12)]}
    assert (await api.post("/api/events", body))[1]["stored"] == 10
    assert api.metric("drops_total", {"reason": "over_event_limit"}) == 2


async def test_an_event_for_an_unknown_visit_creates_it_from_what_the_app_server_sent(
    start: Any,
) -> None:
    api = await start()
    body = {
        **track(time=(NOW - timedelta(minutes=5)).timestamp()),
        "ip": "203.0.113.9",
        "user_agent": IPHONE,
    }
    assert (await api.post("/api/events", body))[1]["stored"] == 1
    [visit] = await api.rows("visits")
    assert (visit["visit_token"], visit["ip"], visit["device_type"]) == (
        "v-1",
        "203.0.113.9",
        "Mobile",
    )
    assert visit["started_at"] == NOW - timedelta(minutes=5)


async def test_without_a_user_agent_the_visit_is_not_a_bot(start: Any) -> None:
    api = await start()
    assert (await api.post("/api/events", track()))[1]["stored"] == 1
    [visit] = await api.rows("visits")
    assert (visit["user_agent"], visit["device_type"], visit["ip"]) == (None, "Other", None)


async def test_a_bot_user_agent_is_excluded_unless_bots_are_tracked(start: Any) -> None:
    api = await start()
    status, body = await api.post("/api/events", {**track(), "user_agent": BOT_UA})
    assert (status, body) == (200, {"stored": 0, "duplicates": 0, "excluded": 1})
    assert await api.rows("events") == []


async def test_a_server_side_visit_with_its_user(start: Any) -> None:
    api = await start()
    started = NOW - timedelta(seconds=30)
    visit = {
        "visit_token": "v-7", "visitor_token": "w-7", "user_id": 42, "started_at": started.timestamp(),
        "ip": "198.51.100.4", "user_agent": BROWSER_UA, "referrer": "https://www.google.com/search?q=boots",
        "landing_page": "https://shop.example/boots?utm_source=Newsletter", "platform": "Web",
        "browser": "Firefox", "os": "Mac", "device_type": "Desktop", "referring_domain": "www.google.com",
        "country": "Germany", "latitude": 52.5, "accept_language": "de-DE",
    }  # fmt: skip
    status, body = await api.post("/api/visits", visit)
    assert (status, body) == (
        200,
        {"visit_token": "v-7", "stored": True, "excluded": False, "bound": True},
    )
    again = await api.post("/api/visits", {**visit, "user_id": 43})
    assert again[1] == {"visit_token": "v-7", "stored": False, "excluded": False, "bound": False}
    [row] = await api.rows("visits")
    assert row["started_at"] == started
    assert (row["ip"], row["user_agent"], row["browser"], row["device_type"]) == (
        "198.51.100.4", BROWSER_UA, "Firefox", "Desktop"
    )  # fmt: skip
    assert (row["referring_domain"], row["search_term"], row["utm_source"]) == (
        "www.google.com",
        "boots",
        "Newsletter",
    )
    assert (row["country"], row["latitude"]) == ("Germany", 52.5)
    assert json.loads(row["extra"]) == {"accept_language": "de-DE"}
    [binding] = stored(api.data_dir, "identities")
    assert (binding["visit_token"], binding["user_id"], binding["source"], binding["time"]) == (
        "v-7",
        "42",
        "api",
        started,
    )


async def test_a_visit_needs_both_tokens(start: Any) -> None:
    api = await start()
    status, body = await api.post("/api/visits", {"visit_token": "v-1"})
    assert status == 400 and body["error"] == "visit_token and visitor_token are required."
    assert await api.rows("visits") == []


async def test_events_after_a_server_side_visit_take_its_visitor(start: Any) -> None:
    api = await start()
    await api.post(
        "/api/visits", {"visit_token": "v-3", "visitor_token": "w-3", "user_agent": BROWSER_UA}
    )
    await api.post("/api/events", {"visit_token": "v-3", "events": [{"id": "x", "name": "n"}]})
    [event] = await api.rows("events")
    assert event["visitor_token"] == "w-3"
