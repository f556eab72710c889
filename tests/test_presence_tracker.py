"""The presence tracker through the real collector app: rows written, live channels, /api/online."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from trailcli.collector.app import create_app
from trailcli.collector.claims import sign_user_token
from trailcli.collector.identity import sign_user_id
from trailcli.collector.keys import METRICS, WRITER
from trailcli.collector.live_guard import covers_live_channels
from trailcli.collector.presence_claims import binding_from
from trailcli.collector.presence_http import TRACKER
from trailcli.collector.presence_tracker import event_message
from trailcli.collector.settings import Settings
from trailcli.presence.live import Binding
from trailcli.store import views

SECRET = "s3cret"
API_TOKEN = "read-token"
NODE = "node-test"

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        data_dir=data_dir,
        node_id=NODE,
        secret=SECRET,
        api_token=API_TOKEN,
        heartbeat_interval=0.2,
        transport_grace=0.5,
        compact=False,
        access_log=False,
        flush_interval=0.2,
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
async def collector(aiohttp_client: ClientFactory, data_dir: Path) -> AsyncIterator[Client]:
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    yield client


async def bayeux(client: Client, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/faye", json=list(messages))
    assert response.status == 200
    replies: list[dict[str, Any]] = await response.json()
    return replies


async def handshake(
    client: Client, ext: dict[str, Any] | None = None, *, connect: bool = True
) -> str:
    """A session as a Faye client opens one: a handshake, then (unless `connect` is false) its
    first /meta/connect, answered at once."""
    message: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "id": "1",
    }
    if ext is not None:
        message["ext"] = ext
    (reply,) = await bayeux(client, message)
    assert reply["successful"], reply
    client_id: str = reply["clientId"]
    if connect:
        first = {"channel": "/meta/connect", "clientId": client_id,
                 "connectionType": "long-polling", "advice": {"timeout": 0}}  # fmt: skip
        (connected,) = await bayeux(client, first)
        assert connected["successful"], connected
    return client_id


async def subscribe(client: Client, client_id: str, channel: str, **extra: Any) -> dict[str, Any]:
    (reply,) = await bayeux(
        client,
        {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel, **extra},
    )
    return reply


async def deliveries(client: Client, client_id: str, channel: str, count: int) -> list[Any]:
    """Data published on `channel` to a long-polling client, waiting for `count` of them."""
    got: list[Any] = []
    for _ in range(20):
        replies = await bayeux(
            client,
            {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
                "advice": {"timeout": 300},
            },
        )
        got += [r["data"] for r in replies if r.get("channel") == channel]
        if len(got) >= count:
            return got
    return got


def presence_rows(data_dir: Path, where: str = "true") -> list[dict[str, Any]]:
    con = views.connect(data_dir, need=("presence",))
    cursor = con.execute(f"SELECT * FROM presence WHERE {where} ORDER BY seq")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


async def flush(client: Client) -> None:
    """Make every presence row queued so far durable, then commit the WAL to the tables."""
    await client.app[TRACKER].settle()
    client.app[WRITER].flush()  # type: ignore[attr-defined]


async def test_a_session_writes_online_subscribe_unsubscribe_and_offline_rows(
    collector: Client, data_dir: Path
) -> None:
    token = sign_user_token("42", "v1", SECRET)
    cid = await handshake(
        collector, {"trail": {"visit_token": "v1", "visitor_token": "vis1", "user_token": token}}
    )
    assert (await subscribe(collector, cid, "/chat/1"))["successful"]
    (reply,) = await bayeux(
        collector, {"channel": "/meta/unsubscribe", "clientId": cid, "subscription": "/chat/1"}
    )
    assert reply["successful"]
    before_disconnect = datetime.now(UTC)
    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": cid})
    await asyncio.sleep(0.1)
    await flush(collector)

    rows = presence_rows(data_dir, f"client_id = '{cid}'")
    assert [(r["transition"], r["reason"], r["channel"]) for r in rows] == [
        ("online", "handshake", None),
        ("subscribe", None, "/chat/1"),
        ("unsubscribe", None, "/chat/1"),
        ("offline", "disconnect", None),
    ]
    assert {(r["visit_token"], r["visitor_token"], r["user_id"]) for r in rows} == {
        ("v1", "vis1", "42")
    }
    assert all(r["node_id"] == NODE for r in rows)
    offline = rows[-1]
    assert offline["time"] >= before_disconnect
    assert offline["detected_at"] == offline["time"]
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    con = views.connect(data_dir, need=("identities",))
    bindings = con.execute(
        "SELECT visit_token, user_id, source, node_id FROM identities"
    ).fetchall()
    assert bindings == [("v1", "42", "presence", NODE)]


async def test_heartbeats_are_written_at_start_and_every_interval(
    collector: Client, data_dir: Path
) -> None:
    await asyncio.sleep(1.0)
    await flush(collector)
    beats = presence_rows(data_dir, "transition = 'heartbeat'")
    assert len(beats) >= 3
    assert all(b["client_id"] is None and b["node_id"] == NODE for b in beats)
    gaps = [(b["time"] - a["time"]).total_seconds() for a, b in itertools.pairwise(beats)]
    assert min(gaps) >= 0.15, gaps  # never more often than the 0.2 s interval
    assert sum(gaps) / len(gaps) <= 0.5, gaps


async def test_unsigned_user_claims_are_ignored_and_counted(
    collector: Client, data_dir: Path
) -> None:
    cid = await handshake(
        collector,
        {"trail": {"visitor_token": "vis2", "user_id": "admin", "user_token": "admin.deadbeef"}},
    )
    await asyncio.sleep(0.1)
    await flush(collector)
    (row,) = presence_rows(data_dir, f"client_id = '{cid}'")
    assert (row["visitor_token"], row["user_id"]) == ("vis2", None)
    metrics = collector.app[METRICS]
    total = metrics.value(
        "presence_ignored_claims_total", {"claim": "unsigned_user_id", "where": "handshake"}
    )
    bad = metrics.value(
        "presence_ignored_claims_total", {"claim": "bad_user_token", "where": "handshake"}
    )
    assert (total, bad) == (1, 1)
    response = await collector.get("/metrics")
    assert "trail_presence_ignored_claims_total" in await response.text()


async def test_the_older_ext_visit_id_style_binds_the_session(
    collector: Client, data_dir: Path
) -> None:
    cid = await handshake(collector, {"visit_id": "old-visit", "visitor_id": "old-visitor"})
    await asyncio.sleep(0.1)
    await flush(collector)
    (row,) = presence_rows(data_dir, f"client_id = '{cid}'")
    assert (row["visit_token"], row["visitor_token"]) == ("old-visit", "old-visitor")


async def test_identify_binds_a_live_session_of_this_node(
    collector: Client, data_dir: Path
) -> None:
    cid = await handshake(collector)
    bad = await collector.post(
        "/api/presence/identify", json={"client_id": "nobody", "visit_token": "v"}
    )
    assert bad.status == 404
    assert "error" in await bad.json()
    for body in (b"not json", b"[1]", b'{"client_id": 5, "visit_token": "v"}'):
        r = await collector.post(
            "/api/presence/identify", data=body, headers={"Content-Type": "application/json"}
        )
        assert r.status == 400, body
    r = await collector.post("/api/presence/identify", json={"client_id": cid})
    assert r.status == 400
    # form-encoded, as jQuery's $.post sends it
    ok = await collector.post(
        "/api/presence/identify",
        data={"client_id": cid, "visit_token": "v9", "visitor_token": "vis9"},
    )
    assert ok.status == 200, await ok.text()
    again = await collector.post(
        "/api/presence/identify", json={"client_id": cid, "visit_token": "v9"}
    )
    assert again.status == 200
    other = await collector.post(
        "/api/presence/identify", json={"client_id": cid, "visit_token": "v10"}
    )
    assert other.status == 409
    assert "another visit" in (await other.json())["error"]
    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": cid})
    await asyncio.sleep(0.1)
    await flush(collector)
    rows = presence_rows(data_dir, f"client_id = '{cid}'")
    assert [(r["transition"], r["visit_token"], r["visitor_token"]) for r in rows] == [
        ("online", None, None),
        ("identify", "v9", "vis9"),  # the repeated identify changed nothing: no second row
        ("offline", "v9", "vis9"),
    ]


async def test_live_channels_need_the_api_token(collector: Client) -> None:
    cid = await handshake(collector)
    for pattern in ("/trail/presence", "/trail/**", "/**"):
        reply = await subscribe(collector, cid, pattern)
        assert not reply["successful"]
        assert reply["error"].startswith(f"403:{pattern}:")
    wrong = await subscribe(collector, cid, "/trail/presence", ext={"trail": {"token": "nope"}})
    assert not wrong["successful"]
    assert (await subscribe(collector, cid, "/chat/*"))["successful"]
    right = await subscribe(collector, cid, "/trail/presence", ext={"trail": {"token": API_TOKEN}})
    assert right["successful"]
    # once authorised, the same client may add more live subscriptions
    assert (await subscribe(collector, cid, "/trail/events"))["successful"]
    # a token on the handshake authorises the session
    watcher = await handshake(collector, {"trail": {"token": API_TOKEN}})
    assert (await subscribe(collector, watcher, "/trail/**"))["successful"]


async def test_trail_presence_carries_joins_and_leaves_per_person(collector: Client) -> None:
    watcher = await handshake(collector, {"trail": {"token": API_TOKEN}})
    assert (await subscribe(collector, watcher, "/trail/presence"))["successful"]
    tab1 = await handshake(collector, {"trail": {"visit_token": "v1", "visitor_token": "ann"}})
    tab2 = await handshake(collector, {"trail": {"visit_token": "v1", "visitor_token": "ann"}})
    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": tab1})
    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": tab2})
    got = await deliveries(collector, watcher, "/trail/presence", 2)
    assert [(m["type"], m["visitor_token"], m["clients"]) for m in got] == [
        ("join", "ann", 1),
        ("leave", "ann", 0),
    ]
    assert set(got[0]) == {
        "type",
        "user_id",
        "visitor_token",
        "visit_token",
        "time",
        "page",
        "clients",
    }
    joined = datetime.fromisoformat(got[0]["time"])
    left = datetime.fromisoformat(got[1]["time"])
    assert joined <= left


async def test_trail_events_carries_each_accepted_event(collector: Client) -> None:
    watcher = await handshake(collector, {"trail": {"token": API_TOKEN}})
    assert (await subscribe(collector, watcher, "/trail/events"))["successful"]
    event = {"id": "e-1", "name": "signup", "properties": {"plan": "pro", "seats": 3}}
    response = await collector.post(
        "/ahoy/events",
        json={"visit_token": "v-ev", "visitor_token": "vis-ev", "events": [event]},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"},
    )
    assert response.status == 200, await response.text()
    (got,) = await deliveries(collector, watcher, "/trail/events", 1)
    assert got["event_id"] == "e-1"
    assert (got["visit_token"], got["visitor_token"], got["name"]) == ("v-ev", "vis-ev", "signup")
    assert got["properties"] == {"plan": "pro", "seats": 3}
    datetime.fromisoformat(got["time"])


async def test_api_online_lists_persons_from_memory(collector: Client) -> None:
    assert (await collector.get("/api/online")).status == 401
    wrong = await collector.get("/api/online", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    visit = await collector.post(
        "/ahoy/visits",
        json={
            "visit_token": "v-on",
            "visitor_token": "vis-on",
            "landing_page": "https://a.example/",
        },
        headers={"User-Agent": firefox},
    )
    assert visit.status == 200, await visit.text()
    view = await collector.post(
        "/ahoy/events",
        json=[{"name": "$view", "properties": {"url": "https://a.example/cart?x=1"}}],
        headers={"Ahoy-Visit": "v-on", "Ahoy-Visitor": "vis-on", "User-Agent": firefox},
    )
    assert view.status == 200, await view.text()
    cid = await handshake(collector, {"trail": {"visit_token": "v-on"}})
    await subscribe(collector, cid, "/chat/9")
    await handshake(collector)  # no visitor, no user: not a person
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    response = await collector.get("/api/online", headers=auth)
    assert response.status == 200
    (row,) = await response.json()
    assert list(row) == [
        "user_id",
        "visitor_token",
        "visit_token",
        "online_since",
        "clients",
        "channels",
        "last_page",
        "browser",
        "os",
        "device_type",
        "country",
        "referring_domain",
    ]
    assert (row["visitor_token"], row["visit_token"], row["clients"]) == ("vis-on", "v-on", 1)
    assert row["channels"] == ["/chat/9"]
    assert row["last_page"] == "/cart"  # from the $view event, whose properties are stored as text
    assert row["browser"] == "Firefox"
    assert datetime.fromisoformat(row["online_since"]).tzinfo is not None


async def test_api_online_without_a_configured_token_is_refused(
    aiohttp_client: ClientFactory, data_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir, api_token=None)))
    response = await client.get("/api/online", headers={"Authorization": "Bearer x"})
    assert response.status == 403
    cid = await handshake(client, {"trail": {"token": "x"}})
    assert not (await subscribe(client, cid, "/trail/presence"))["successful"]


async def test_stopping_the_server_ends_open_sessions_with_server_shutdown(
    aiohttp_client: ClientFactory, data_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    cid = await handshake(client, {"trail": {"visitor_token": "vis-s"}})
    await client.close()
    (row,) = presence_rows(data_dir, f"client_id = '{cid}' AND transition = 'offline'")
    assert row["reason"] == "server_shutdown"


async def test_sessions_left_open_by_a_crash_end_node_lost_at_restart(
    aiohttp_client: ClientFactory,
    data_dir: Path,
    write_rows: Callable[[str, list[dict[str, Any]]], None],
) -> None:
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def row(
        seq: int, seconds: float, transition: str, client: str | None, **kw: Any
    ) -> dict[str, Any]:
        at = t0 + timedelta(seconds=seconds)
        return dict(
            time=at, seq=seq, node_id=NODE, client_id=client, transition=transition,
            detected_at=at, **kw,
        )  # fmt: skip

    write_rows(
        "presence",
        [
            row(1, 0, "heartbeat", None),
            row(2, 1, "online", "quiet", reason="handshake", visitor_token="a"),
            row(3, 2, "online", "busy", reason="handshake", visit_token="vb", visitor_token="b"),
            row(4, 3, "online", "closed", reason="handshake"),
            row(5, 4, "offline", "closed", reason="disconnect"),
            row(6, 10, "heartbeat", None),
            row(7, 14, "subscribe", "busy", channel="/chat"),  # after the last heartbeat
            # another node's open session is not this node's business
            {**row(8, 5, "online", "elsewhere", reason="handshake"), "node_id": "other"},
        ],
    )
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    await flush(client)
    lost = presence_rows(data_dir, "reason = 'node_lost'")
    assert {(r["client_id"], r["time"]) for r in lost} == {
        ("quiet", t0 + timedelta(seconds=10)),
        ("busy", t0 + timedelta(seconds=14)),
    }
    busy = next(r for r in lost if r["client_id"] == "busy")
    assert (busy["visit_token"], busy["visitor_token"]) == ("vb", "b")
    assert all(r["node_id"] == NODE and r["detected_at"] > r["time"] for r in lost)
    assert min(r["seq"] for r in lost) > 7
    await client.close()
    # a clean restart finds nothing left open
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    await client.close()
    assert len(presence_rows(data_dir, "reason = 'node_lost'")) == 2


async def test_the_tracker_is_reachable_and_counts_sessions(collector: Client) -> None:
    await handshake(collector, {"trail": {"visitor_token": "p"}})
    tracker = collector.app[TRACKER]
    assert tracker.live.persons_count() == 1
    text = await (await collector.get("/metrics")).text()
    assert "trail_presence_sessions 1" in text


@pytest.mark.parametrize(
    ("fields", "binding", "ignored"),
    [
        ({"trail": {"visit_token": "v", "visitor_token": "w"}}, Binding("v", "w"), []),
        ({"visit_token": "v", "visitor_token": "w"}, Binding("v", "w"), []),
        ({"visit_id": "v", "visitor_id": "w"}, Binding("v", "w"), []),
        ({"trail": {"visit_token": "v<script>"}}, Binding("vscript"), []),
        ({"trail": {"user_id": "1"}}, Binding(), ["unsigned_user_id"]),
        ({"user_token": "1.abc"}, Binding(), ["bad_user_token"]),
        (
            {"trail": {"visit_token": "v", "user_token": sign_user_token("7", "v", SECRET)}},
            Binding("v", user_id="7"),
            [],
        ),
        (
            {"trail": {"visit_token": "v", "user_token": sign_user_token("7", "other", SECRET)}},
            Binding("v"),
            ["user_token_for_other_visit"],
        ),
        (
            {"trail": {"user_token": sign_user_token("7", "v", SECRET)}},
            Binding(),
            ["user_token_for_other_visit"],
        ),
        (
            {"trail": {"visit_token": "v", "user_token": sign_user_id("7", SECRET)}},
            Binding("v"),
            ["unscoped_user_token"],
        ),
        ({"trail": "junk"}, Binding(), []),
    ],
)
def test_binding_from_ext(fields: dict[str, Any], binding: Binding, ignored: list[str]) -> None:
    got, claims, _ = binding_from(fields, SECRET)
    assert (got, claims) == (binding, ignored)


def test_a_user_token_is_never_accepted_without_a_secret() -> None:
    fields = {"visit_token": "v", "user_token": sign_user_token("7", "v", SECRET)}
    got, claims, user = binding_from(fields, None)
    assert (got.user_id, user, claims) == (None, None, ["bad_user_token"])


def test_unscoped_user_tokens_only_with_the_option() -> None:
    fields = {"visit_token": "v", "user_token": sign_user_id("7", SECRET)}
    got, claims, user = binding_from(fields, SECRET, accept_unscoped=True)
    assert (got.user_id, user, claims) == ("7", "7", ["accepted_unscoped_user_token"])


@pytest.mark.parametrize(
    ("pattern", "guarded"),
    [
        ("/**", True),
        ("/trail/presence", True),
        ("/trail/*", True),
        ("/*", False),
        ("/chat/**", False),
    ],
)
def test_which_subscriptions_need_the_token(pattern: str, guarded: bool) -> None:
    assert covers_live_channels(pattern) is guarded


def test_event_message_carries_properties_as_an_object() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    record = {"event_id": "e", "properties": json.dumps({"a": [1]}), "time": at}
    msg = event_message(record, {"a": [1]})
    assert msg["properties"] == {"a": [1]}
    assert msg["event_id"] == "e"
    assert msg["time"] == "2026-03-01T00:00:00+00:00"


async def test_trail_online_url_reads_the_same_rows(collector: Client) -> None:
    from trailcli.client.online import fetch_online
    from trailcli.presence.request import Ask, answer

    cid = await handshake(collector, {"trail": {"visitor_token": "vis-url"}})
    await subscribe(collector, cid, "/room/1")
    base = str(collector.make_url("/")).rstrip("/")

    def ask(channel: str) -> list[dict[str, Any]]:
        request = Ask.parse(
            None, None, None, "person", channel, "15s", False, base, API_TOKEN, "UTC"
        )
        return answer(Path("unused"), request, fetch_online)[0]

    rows = await asyncio.to_thread(ask, "/room/*")
    assert [(r["visitor_token"], r["clients"], r["channels"]) for r in rows] == [
        ("vis-url", 1, ["/room/1"])
    ]
    assert rows[0]["online_since"].tzinfo is not None
    assert await asyncio.to_thread(ask, "/other/*") == []


async def test_a_reload_publishes_no_leave_and_the_leave_waits_for_the_grace(
    collector: Client,
) -> None:
    watcher = await handshake(collector, {"trail": {"token": API_TOKEN}})
    assert (await subscribe(collector, watcher, "/trail/presence"))["successful"]
    page = {"trail": {"visit_token": "v-r", "visitor_token": "reloader"}}
    before = await handshake(collector, page)
    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": before})
    after = await handshake(collector, page)  # the reloaded page, well inside the 0.5 s grace
    await asyncio.sleep(0.8)
    got = await deliveries(collector, watcher, "/trail/presence", 1)
    assert [(m["type"], m["clients"]) for m in got] == [("join", 1)]
    await bayeux(collector, {"channel": "/meta/disconnect", "clientId": after})
    ended = datetime.now(UTC)
    got = await deliveries(collector, watcher, "/trail/presence", 1)
    assert [m["type"] for m in got] == ["leave"]
    assert datetime.now(UTC) - ended >= timedelta(seconds=0.5)
    left = datetime.fromisoformat(got[0]["time"])  # the disconnect, not the publication
    assert ended - timedelta(seconds=1) < left <= ended


async def test_a_closed_websocket_ends_transport_closed_at_the_close(
    collector: Client, data_dir: Path
) -> None:
    cid = await handshake(collector, {"trail": {"visitor_token": "ws-user"}})
    ws = await collector.ws_connect("/faye")
    await ws.send_json(
        [{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket", "id": "2"}]
    )
    await asyncio.sleep(0.2)
    await ws.close()
    closed = datetime.now(UTC)
    await asyncio.sleep(1.2)  # grace 0.5 s plus the engine's sweep
    await flush(collector)
    (row,) = presence_rows(data_dir, f"client_id = '{cid}' AND transition = 'offline'")
    assert row["reason"] == "transport_closed"
    assert abs(row["time"] - closed) < timedelta(seconds=1)
    assert row["detected_at"] - row["time"] >= timedelta(seconds=0.5)


async def test_an_unreadable_presence_file_does_not_stop_the_collector(
    aiohttp_client: ClientFactory,
    data_dir: Path,
    write_rows: Callable[[str, list[dict[str, Any]]], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    write_rows(
        "presence",
        [{"time": at, "seq": 1, "node_id": NODE, "client_id": "c", "transition": "online"}],
    )
    (damaged,) = (data_dir / "presence").rglob("*.parquet")
    damaged.write_bytes(b"not parquet at all")
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    assert (await client.get("/health")).status == 200
    assert client.app[METRICS].value("presence_recovery_errors_total") == 1
    assert str(damaged) in caplog.text
    await handshake(client, {"trail": {"visitor_token": "still-works"}})
    assert client.app[TRACKER].live.persons_count() == 1


async def test_identify_with_a_signed_user_token_binds_the_visit(
    collector: Client, data_dir: Path
) -> None:
    cid = await handshake(collector, {"trail": {"visitor_token": "vis-u"}})
    token = sign_user_token("u-77", "v-u", SECRET)
    body = {"client_id": cid, "visit_token": "v-u", "user_token": token}
    assert (await collector.post("/api/presence/identify", json=body)).status == 200
    await asyncio.sleep(0.2)
    await flush(collector)
    (row,) = presence_rows(data_dir, f"client_id = '{cid}' AND transition = 'identify'")
    assert (row["visit_token"], row["visitor_token"], row["user_id"]) == ("v-u", "vis-u", "u-77")
    con = views.connect(data_dir, need=("identities",))
    assert con.execute("SELECT visit_token, user_id, source FROM identities").fetchall() == [
        ("v-u", "u-77", "presence")
    ]
    (person,) = collector.app[TRACKER].live.online()
    assert person["user_id"] == "u-77"


@pytest.mark.parametrize("where", ["handshake", "identify"])
@pytest.mark.parametrize("scoped", [True, False])
async def test_a_user_token_cannot_claim_another_persons_visit(
    collector: Client, data_dir: Path, where: str, scoped: bool
) -> None:
    # the attacker knows the victim's visit token and holds a valid token of their own
    token = (sign_user_token("attacker", "attacker-visit", SECRET) if scoped
             else sign_user_id("attacker", SECRET))  # fmt: skip
    claim = {"visit_token": "victim-visit", "visitor_token": "attacker", "user_token": token}
    if where == "handshake":
        cid = await handshake(collector, {"trail": claim})
    else:
        cid = await handshake(collector, {"trail": {"visitor_token": "attacker"}})
        body = {"client_id": cid, **claim}
        assert (await collector.post("/api/presence/identify", json=body)).status == 200
    await asyncio.sleep(0.2)
    await flush(collector)
    reason = "other_visit" if scoped else "unscoped"
    text = await (await collector.get("/metrics")).text()
    assert f'trail_user_tokens_refused_total{{reason="{reason}",where="{where}"}} 1' in text
    rows = presence_rows(data_dir, f"client_id = '{cid}'")
    assert "victim-visit" in {r["visit_token"] for r in rows}  # the session's rows are there
    assert not [r for r in rows if r["user_id"]]  # and name no user
    con = views.connect(data_dir, need=())
    assert con.execute("SELECT count(*) FROM identities").fetchone() == (0,)
