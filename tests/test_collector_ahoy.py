"""The Ahoy API against the reference's acceptance table (one test per case), on a real app and WAL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from collector_support import BOT_UA, BROWSER_UA, make_settings, stored

from trailcli.collector.ahoy import AHOY
from trailcli.collector.app import create_app
from trailcli.collector.keys import METRICS

TOKENS = {"visit_token": "visit-1", "visitor_token": "visitor-1"}
UA = {"User-Agent": BROWSER_UA}


class Collector:
    """A live in-process collector; `rows(kind)` closes it (committing the WAL) and reads the table."""

    def __init__(self, client: Any, data_dir: Path) -> None:
        self.client = client
        self.data_dir = data_dir
        self.app = client.server.app

    def post(self, path: str, **kwargs: Any) -> Any:
        headers = {**UA, **kwargs.pop("headers", {})}
        return self.client.post(path, headers=headers, **kwargs)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return float(self.app[METRICS].value(name, labels))

    async def rows(self, kind: str) -> list[dict[str, Any]]:
        await self.client.close()
        return stored(self.data_dir, kind)


Start = Callable[..., Awaitable[Collector]]


@pytest.fixture
def start(aiohttp_client, data_dir: Path) -> Start:
    async def go(**overrides: Any) -> Collector:
        client = await aiohttp_client(create_app(make_settings(data_dir, **overrides)))
        return Collector(client, data_dir)

    return go


def beacon(events: Any, tokens: dict[str, str] | None = TOKENS, **extra: str) -> FormData:
    """The multipart body ahoy.js sends with navigator.sendBeacon."""
    form = FormData()
    for key, value in (tokens or {}).items():
        form.add_field(key, value)
    for key, value in extra.items():
        form.add_field(key, value)
    form.add_field("events_json", events if isinstance(events, str) else json.dumps(events))
    return form


def event(name: str = "$view", **kw: Any) -> dict[str, Any]:
    return {"name": name, "properties": {}, "time": time.time(), "id": str(uuid.uuid4()), **kw}


def visit_body(**kw: Any) -> dict[str, Any]:
    return {
        **TOKENS,
        "platform": "Web",
        "landing_page": "https://shop.test/p?utm_source=news&utm_medium=email&utm_campaign=spring",
        "screen_width": 1440,
        "screen_height": 900,
        "js": True,
        "referrer": "https://www.example.com/search?q=x",
        **kw,
    }


# 1
async def test_ahoy_js_visit_json(start: Start) -> None:
    c = await start()
    resp = await c.post("/ahoy/visits", json=visit_body())
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await resp.json() == {
        "visit_token": "visit-1",
        "visitor_token": "visitor-1",
        "visit_id": "visit-1",
        "visitor_id": "visitor-1",
    }
    [visit] = await c.rows("visits")
    assert visit["landing_page"].startswith("https://shop.test/p?")
    assert visit["referrer"] == "https://www.example.com/search?q=x"
    assert visit["referring_domain"] == "www.example.com"
    assert (visit["utm_source"], visit["utm_medium"], visit["utm_campaign"]) == (
        "news",
        "email",
        "spring",
    )
    assert visit["utm_term"] is None
    assert visit["platform"] == "Web"
    assert (visit["screen_width"], visit["screen_height"]) == (1440, 900)
    assert (visit["browser"], visit["os"], visit["device_type"]) == (
        "Firefox",
        "Mac OS X",
        "Desktop",
    )
    assert visit["ip"] == "127.0.0.1"
    assert visit["extra"] is None


# 2
async def test_same_visit_twice_is_one_visit(start: Start) -> None:
    c = await start()
    first = await c.post("/ahoy/visits", json=visit_body())
    second = await c.post("/ahoy/visits", json=visit_body(landing_page="https://shop.test/other"))
    assert (first.status, second.status) == (200, 200)
    assert await second.json() == await first.json()
    visits = await c.rows("visits")
    assert len(visits) == 1
    assert visits[0]["landing_page"].startswith("https://shop.test/p?")


# 3
async def test_beacon_event_keeps_property_types(start: Start) -> None:
    c = await start()
    await c.post("/ahoy/visits", json=visit_body())
    props = {"n": 3, "f": 2.5, "ok": True, "no": False, "none": None, "s": "3", "list": [1, "a"]}
    resp = await c.post(
        "/ahoy/events",
        data=beacon([event("Bought", properties=props)], authenticity_token="csrf"),
    )
    assert resp.status == 200
    assert await resp.json() == {}
    [row] = await c.rows("events")
    assert row["visit_token"] == "visit-1"
    assert row["visitor_token"] == "visitor-1"
    assert row["name"] == "Bought"
    assert json.loads(row["properties"]) == props


# 4
async def test_xhr_event_json(start: Start) -> None:
    c = await start()
    resp = await c.post("/ahoy/events", json={"events": [event("Clicked")], **TOKENS})
    assert resp.status == 200
    assert await resp.text() == "{}"
    [row] = await c.rows("events")
    assert row["name"] == "Clicked"


# 5
async def test_event_time_epoch_iso_and_out_of_window(start: Start) -> None:
    c = await start()
    now = datetime.now(UTC)
    recent = now - timedelta(seconds=20)
    events = [
        event("epoch", time=recent.timestamp()),
        event("iso", time=(recent - timedelta(seconds=5)).isoformat()),
        event("old", time=(now - timedelta(minutes=2)).timestamp()),
        event("future", time=(now + timedelta(minutes=5)).isoformat()),
        event("junk", time="yesterday-ish"),
    ]
    resp = await c.post("/ahoy/events", json={"events": events, **TOKENS})
    assert resp.status == 200
    rows = {r["name"]: r for r in await c.rows("events")}
    assert abs(rows["epoch"]["time"] - recent) < timedelta(milliseconds=1)
    assert abs(rows["iso"]["time"] - (recent - timedelta(seconds=5))) < timedelta(milliseconds=1)
    for name in ("old", "future", "junk"):
        assert rows[name]["time"] == rows[name]["received_at"], name


async def test_event_time_never_before_visit_start(start: Start) -> None:
    c = await start()
    await c.post("/ahoy/visits", json=visit_body())
    early = datetime.now(UTC) - timedelta(seconds=30)
    await c.post("/ahoy/events", json={"events": [event(time=early.timestamp())], **TOKENS})
    await c.client.close()
    [visit] = stored(c.data_dir, "visits")
    [row] = stored(c.data_dir, "events")
    assert row["time"] == visit["started_at"]


# 6
async def test_event_for_unknown_visit_creates_it(start: Start) -> None:
    c = await start()
    t = datetime.now(UTC) - timedelta(seconds=10)
    resp = await c.post("/ahoy/events", data=beacon([event(time=t.timestamp())]))
    assert resp.status == 200
    await c.client.close()
    [visit] = stored(c.data_dir, "visits")
    assert visit["visit_token"] == "visit-1"
    assert visit["visitor_token"] == "visitor-1"
    assert abs(visit["started_at"] - t) < timedelta(milliseconds=1)
    assert visit["browser"] == "Firefox"
    assert len(stored(c.data_dir, "events")) == 1


# 7
@pytest.mark.parametrize("path", ["/ahoy/events", "/ahoy/visits"])
async def test_missing_tokens(start: Start, path: str) -> None:
    c = await start()
    resp = await c.post(path, data=b"")
    assert resp.status == 400
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert await resp.text() == "Missing required parameters\n"
    only_visitor = await c.post(path, json={"visitor_token": "x", "visit_token": "null"})
    assert only_visitor.status == 400
    assert await c.rows("events") == []


# 8
@pytest.mark.parametrize(
    "body",
    [
        {"data": "null"},
        {"data": "[null]"},
        {"data": json.dumps([{"name": "ok", "id": "e1"}, 5])},
        {"json": {"events": {}, **TOKENS}},
    ],
)
async def test_invalid_event_lists_store_nothing(start: Start, body: dict[str, Any]) -> None:
    c = await start()
    if "data" in body:
        resp = await c.post("/ahoy/events", data=beacon(body["data"]))
    else:
        resp = await c.post("/ahoy/events", json=body["json"])
    assert resp.status == 400
    assert await resp.text() == "Invalid parameters\n"
    assert await c.rows("events") == []


# 9
async def test_unparsable_events_json_is_200_and_counted(start: Start) -> None:
    c = await start()
    resp = await c.post("/ahoy/events", data=beacon("bad"))
    assert resp.status == 200
    assert await resp.json() == {}
    assert c.metric("drops_total", {"reason": "bad_events_json"}) == 1
    assert await c.rows("events") == []


# 10
async def test_only_first_ten_events_kept(start: Start) -> None:
    c = await start()
    events = [event(f"e{i}") for i in range(13)]
    resp = await c.post("/ahoy/events", json={"events": events, **TOKENS})
    assert resp.status == 200
    assert c.metric("drops_total", {"reason": "over_event_limit"}) == 3
    rows = await c.rows("events")
    assert sorted(r["name"] for r in rows) == sorted(f"e{i}" for i in range(10))


async def test_event_limit_is_configurable(start: Start) -> None:
    c = await start(max_events_per_request=5)
    await c.post("/ahoy/events", json={"events": [event() for _ in range(10)], **TOKENS})
    assert len(await c.rows("events")) == 5


# 11
async def test_body_over_limit_is_413(start: Start) -> None:
    c = await start()
    big = [event(properties={"pad": "x" * 9000})]
    resp = await c.post("/ahoy/events", json={"events": big, **TOKENS})
    assert resp.status == 413
    assert await resp.text() == "Payload too large\n"
    small = await start(max_content_length=1, node_id="other-node")
    resp = await small.post("/ahoy/visits", json=visit_body())
    assert resp.status == 413


async def test_chunked_body_over_limit_is_413(start: Start) -> None:
    c = await start()

    async def chunks():  # no Content-Length: the limit applies to the bytes read
        for _ in range(10):
            yield b"x" * 1000

    resp = await c.post("/ahoy/events", data=chunks(), headers={"Content-Type": "text/plain"})
    assert resp.status == 413
    assert await resp.text() == "Payload too large\n"


# 12
@pytest.mark.parametrize("ua", [BOT_UA, ""])
async def test_bots_and_empty_agents_get_200_and_nothing_stored(start: Start, ua: str) -> None:
    c = await start()
    headers = {"User-Agent": ua}
    visit = await c.post("/ahoy/visits", json=visit_body(), headers=headers)
    assert visit.status == 200
    assert (await visit.json())["visit_token"] == "visit-1"
    ev = await c.post("/ahoy/events", data=beacon([event()]), headers=headers)
    assert ev.status == 200
    assert await ev.json() == {}
    assert c.metric("drops_total", {"reason": "bot"}) == 2
    await c.client.close()
    assert stored(c.data_dir, "visits") == []
    assert stored(c.data_dir, "events") == []


async def test_track_bots_stores_them(start: Start) -> None:
    c = await start(track_bots=True)
    await c.post("/ahoy/visits", json=visit_body(), headers={"User-Agent": BOT_UA})
    [visit] = await c.rows("visits")
    assert visit["device_type"] == "Bot"


# 13
async def test_tokens_are_sanitised_and_truncated(start: Start) -> None:
    c = await start()
    long = "a" * 80
    resp = await c.post(
        "/ahoy/visits", json={"visit_token": "bad<tok>en\u00ff!", "visitor_token": long}
    )
    assert await resp.json() == {
        "visit_token": "badtoken",
        "visitor_token": "a" * 64,
        "visit_id": "badtoken",
        "visitor_id": "a" * 64,
    }


async def test_undefined_and_empty_tokens_are_missing(start: Start) -> None:
    c = await start()
    for bad in ("undefined", "", "!!!"):
        resp = await c.post("/ahoy/visits", json={"visit_token": bad, "visitor_token": "v"})
        assert resp.status == 400, bad


# 14
async def test_headers_win_over_body_tokens(start: Start) -> None:
    c = await start()
    resp = await c.post(
        "/ahoy/events",
        json={"events": [event()], **TOKENS},
        headers={"Ahoy-Visit": "hv", "Ahoy-Visitor": "hu"},
    )
    assert resp.status == 200
    [row] = await c.rows("events")
    assert (row["visit_token"], row["visitor_token"]) == ("hv", "hu")


# 15
async def test_visit_with_js_sets_only_the_visit_cookie(start: Start) -> None:
    c = await start()
    resp = await c.post("/ahoy/visits", json=visit_body())
    cookies = resp.cookies
    assert list(cookies) == ["ahoy_visit"]
    morsel = cookies["ahoy_visit"]
    assert morsel.value == "visit-1"
    assert morsel["path"] == "/"
    assert morsel["samesite"] == "Lax"
    assert not morsel["httponly"]
    assert int(morsel["max-age"]) == 4 * 3600
    no_js = await c.post("/ahoy/visits", json=visit_body(js=False, visit_token="v2"))
    assert list(no_js.cookies) == []


async def test_cookieless_sets_no_cookies_and_expires_old_ones(start: Start) -> None:
    c = await start(cookies="none")
    resp = await c.post(
        "/ahoy/visits", json=visit_body(), headers={"Cookie": "ahoy_visit=a; ahoy_visitor=b"}
    )
    assert resp.status == 200
    set_cookies = resp.headers.getall("Set-Cookie")
    assert len(set_cookies) == 2
    assert all("Max-Age=0" in h or "expires=Thu, 01 Jan 1970" in h for h in set_cookies)


# 16
async def test_legacy_single_event_form(start: Start) -> None:
    c = await start()
    resp = await c.post(
        "/ahoy/events",
        data={"name": "Signed up", "properties[plan]": "pro", "properties[seats]": "3", **TOKENS},
    )
    assert resp.status == 200
    [row] = await c.rows("events")
    assert row["name"] == "Signed up"
    assert json.loads(row["properties"]) == {"plan": "pro", "seats": "3"}


async def test_legacy_single_event_in_query(start: Start) -> None:
    c = await start()
    resp = await c.post(
        "/ahoy/events?name=amp&properties[k]=v&visit_token=a&visitor_token=b", data=b""
    )
    assert resp.status == 200
    [row] = await c.rows("events")
    assert (row["name"], row["visit_token"], json.loads(row["properties"])) == (
        "amp",
        "a",
        {"k": "v"},
    )


# 17
async def test_raw_json_array_body(start: Start) -> None:
    c = await start()
    resp = await c.post(
        "/ahoy/events?visit_token=a&visitor_token=b",
        data=json.dumps([event("raw", properties={"x": 1})]),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 200
    [row] = await c.rows("events")
    assert row["name"] == "raw"
    assert json.loads(row["properties"]) == {"x": 1}


# 18
async def test_cookieless_anonymity_set(start: Start) -> None:
    c = await start(cookies="none")
    c.app[AHOY].clock = lambda: datetime.now(UTC)
    first = await c.post(
        "/ahoy/events", data=beacon([event("a")], tokens=None), headers={"User-Agent": ""}
    )
    assert first.status == 200  # empty UA is a bot: excluded, still 200
    for name in ("a", "b"):
        resp = await c.post("/ahoy/events", data=beacon([event(name)], tokens=None))
        assert resp.status == 200
    later = datetime.now(UTC) + timedelta(hours=5)
    c.app[AHOY].clock = lambda: later
    await c.post("/ahoy/events", data=beacon([event("c")], tokens=None))
    await c.client.close()
    events = {r["name"]: r for r in stored(c.data_dir, "events")}
    expected = str(
        uuid.uuid5(
            uuid.UUID("a82ae811-5011-45ab-a728-569df7499c5f"), f"visitor/127.0.0.0/{BROWSER_UA}"
        )
    )
    assert {r["visitor_token"] for r in events.values()} == {expected}
    assert events["a"]["visit_token"] == events["b"]["visit_token"]
    assert events["c"]["visit_token"] != events["a"]["visit_token"]
    assert len(stored(c.data_dir, "visits")) == 2


def test_anonymity_token_matches_ahoy() -> None:
    from trailcli.collector.ahoy_payload import anonymity_visitor_token

    assert anonymity_visitor_token("127.0.0.0", "") == "93dc5253-3a3b-561d-8d53-fb5476f02eca"


# 19
async def test_mask_ips(start: Start) -> None:
    c = await start(mask_ips=True, trust_proxy=True)
    await c.post("/ahoy/visits", json=visit_body(), headers={"X-Forwarded-For": "1.2.3.4"})
    await c.post(
        "/ahoy/visits",
        json=visit_body(visit_token="v6"),
        headers={"X-Forwarded-For": "2001:4860:4860::8844"},
    )
    ips = sorted(r["ip"] for r in await c.rows("visits"))
    assert ips == ["1.2.3.0", "2001:4860:4860::"]


# beyond the table
async def test_duplicate_event_ids_are_stored_once(start: Start) -> None:
    c = await start()
    e = event("once")
    for _ in range(3):
        resp = await c.post("/ahoy/events", data=beacon([e, e]))
        assert resp.status == 200
    assert c.metric("drops_total", {"reason": "duplicate_event"}) == 5
    assert len(await c.rows("events")) == 1


async def test_requests_arriving_together_are_each_answered_and_stored_once(start: Start) -> None:
    """Concurrent requests are checked together by the intake: each gets its own answer, a bad one
    fails alone, and an event sent twice at once is stored once."""
    import asyncio

    c = await start()
    twice = event("twice")
    good = [beacon([event(f"e{i}")]) for i in range(20)]
    sent = [*good, beacon([twice]), beacon([twice]), beacon("[1, 2]"), beacon([event()], tokens={})]
    replies = await asyncio.gather(*(c.post("/ahoy/events", data=body) for body in sent))
    assert [r.status for r in replies] == [200] * 22 + [400, 400]
    assert [await r.text() for r in replies[-2:]] == [
        "Invalid parameters\n",
        "Missing required parameters\n",
    ]
    assert c.metric("drops_total", {"reason": "duplicate_event"}) == 1
    names = sorted(r["name"] for r in await c.rows("events"))
    assert names == sorted([*(f"e{i}" for i in range(20)), "twice"])


async def test_a_request_cancelled_before_the_intake_runs_stores_nothing(start: Start) -> None:
    """A client that goes away while its request waits for the intake's turn leaves no trace: the
    event is not stored and its id stays free for a retry."""
    import asyncio

    from trailcli.collector.ahoy import INTAKE

    c = await start()
    intake = c.app[INTAKE]
    gone = event("gone")
    waiting = intake.submit(_FakeRequest(), dict(TOKENS, events_json=json.dumps([gone])), b"")
    waiting.cancel()
    await asyncio.sleep(0)  # the intake's turn
    assert (await c.post("/ahoy/events", data=beacon([gone]))).status == 200
    assert c.metric("drops_total", {"reason": "duplicate_event"}) == 0
    assert [r["name"] for r in await c.rows("events")] == ["gone"]


class _FakeRequest:
    """What the intake reads of a request it never gets to (it is cancelled first)."""

    headers = UA
    remote = "127.0.0.1"


async def test_unknown_visit_params_land_in_extra_but_never_secrets(start: Start) -> None:
    c = await start()
    body = visit_body(referral_code="FRIEND", user_token="u.bad", user_id="42")
    await c.post("/ahoy/visits", json=body)
    assert c.metric("unsigned_claims_total") == 1
    [visit] = await c.rows("visits")
    assert json.loads(visit["extra"]) == {"referral_code": "FRIEND"}
    assert visit["user_id"] is None


async def test_trailing_slash_and_options_preflight(start: Start) -> None:
    c = await start(allow_origins=("http://page.test",))
    resp = await c.post("/ahoy/visits/", json=visit_body())
    assert resp.status == 200
    pre = await c.client.options(
        "/ahoy/visits",
        headers={
            "Origin": "http://page.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "http://page.test"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert pre.headers["Access-Control-Allow-Headers"] == "content-type"


async def test_slow_body_gets_408(start: Start) -> None:
    import asyncio

    c = await start(body_timeout=0.3)

    async def slow():
        yield b"["
        await asyncio.sleep(1.0)
        yield b"]"

    resp = await c.post("/ahoy/events?visit_token=a&visitor_token=b", data=slow())
    assert resp.status == 408
    assert await resp.text() == "Request body timeout\n"


async def test_cors_only_for_allowed_origins_and_on_errors_too(start: Start) -> None:
    c = await start(allow_origins=("http://page.test",))
    other = await c.client.options(
        "/ahoy/visits",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
    )
    assert other.status == 403
    assert "Access-Control-Allow-Origin" not in other.headers
    plain = await c.post("/ahoy/visits", json=visit_body(), headers={"Origin": "http://evil.test"})
    assert plain.status == 200
    assert "Access-Control-Allow-Origin" not in plain.headers
    error = await c.post("/ahoy/events", data=b"", headers={"Origin": "http://page.test"})
    assert error.status == 400
    assert error.headers["Access-Control-Allow-Origin"] == "http://page.test"
    assert error.headers["Vary"] == "Origin"
    any_origin = await start(allow_origins=("*",), node_id="n2")
    resp = await any_origin.post(
        "/ahoy/visits", json=visit_body(), headers={"Origin": "http://x.test"}
    )
    assert resp.headers["Access-Control-Allow-Origin"] == "http://x.test"
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
