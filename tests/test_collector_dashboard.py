"""The dashboard's server side: sessions, visit notes, the live hub, and its HTTP routes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from trailcli.cli.dashboard_reports import ReportsForDashboard
from trailcli.collector import dashboard
from trailcli.collector.app import create_app
from trailcli.collector.claims import sign_user_token
from trailcli.collector.dashboard import hub as hub_module
from trailcli.collector.dashboard import session
from trailcli.collector.dashboard.hub import PERSON_COLUMNS, SNAPSHOT, Hub, Stream, event_row
from trailcli.collector.dashboard.lake import VisitFacts
from trailcli.collector.dashboard.notes import MAX_ATTEMPTS, VisitNotes
from trailcli.collector.dashboard.pages import sign_in_page
from trailcli.collector.dashboard.ports import PersonRef
from trailcli.collector.keys import WRITER
from trailcli.collector.settings import Settings
from trailcli.errors import UsageError

SECRET = "dash-secret"
API_TOKEN = "dash-read-token"
BROWSER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:78.0) Gecko/20100101 Firefox/78.0"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]


# --- sessions (pure) ----------------------------------------------------------------------------


def test_a_session_cookie_holds_no_token_and_is_valid_until_it_ends() -> None:
    key = session.signing_key(SECRET, API_TOKEN)
    value = session.issue(key, now=1000.0, lifetime=60)
    assert API_TOKEN not in value and SECRET not in value
    assert session.expiry(value, key, now=1000.0) == 1060.0
    assert session.expiry(value, key, now=1059.0) == 1060.0
    assert session.expiry(value, key, now=1060.0) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),  # the MAC
        lambda v: v.replace("v1.", "v1.9", 1),  # a later expiry
        lambda v: "v2" + v[2:],
        lambda v: v.rpartition(".")[0],
        lambda v: "",
        lambda v: "x" * 500,
    ],
)
def test_a_changed_cookie_is_refused(tamper: Callable[[str], str]) -> None:
    key = session.signing_key(SECRET, API_TOKEN)
    value = session.issue(key, now=time.time(), lifetime=3600)
    assert session.expiry(tamper(value), key, time.time()) is None


def test_changing_either_secret_signs_everyone_out() -> None:
    value = session.issue(session.signing_key(SECRET, API_TOKEN), time.time(), 3600)
    for key in (session.signing_key("other", API_TOKEN), session.signing_key(SECRET, "other")):
        assert session.expiry(value, key, time.time()) is None
    no_secret = session.signing_key(None, API_TOKEN)
    assert session.expiry(session.issue(no_secret, time.time(), 60), no_secret, time.time())


def test_wrong_tokens_are_limited_per_address_within_a_window() -> None:
    limiter = session.SignInLimiter(limit=3, window=60, addresses=2)
    for _ in range(3):
        assert limiter.retry_after("a", now=0) == 0
        limiter.failed("a", now=0)
    assert limiter.retry_after("a", now=10) == 50
    assert limiter.retry_after("b", now=10) == 0
    assert limiter.retry_after("a", now=60) == 0  # the window passed
    limiter.failed("b", now=61)
    limiter.failed("c", now=61)  # only two addresses are remembered: "a" is forgotten
    assert limiter.retry_after("a", now=61) == 0


# --- visit notes (pure) -------------------------------------------------------------------------


def test_views_seen_live_and_in_the_log_count_once() -> None:
    notes = VisitNotes()
    notes.viewed("v1", "e1")
    notes.viewed("v1", "e2")
    notes.viewed("v1", "e2")
    assert notes.unresolved(["v1", None, "v1"]) == ["v1"]
    notes.resolve("v1", True, ["e1", "e0"], "Google", {"device_type": "Mobile"})
    note = notes.note("v1")
    assert (note.views, note.source, note.device, note.resolved) == (
        3,
        "Google",
        {"device_type": "Mobile"},
        True,
    )
    assert notes.unresolved(["v1"]) == []


def test_a_visit_not_in_the_log_yet_is_asked_about_again_then_given_up() -> None:
    notes = VisitNotes()
    notes.resolve("v1", False, [], None)
    assert notes.unresolved(["v1"]) == ["v1"]
    for _ in range(MAX_ATTEMPTS - 1):
        notes.resolve("v1", False, [], None)
    assert notes.unresolved(["v1"]) == [] and notes.note("v1").views == 0


def test_notes_forget_the_least_recently_used_visits() -> None:
    notes = VisitNotes(limit=2)
    notes.viewed("a", "1")
    notes.viewed("b", "2")
    notes.note("a")  # used again
    notes.viewed("c", "3")
    assert notes.get("b") is None and notes.get("a") is not None and len(notes) == 2


# --- the hub, with a fake live view -------------------------------------------------------------


class FakeLive:
    node_id = "fake-node"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.listeners: list[Callable[[str, Any], None]] = []

    def online(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def clients(self) -> dict[str, int]:
        return {r["visitor_token"]: r["clients"] for r in self.rows}

    def listen(self, listener: Callable[[str, Any], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def say(self, channel: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(channel, data)


async def no_log(tokens: list[str]) -> list[tuple[VisitFacts, str | None]]:
    return []


def frame_of(chunk: bytes | None) -> dict[str, Any]:
    assert chunk
    match = re.search(rb"^data: (.*)$", chunk, re.M)
    assert match
    frame: dict[str, Any] = json.loads(match.group(1))
    return frame


def join(person: str, visit: str, page: str | None = None) -> dict[str, Any]:
    return {"type": "join", "user_id": None, "visitor_token": person, "visit_token": visit,
            "time": "2026-03-01T12:00:00+00:00", "page": page, "clients": 1}  # fmt: skip


def view(event_id: str, visit: str, person: str, page: str) -> dict[str, Any]:
    return {"event_id": event_id, "visit_token": visit, "visitor_token": person, "user_id": None,
            "name": "$view", "properties": {"page": page}, "time": "2026-03-01T12:00:01+00:00"}  # fmt: skip


async def test_a_frame_holds_changes_events_and_visit_updates_numbered() -> None:
    live = FakeLive()
    hub = Hub(live, no_log)
    stream = hub.attach()
    try:
        assert await stream.next() == SNAPSHOT  # every stream starts with one
        live.say("/trail/presence", join("p1", "v1"))
        live.say("/trail/events", view("e1", "v1", "p1", "/cart"))
        frame = frame_of(hub.take_frame())
        assert (frame["from"], frame["n"]) == (0, 2)
        assert [(c["n"], c["type"], c["person"]) for c in frame["presence"]] == [(1, "join", "p1")]
        assert [(e["n"], e["page"], e["person"]) for e in frame["events"]] == [(2, "/cart", "p1")]
        assert frame["visits"]["v1"]["page"] == "/cart"
        assert "views" not in frame["visits"]["v1"]  # not counted until the log was read
        assert hub.take_frame() is None  # nothing new
        hub.resolved([(VisitFacts("v1", True, None, None, {}, {"country": "FR"}, ["e0"]), "news")])
        frame = frame_of(hub.take_frame())
        assert frame["from"] == 2 and frame["visits"]["v1"] == {
            "country": "FR", "views": 2, "source": "news"
        }  # fmt: skip
    finally:
        await hub.close()


async def test_the_snapshot_lists_persons_with_notes_and_the_latest_events() -> None:
    live = FakeLive()
    live.rows = [{"user_id": None, "visitor_token": "p1", "visit_token": "v1",
                  "online_since": "2026-03-01T12:00:00+00:00", "clients": 2, "device_type": None}]  # fmt: skip
    hub = Hub(live, no_log)
    try:
        first = hub.snapshot()
        assert first["columns"] == list(PERSON_COLUMNS) or first["columns"] == PERSON_COLUMNS
        person = dict(zip(first["columns"], first["persons"][0], strict=True))
        assert (person["person"], person["clients"], person["views"]) == ("p1", 2, None)
        live.say("/trail/events", view("e1", "v1", "p1", "/a"))
        hub.resolved([(VisitFacts("v1", True, None, None, {}, {"device_type": "Tablet"}, []), "x")])
        second = hub.snapshot()
        person = dict(zip(second["columns"], second["persons"][0], strict=True))
        assert (person["views"], person["source"], person["device_type"]) == (1, "x", "Tablet")
        assert [e["event_id"] for e in second["events"]] == ["e1"]
        assert second["n"] == hub.n and second["epoch"] == hub.epoch
    finally:
        await hub.close()


async def test_changed_tab_counts_go_out_in_a_frame() -> None:
    live = FakeLive()
    live.rows = [{"visitor_token": "p1", "clients": 1}, {"visitor_token": "p2", "clients": 1}]
    hub = Hub(live, no_log)
    try:
        hub.touch()
        hub.compare_clients()
        assert hub.take_frame() is None  # nothing changed since the hub began listening
        live.rows[1]["clients"] = 2
        live.rows.append({"visitor_token": "p3", "clients": 1})
        hub.compare_clients()
        frame = frame_of(hub.take_frame())
        assert frame["clients"] == {"p2": 2, "p3": 1} and frame["n"] == 1
    finally:
        await hub.close()


async def test_too_many_changes_for_one_frame_send_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "MAX_FRAME_CHANGES", 3)
    live = FakeLive()
    hub = Hub(live, no_log)
    try:
        hub.touch()
        for i in range(5):
            live.say("/trail/presence", join(f"p{i}", f"v{i}"))
        assert hub.take_frame() == SNAPSHOT
        assert hub.take_frame() is None
    finally:
        await hub.close()


async def test_a_page_that_falls_behind_gets_a_snapshot_instead_of_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "STREAM_BACKLOG", 3)
    stream = Stream([])
    for i in range(5):
        stream.offer(b"frame %d" % i)
    got = [stream.queue.get_nowait() for _ in range(stream.queue.qsize())]
    assert got == [SNAPSHOT, b"frame 3", b"frame 4"]


async def test_a_page_resumes_with_the_kept_frames_or_else_a_snapshot() -> None:
    live = FakeLive()
    hub = Hub(live, no_log)
    try:
        hub.touch()
        live.say("/trail/presence", join("p1", "v1"))
        first = hub.take_frame()
        live.say("/trail/presence", join("p2", "v2"))
        second = hub.take_frame()
        assert hub.attach(f"{hub.epoch}:1").queue.get_nowait() == second
        resumed = hub.attach(f"{hub.epoch}:0")
        assert [resumed.queue.get_nowait() for _ in range(2)] == [first, second]
        for stale in ("other:1", f"{hub.epoch}:99", f"{hub.epoch}:x", None):
            assert hub.attach(stale).queue.get_nowait() == SNAPSHOT
    finally:
        await hub.close()


def test_large_properties_travel_as_a_notice() -> None:
    small = event_row(1, {"name": "x", "properties": {"a": 1}})
    large = event_row(2, {"name": "x", "properties": {"a": "y" * 5000}})
    assert small["properties"] is not None and small["properties_bytes"] is None
    assert large["properties"] is None and large["properties_bytes"] > 5000


async def test_an_idle_hub_stops_listening_and_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "IDLE_SECONDS", 0.0)
    monkeypatch.setattr(hub_module, "FRAME_SECONDS", 0.01)
    live = FakeLive()
    hub = Hub(live, no_log)
    hub.touch()
    epoch = hub.epoch
    live.say("/trail/events", view("e1", "v1", "p1", "/a"))
    assert live.listeners
    for _ in range(100):
        if not live.listeners:
            break
        await asyncio.sleep(0.01)
    assert not live.listeners and len(hub.notes) == 0 and hub.epoch != epoch


# --- HTTP, with the real collector ----------------------------------------------------------------


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        data_dir=data_dir, node_id="dash-node", secret=SECRET, api_token=API_TOKEN,
        heartbeat_interval=0.2, transport_grace=0.5, compact=False, access_log=False, flush_interval=0.2,
    )  # fmt: skip
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
async def collector(aiohttp_client: ClientFactory, data_dir: Path) -> AsyncIterator[Client]:
    app = create_app(settings_for(data_dir), reports=ReportsForDashboard())
    yield await aiohttp_client(app)


async def sign_in(client: Client, token: str = API_TOKEN) -> Any:
    return await client.post("/dashboard/sign-in", data={"token": token}, allow_redirects=False)


ROUTES = [
    ("GET", "/dashboard"),
    ("GET", "/dashboard/"),
    ("GET", "/dashboard/static/js/main.js"),
    ("GET", "/dashboard/static/dashboard.css"),
    ("GET", "/dashboard/api/online"),
    ("GET", "/dashboard/api/live"),
    ("GET", "/dashboard/api/trail?visitor=x"),
    ("GET", "/dashboard/api/history/online?at=2026-01-01T00:00:00Z"),
    ("GET", "/dashboard/api/history/timeline"),
    ("GET", "/dashboard/api/history/top"),
    ("POST", "/dashboard/sign-out"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_answers_401_without_a_session(
    collector: Client, method: str, path: str
) -> None:
    response = await collector.request(method, path)
    assert response.status == 401
    body = await response.text()
    assert API_TOKEN not in body
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    if path.startswith("/dashboard/api/"):
        assert (await response.json())["error"] == "Sign in first."
    elif not path.startswith("/dashboard/static/"):
        assert '<form method="post" action="/dashboard/sign-in">' in body


async def test_a_wrong_token_is_refused_and_repeated_tries_are_limited(collector: Client) -> None:
    for attempt in range(10):
        response = await sign_in(collector, f"wrong-{attempt}")
        assert response.status == 401
        assert "That token is not right." in await response.text()
        assert "Set-Cookie" not in response.headers
    limited = await sign_in(collector, API_TOKEN)  # even the right one, for a minute
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many wrong tokens" in await limited.text()


async def test_signing_in_sets_a_strict_http_only_cookie_and_serves_the_page(
    collector: Client,
) -> None:
    response = await sign_in(collector)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{session.COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"):
        assert attribute in cookie
    assert API_TOKEN not in cookie and "Secure" not in cookie  # plain http here
    page = await collector.get("/dashboard")
    assert page.status == 200
    html = await page.text()
    assert API_TOKEN not in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    static = await collector.get("/dashboard/static/js/main.js")
    assert static.status == 200 and static.content_type == "text/javascript"
    again = await collector.get(
        "/dashboard/static/js/main.js", headers={"If-None-Match": static.headers["ETag"]}
    )
    assert again.status == 304
    missing = await collector.get("/dashboard/static/../settings.py")
    assert missing.status in (400, 403, 404)


async def test_a_session_behind_https_is_a_secure_cookie(
    aiohttp_client: ClientFactory, data_dir: Path
) -> None:
    app = create_app(settings_for(data_dir, trust_proxy=True), reports=ReportsForDashboard())
    client = await aiohttp_client(app)
    response = await client.post(
        "/dashboard/sign-in",
        data={"token": API_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert "Secure" in response.headers["Set-Cookie"]


async def test_tampered_and_foreign_cookies_are_refused(collector: Client) -> None:
    await sign_in(collector)
    good = collector.session.cookie_jar.filter_cookies(collector.make_url("/dashboard"))
    value = good[session.COOKIE].value
    other = session.issue(session.signing_key(SECRET, "another-token"), time.time(), 3600)
    expired = session.issue(session.signing_key(SECRET, API_TOKEN), time.time() - 7200, 3600)
    for bad in (value[:-2] + "00", other, expired):
        collector.session.cookie_jar.clear()
        response = await collector.get("/dashboard/api/online", cookies={session.COOKIE: bad})
        assert response.status == 401


async def test_requests_from_other_origins_are_refused(
    aiohttp_client: ClientFactory, data_dir: Path
) -> None:
    evil = "http://evil.test"
    app = create_app(settings_for(data_dir, allow_origins=(evil,)), reports=ReportsForDashboard())
    client = await aiohttp_client(app)
    await sign_in(client)
    for headers in (
        {"Origin": evil},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        response = await client.get("/dashboard/api/online", headers=headers)
        assert response.status == 403
        assert "persons" not in await response.text()
    forged = await client.post(
        "/dashboard/sign-in",
        data={"token": API_TOKEN},
        headers={"Origin": evil},
        allow_redirects=False,
    )
    assert forged.status == 403 and "Set-Cookie" not in forged.headers
    followed = await client.get(
        "/dashboard", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    )
    assert (
        followed.status == 200
    )  # a link from elsewhere opens the page (its data stays same-origin)


async def test_signing_out_removes_the_cookie(collector: Client) -> None:
    await sign_in(collector)
    response = await collector.post("/dashboard/sign-out", allow_redirects=False)
    assert response.status == 303
    assert re.search(rf"{session.COOKIE}=\"?\"?;", response.headers["Set-Cookie"])
    assert (await collector.get("/dashboard/api/online")).status == 401


async def test_no_route_changes_data(collector: Client) -> None:
    await sign_in(collector)
    resources = {
        (route.method, route.resource.canonical)
        for route in collector.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/dashboard")
    }
    writes = {(m, p) for m, p in resources if m not in ("GET", "HEAD", "OPTIONS")}
    assert writes == {("POST", "/dashboard/sign-in"), ("POST", "/dashboard/sign-out")}
    for path in ("/dashboard/api/online", "/dashboard/api/history/top"):
        assert (await collector.post(path)).status == 405


@pytest.mark.parametrize(
    ("overrides", "reports", "note"),
    [
        ({"api_token": None}, True, "dashboard off (set TRAIL_API_TOKEN to serve it)"),
        ({"dashboard": False}, True, "dashboard off (--no-dashboard)"),
        ({}, False, "dashboard off (this process was started without the reports)"),
        ({}, True, "dashboard at http://h:1/dashboard"),
    ],
)
async def test_the_dashboard_is_off_without_a_token_and_says_why(
    aiohttp_client: ClientFactory,
    data_dir: Path,
    overrides: dict[str, Any],
    reports: bool,
    note: str,
) -> None:
    app = create_app(
        settings_for(data_dir, **overrides), reports=ReportsForDashboard() if reports else None
    )
    assert dashboard.startup_note(app, "http://h:1") == note
    client = await aiohttp_client(app)
    response = await client.get("/dashboard")
    assert response.status == (401 if note.startswith("dashboard at") else 404)


# --- live data through HTTP -----------------------------------------------------------------------


async def bayeux(client: Client, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/faye", json=list(messages))
    replies: list[dict[str, Any]] = await response.json()
    return replies


async def handshake(client: Client, trail: dict[str, Any]) -> str:
    """A session as a Faye client opens one: a handshake and its first connect (a session counts
    as online once it has connected)."""
    (reply,) = await bayeux(client, {"channel": "/meta/handshake", "version": "1.0", "id": "1",
                                     "supportedConnectionTypes": ["long-polling"], "ext": {"trail": trail}})  # fmt: skip
    assert reply["successful"], reply
    client_id: str = reply["clientId"]
    (connected,) = await bayeux(client, {"channel": "/meta/connect", "clientId": client_id,
                                         "connectionType": "long-polling", "advice": {"timeout": 0}})  # fmt: skip
    assert connected["successful"], connected
    return client_id


async def post_visit(client: Client, visit: str, visitor: str, **fields: Any) -> None:
    body = {"visit_token": visit, "visitor_token": visitor, **fields}
    response = await client.post("/ahoy/visits", json=body, headers={"User-Agent": BROWSER_UA})
    assert response.status == 200


async def post_event(
    client: Client, visit: str, visitor: str, event_id: str, name: str, **props: Any
) -> None:
    body = {"visit_token": visit, "visitor_token": visitor,
            "events": [{"id": event_id, "name": name, "properties": props, "time": time.time()}]}  # fmt: skip
    response = await client.post("/ahoy/events", json=body, headers={"User-Agent": BROWSER_UA})
    assert response.status == 200


class Events:
    """Server-sent events read from a response, one (type, data) at a time."""

    def __init__(self, response: Any) -> None:
        self.response = response

    async def next(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        kind, data = "message", None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    return kind, data

    async def until(self, test: Callable[[str, dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            kind, data = await self.next()
            if test(kind, data):
                return data


def persons_of(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(snapshot["columns"], row, strict=True)) for row in snapshot["persons"]]


async def test_the_stream_follows_joins_pages_events_and_leaves(collector: Client) -> None:
    await sign_in(collector)
    await post_visit(collector, "v1", "p1", landing_page="https://shop.test/?utm_source=Letter")
    response = await collector.get("/dashboard/api/live")
    assert response.status == 200 and response.content_type == "text/event-stream"
    events = Events(response)
    kind, first = await events.next()
    assert kind == "snapshot" and first["persons"] == []

    cid = await handshake(collector, {"visit_token": "v1", "visitor_token": "p1"})
    joined = await events.until(lambda k, d: k == "message" and bool(d["presence"]))
    assert [(c["type"], c["person"], c["visit_token"]) for c in joined["presence"]] == [
        ("join", "p1", "v1")
    ]
    await post_event(collector, "v1", "p1", "e1", "$view", page="/cart")
    viewed = await events.until(
        lambda k, d: any(e["event_id"] == "e1" for e in d.get("events", []))
    )
    assert viewed["visits"]["v1"]["page"] == "/cart"
    counted = await events.until(lambda k, d: "views" in d.get("visits", {}).get("v1", {}))
    assert counted["visits"]["v1"]["views"] == 1 and counted["visits"]["v1"]["source"] == "letter"

    snapshot = await (await collector.get("/dashboard/api/online")).json()
    (person,) = persons_of(snapshot)
    assert (person["person"], person["last_page"], person["views"], person["source"]) == (
        "p1", "/cart", 1, "letter"
    )  # fmt: skip
    assert person["node_id"] == "dash-node" and person["device_type"] == "Desktop"

    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": cid})
    left = await events.until(lambda k, d: k == "message" and bool(d["presence"]))
    assert [(c["type"], c["person"]) for c in left["presence"]] == [("leave", "p1")]
    response.close()


async def test_a_signed_in_page_sees_a_user_by_their_id(collector: Client) -> None:
    await sign_in(collector)
    await post_visit(collector, "v9", "p9")
    await handshake(
        collector,
        {
            "visit_token": "v9",
            "visitor_token": "p9",
            "user_token": sign_user_token("42", "v9", SECRET),
        },
    )
    await asyncio.sleep(0.2)
    (person,) = persons_of(await (await collector.get("/dashboard/api/online")).json())
    assert (person["person"], person["user_id"], person["visitor_token"]) == ("42", "42", "p9")


async def test_a_person_trail_is_the_replay_rows(collector: Client, data_dir: Path) -> None:
    from trailcli.reports.replay import Person, ReplayQuery, replay

    await sign_in(collector)
    await post_visit(collector, "v1", "p1", landing_page="https://shop.test/")
    await handshake(collector, {"visit_token": "v1", "visitor_token": "p1"})
    await post_event(collector, "v1", "p1", "e1", "$view", page="/a")
    await post_event(collector, "v1", "p1", "e2", "add_to_cart", sku="<b>x</b>")
    await asyncio.sleep(0.2)  # the presence rows are appended in the background
    collector.app[WRITER].flush()  # type: ignore[attr-defined]
    since = datetime.now(UTC) - timedelta(hours=1)
    response = await collector.get(
        "/dashboard/api/trail", params={"visitor": "p1", "from": since.isoformat()}
    )
    body = await response.json()
    expected = replay(data_dir, ReplayQuery(Person(visitor="p1"), since))
    assert len(body["rows"]) == len(expected) == 4
    for got, row in zip(body["rows"], expected, strict=True):
        assert datetime.fromisoformat(got.pop("time")) == row.pop("time")
        assert got == row
    assert [r["kind"] for r in body["rows"]] == ["visit", "online", "event", "event"]
    assert body["rows"][-1]["detail"] == {"sku": "<b>x</b>"}
    for bad in ({}, {"visitor": "p1", "user": "2"}, {"visitor": "p1", "from": "yesterday"}):
        response = await collector.get("/dashboard/api/trail", params=bad)
        assert response.status == 400 and (await response.json())["hint"]


# --- history against the sample data (ground truth from the generator) --------------------------


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sample") / "data"
    shutil.copytree(SAMPLE, target)
    return target


@pytest.fixture
async def sample_collector(aiohttp_client: ClientFactory, sample_dir: Path) -> Client:
    app = create_app(settings_for(sample_dir, node_id="sample-test"), reports=ReportsForDashboard())
    client = await aiohttp_client(app)
    await sign_in(client)
    return client


def truth() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLE / "ground_truth.json").read_text())
    return data


async def test_who_was_online_at_each_sample_instant(sample_collector: Client) -> None:
    for case in truth()["online"]:
        response = await sample_collector.get(
            "/dashboard/api/history/online", params={"at": case["at"]}
        )
        body = await response.json()
        persons = sorted(r["user_id"] or r["visitor_token"] for r in body["rows"])
        assert (body["count"], persons) == (case["count"], sorted(case["persons"])), case["label"]


async def test_the_timeline_marks_the_exact_sample_peak(sample_collector: Client) -> None:
    peak = truth()["peak"]
    response = await sample_collector.get(
        "/dashboard/api/history/timeline",
        params={"from": peak["from"], "to": peak["to"], "every": "1h"},
    )
    body = await response.json()
    assert body["peak_online"] == peak["peak_online"]
    assert datetime.fromisoformat(body["peak_at"]) == datetime.fromisoformat(peak["peak_at"])
    assert len(body["buckets"]) == 48 and max(b[1] for b in body["buckets"]) == peak["peak_online"]


async def test_top_pages_and_sources_are_the_reports(
    sample_collector: Client, sample_dir: Path
) -> None:
    from trailcli.reports.pages import PagesQuery, pages_report
    from trailcli.reports.referrers import ReferrersQuery, referrers_report

    start, end = "2026-10-30T00:00:00+00:00", "2026-11-01T00:00:00+00:00"
    response = await sample_collector.get(
        "/dashboard/api/history/top", params={"from": start, "to": end, "limit": "50"}
    )
    body = await response.json()
    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    sources = referrers_report(sample_dir, ReferrersQuery(start=lo, end=hi, limit=50)).to_pylist()
    pages = pages_report(sample_dir, PagesQuery(start=lo, end=hi, limit=50)).to_pylist()
    assert [(s["source"], s["visits"]) for s in body["sources"]] == [
        (s["source"], s["visits"]) for s in sources
    ]
    assert (
        dict((s["source"], s["visits"]) for s in body["sources"])
        == truth()["visits_by_source"]["visits"]
    )
    assert [(p["page"], p["views"]) for p in body["pages"]] == [
        (p["page"], p["views"]) for p in pages
    ]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/dashboard/api/history/online", {"at": "not a time"}, 400),
        ("/dashboard/api/history/online", {"at": "2026-10-31T12:00:00"}, 400),  # no zone
        ("/dashboard/api/history/online", {"at": "1999-01-01T00:00:00Z"}, 404),  # before the log
        ("/dashboard/api/history/timeline", {"every": "0s"}, 400),
        ("/dashboard/api/history/timeline", {"every": "1s", "from": "2026-01-01T00:00:00Z"}, 400),
        ("/dashboard/api/history/top", {"limit": "many"}, 400),
    ],
)
async def test_history_errors_say_what_and_how(
    sample_collector: Client, path: str, params: dict[str, str], status: int
) -> None:
    response = await sample_collector.get(path, params=params)
    assert response.status == status
    body = await response.json()
    assert body["error"] and body["hint"]


def test_a_person_ref_needs_a_kind_and_a_value() -> None:
    with pytest.raises(UsageError):
        PersonRef("email", "a@b")
    with pytest.raises(UsageError):
        PersonRef("user", "")


def test_the_sign_in_page_shows_fixed_notices_only() -> None:
    assert "That token is not right." in sign_in_page("wrong")
    with pytest.raises(KeyError):
        sign_in_page("<script>")


def test_dashboard_routes_are_mounted_with_the_app() -> None:
    app = create_app(settings_for(Path("unused")), reports=ReportsForDashboard())
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/dashboard", "/dashboard/api/live", "/dashboard/api/history/online"} <= paths
    assert isinstance(app, web.Application)


def test_the_startup_line_says_where_the_dashboard_is_or_why_not(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector_support import Daemon

    monkeypatch.delenv("TRAIL_API_TOKEN", raising=False)
    off = Daemon(data_dir, "--no-access-log")
    try:
        assert off.startup.rstrip().endswith("; dashboard off (set TRAIL_API_TOKEN to serve it)")
    finally:
        assert off.stop() == 0
    monkeypatch.setenv("TRAIL_API_TOKEN", API_TOKEN)
    on = Daemon(data_dir, "--no-access-log")
    try:
        assert on.startup.rstrip().endswith(f"; dashboard at http://127.0.0.1:{on.port}/dashboard")
    finally:
        assert on.stop() == 0
