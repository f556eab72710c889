"""The /faye transports on a real aiohttp server over loopback: long-polling, JSON-P, WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import WSMsgType, web

from trailcli.collector.bayeux import BAYEUX_ENDPOINT, BAYEUX_ENGINE, mount
from trailcli.collector.bayeux.engine import Context, Engine, EngineObserver
from trailcli.collector.settings import Settings

SECRET = "back-end-secret"


class Closed(EngineObserver):
    """Observer keeping (client_id, reason) of every session end."""

    def __init__(self) -> None:
        self.ends: list[tuple[str, str]] = []

    def client_closed(self, client_id: str, reason: str, last_alive: Any, now: Any) -> None:
        self.ends.append((client_id, reason))


def make_app(tmp_path: Path, **overrides: Any) -> web.Application:
    settings = Settings(
        bayeux_timeout=5.0,
        transport_grace=0.3,
        secret=SECRET,
        open_publish=False,
        faye_client_js=tmp_path / "faye-browser-min.js",
        **overrides,
    )
    app = web.Application()
    mount(app, settings)
    return app


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(make_app(tmp_path))


def engine_of(client: Any) -> Engine:
    return client.server.app[BAYEUX_ENGINE]


async def post(client: Any, body: Any, **kwargs: Any) -> list[dict]:
    response = await client.post("/faye", json=body, **kwargs)
    assert response.status == 200
    return await response.json()


async def handshake(client: Any) -> str:
    [reply] = await post(
        client,
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        },
    )
    return reply["clientId"]


async def subscribe(client: Any, client_id: str, channel: str) -> None:
    [reply] = await post(
        client, {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}
    )
    assert reply["successful"] is True


def connect_message(client_id: str, **extra: Any) -> dict:
    return {
        "channel": "/meta/connect",
        "clientId": client_id,
        "connectionType": "long-polling",
        **extra,
    }


async def test_replies_are_json_arrays_with_faye_headers(client: Any) -> None:
    response = await client.post(
        "/faye",
        json={
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["websocket"],
        },
        headers={"Origin": "http://app.example"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache, no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    [reply] = await response.json()
    assert reply["successful"] is True
    assert await post(client, []) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"42", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"other=1", "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
        (b"message=%ff%fe", "application/x-www-form-urlencoded"),
    ],
)
async def test_unreadable_requests_get_400(client: Any, body: bytes, content_type: str) -> None:
    response = await client.post("/faye", data=body, headers={"Content-Type": content_type})
    assert response.status == 400
    assert (await response.text()).startswith("Bad request")
    assert not engine_of(client).clients


async def test_too_large_a_request_gets_413(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path, bayeux_max_message_bytes=1000))
    response = await client.post("/faye", data=b"message=" + b"x" * 10_000)
    assert response.status == 413
    assert "Payload too large" in await response.text()


async def test_back_end_form_publish_with_the_secret_reaches_subscribers(client: Any) -> None:
    listener = await handshake(client)
    await subscribe(client, listener, "/news/*")
    message = json.dumps({"channel": "/news/today", "data": {"headline": "hi"}})
    # what Net::HTTP.post_form sends: application/x-www-form-urlencoded, no client id
    refused = await client.post("/faye", data={"message": message})
    [reply] = await refused.json()
    assert reply["successful"] is False
    assert reply["error"].startswith("403:/news/today:Authentication required")
    accepted = await client.post(
        "/faye", data={"message": message}, headers={"Authorization": f"Bearer {SECRET}"}
    )
    assert (await accepted.json())[0]["successful"] is True
    with_ext = json.dumps({"channel": "/news/today", "data": 2, "ext": {"auth": SECRET}})
    await client.post("/faye", data=urlencode({"message": with_ext}).encode())
    replies = await post(client, connect_message(listener))
    delivered = [r for r in replies if "data" in r]
    assert delivered == [
        {"channel": "/news/today", "data": {"headline": "hi"}},
        {"channel": "/news/today", "data": 2},
    ]


async def test_callback_polling(client: Any) -> None:
    handshake_message = json.dumps(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["callback-polling"],
            }
        ]
    )
    response = await client.get(
        "/faye", params={"message": handshake_message, "jsonp": "__jsonp1__"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    text = await response.text()
    assert text.startswith("/**/__jsonp1__([") and text.endswith("]);")
    reply = json.loads(text[len("/**/__jsonp1__(") : -2])[0]
    client_id = reply["clientId"]
    await subscribe(client, client_id, "/s")
    await client.post(
        "/faye",
        json={"channel": "/s", "data": "line\u2028break", "clientId": client_id},
    )
    polled = await client.get(
        "/faye", params={"message": json.dumps(connect_message(client_id, advice={"timeout": 0}))}
    )
    body = await polled.text()
    assert body.startswith("/**/jsonpcallback(")
    assert "\\u2028" in body and "\u2028" not in body
    bad = await client.get("/faye", params={"message": handshake_message, "jsonp": "alert(1)"})
    assert bad.status == 400


async def test_preflight(client: Any) -> None:
    response = await client.options(
        "/faye", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert response.headers["Access-Control-Allow-Methods"] == "POST, GET"
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_held_long_poll_is_released_by_a_publish(client: Any) -> None:
    client_id = await handshake(client)
    await subscribe(client, client_id, "/room/**")
    started = time.monotonic()
    poll = asyncio.create_task(post(client, connect_message(client_id)))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await post(client, {"channel": "/room/a/b", "data": 1, "clientId": client_id})
    replies = await asyncio.wait_for(poll, 2.0)
    assert time.monotonic() - started < 2.0
    assert replies[0]["channel"] == "/meta/connect" and replies[0]["successful"] is True
    assert replies[1] == {"channel": "/room/a/b", "data": 1}


async def test_batched_connect_with_timeout_zero_is_answered_at_once(client: Any) -> None:
    client_id = await handshake(client)
    started = time.monotonic()
    replies = await post(
        client,
        [
            connect_message(client_id, advice={"timeout": 0}, id="1"),
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/x", "id": "2"},
        ],
    )
    assert time.monotonic() - started < 1.0
    assert [r["id"] for r in replies] == ["2", "1"]


async def test_subpaths_are_the_same_endpoint(client: Any) -> None:
    response = await client.post(
        "/faye/anything",
        json={
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["long-polling"],
        },
    )
    assert (await response.json())[0]["successful"] is True


@pytest.mark.parametrize("handler_cancellation", [True, False])
async def test_a_long_poll_whose_client_goes_away_is_noticed(
    tmp_path: Path, handler_cancellation: bool
) -> None:
    app = make_app(tmp_path)
    engine = app[BAYEUX_ENGINE]
    endpoint = app[BAYEUX_ENDPOINT]
    closed = Closed()
    engine.add_observer(closed)
    # the test client's server always cancels handlers; `trail collect`'s runner may not
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await _client_goes_away(engine, endpoint, closed, port, watched=not handler_cancellation)
    finally:
        await runner.cleanup()


async def _client_goes_away(
    engine: Engine, endpoint: Any, closed: Closed, port: int, watched: bool
) -> None:
    batch = await engine.handle(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        ],
        Context(),
    )
    client_id = batch.replies[0]["clientId"]
    body = json.dumps([connect_message(client_id)]).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    assert engine.clients[client_id].held == 1
    assert len(endpoint.held) == (1 if watched else 0)  # watched only when needed
    writer.close()
    closed_at = time.monotonic()
    while engine.clients.get(client_id) and engine.clients[client_id].transport_closed_at is None:
        await asyncio.sleep(0.02)
        assert time.monotonic() - closed_at < 1.0
    while client_id in engine.clients:  # then the grace period (0.3 s) runs out
        await asyncio.sleep(0.05)
        assert time.monotonic() - closed_at < 3.0
    assert closed.ends == [(client_id, "transport_closed")]
    del reader


async def test_websocket_session(client: Any) -> None:
    engine = engine_of(client)
    ws = await client.ws_connect("/faye")
    await ws.send_str(
        json.dumps(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["websocket"],
                }
            ]
        )
    )
    [reply] = json.loads((await ws.receive()).data)
    client_id = reply["clientId"]
    await ws.send_str(
        json.dumps(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": client_id,
                    "subscription": "/w/*",
                    "id": "2",
                }
            ]
        )
    )
    assert json.loads((await ws.receive()).data)[0]["successful"] is True
    await ws.send_str(
        json.dumps(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": client_id,
                    "connectionType": "websocket",
                    "id": "3",
                }
            ]
        )
    )
    await asyncio.sleep(0.05)
    assert engine.clients[client_id].held == 1  # the connect is held; the socket still reads
    await post(client, {"channel": "/w/1", "data": "pushed", "ext": {"auth": SECRET}})
    pushed = json.loads((await asyncio.wait_for(ws.receive(), 2.0)).data)
    assert pushed == [{"channel": "/w/1", "data": "pushed"}]
    await ws.send_str(
        json.dumps([{"channel": "/meta/disconnect", "clientId": client_id, "id": "4"}])
    )
    frames = []
    while True:
        frame = await asyncio.wait_for(ws.receive(), 2.0)
        if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            break
        frames.extend(json.loads(frame.data))
    assert {
        "id": "4",
        "clientId": client_id,
        "channel": "/meta/disconnect",
        "successful": True,
    } in frames
    assert ws.close_code == 1000
    assert client_id not in engine.clients


async def test_a_dropped_websocket_ends_the_session_after_grace(client: Any) -> None:
    engine = engine_of(client)
    closed = Closed()
    engine.add_observer(closed)
    ws = await client.ws_connect("/faye")
    await ws.send_str(
        json.dumps(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["websocket"],
                }
            ]
        )
    )
    client_id = json.loads((await ws.receive()).data)[0]["clientId"]
    await ws.send_str(json.dumps([connect_message(client_id, connectionType="websocket")]))
    await asyncio.sleep(0.05)
    await ws.close()
    deadline = time.monotonic() + 3.0
    while client_id in engine.clients:
        await asyncio.sleep(0.05)
        assert time.monotonic() < deadline
    assert closed.ends == [(client_id, "transport_closed")]


async def test_browser_client_script(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    missing = await client.get("/faye/client.js")
    assert missing.status == 404
    assert "--faye-client-js" in await missing.text()
    (tmp_path / "faye-browser-min.js").write_text("var Faye = {};")
    for path in ("/faye/client.js", "/faye.js"):
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert await response.text() == "var Faye = {};"


async def test_shutdown_answers_held_connects_and_ends_sessions(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    engine = engine_of(client)
    closed = Closed()
    engine.add_observer(closed)
    client_id = await handshake(client)
    poll = asyncio.create_task(client.post("/faye", json=connect_message(client_id)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await client.server.app.shutdown()
    response = await asyncio.wait_for(poll, 2.0)
    assert (await response.json())[0]["successful"] is True
    assert time.monotonic() - started < 2.0
    assert closed.ends == [(client_id, "server_shutdown")]


async def test_the_collector_app_serves_faye_with_its_settings_and_metrics(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from collector_support import make_settings

    from trailcli.collector.app import create_app
    from trailcli.collector.bayeux import BAYEUX_ENGINE as KEYED_ENGINE

    settings = make_settings(
        tmp_path / "data",
        secret=SECRET,
        bayeux_timeout=7.0,
        bayeux_max_queued=2,
        bayeux_max_subscriptions=3,
    )
    client = await aiohttp_client(create_app(settings))
    engine = client.server.app[KEYED_ENGINE]
    assert engine.config.timeout == 7.0
    assert engine.config.max_queued_messages == 2
    assert engine.config.max_subscriptions == 3
    assert engine.config.secret == SECRET
    client_id = await handshake(client)
    await subscribe(client, client_id, "/m")
    for n in range(3):
        await post(client, {"channel": "/m", "data": n, "clientId": client_id})
    text = await (await client.get("/metrics")).text()
    assert "trail_bayeux_clients 1" in text
    assert 'trail_bayeux_publishes_total{source="client"} 3' in text
    assert 'trail_drops_total{reason="bayeux_queue_full"} 1' in text


async def test_a_large_message_arriving_in_pieces_is_read_whole(client: Any) -> None:
    client_id = await handshake(client)
    await subscribe(client, client_id, "/big")
    data = "x" * 30_000
    body = json.dumps({"channel": "/big", "data": data, "clientId": client_id}).encode()
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    for start in range(0, len(body), 4096):  # in pieces, with pauses between them
        writer.write(body[start : start + 4096])
        await writer.drain()
        await asyncio.sleep(0.01)
    response = await reader.read()
    writer.close()
    assert b'"successful":true' in response
    [delivered] = [d.message for d in engine_of(client).clients[client_id].queue]
    assert delivered["data"] == data


async def test_an_unreadable_websocket_frame_gets_an_error_and_the_socket_stays_open(
    client: Any,
) -> None:
    ws = await client.ws_connect("/faye")
    for frame in ("{nope", "[1]", '"text"'):
        await ws.send_str(frame)
        [reply] = json.loads((await asyncio.wait_for(ws.receive(), 2.0)).data)
        assert reply["successful"] is False
        assert reply["error"].startswith("400::Bad request")
    await ws.send_str(
        json.dumps(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["websocket"],
                }
            ]
        )
    )
    assert json.loads((await ws.receive()).data)[0]["successful"] is True
    await ws.close()


async def test_a_client_that_moves_to_a_new_socket_gets_its_messages_there(client: Any) -> None:
    engine = engine_of(client)
    client_id = await handshake(client)
    await subscribe(client, client_id, "/moves")
    old = await client.ws_connect("/faye")
    connect = json.dumps([connect_message(client_id, connectionType="websocket")])
    await old.send_str(connect)
    new = await client.ws_connect("/faye")
    await new.send_str(connect)
    await asyncio.sleep(0.05)
    await engine.publish("/moves", "here")
    pushed = json.loads((await asyncio.wait_for(new.receive(), 2.0)).data)
    assert pushed == [{"channel": "/moves", "data": "here"}]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(old.receive(), 0.2)
    await old.close()
    await new.close()


async def test_eventsource_stream(client: Any) -> None:
    engine = engine_of(client)
    closed = Closed()
    engine.add_observer(closed)
    client_id = await handshake(client)
    await subscribe(client, client_id, "/es/*")
    unknown = await client.get("/faye/nobody", headers={"Accept": "text/event-stream"})
    assert unknown.status == 400
    stream = await client.get(f"/faye/{client_id}", headers={"Accept": "text/event-stream"})
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert await stream.content.readuntil(b"\r\n\r\n") == b"retry: 5000\r\n\r\n"
    [ack] = await post(client, connect_message(client_id, connectionType="eventsource"))
    assert ack["successful"] is True
    assert ack["advice"] == {"reconnect": "retry", "interval": 5000, "timeout": 0}
    await post(client, {"channel": "/es/1", "data": {"pushed": True}, "clientId": client_id})
    frame = await asyncio.wait_for(stream.content.readuntil(b"\r\n\r\n"), 2.0)
    assert frame.startswith(b"data: ")
    assert json.loads(frame[6:]) == [{"channel": "/es/1", "data": {"pushed": True}}]
    stream.close()
    deadline = time.monotonic() + 3.0
    while client_id in engine.clients:  # the stream closed; the grace (0.3 s) runs out
        await asyncio.sleep(0.05)
        assert time.monotonic() < deadline
    assert closed.ends == [(client_id, "transport_closed")]


async def test_tracing_writes_each_request_and_reply_with_its_ids(
    client: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trailcli.collector.bayeux import transports

    monkeypatch.setattr(transports, "_TRACING", True)
    client_id = await handshake(client)
    ws = await client.ws_connect("/faye")
    subscribe_message = {
        "channel": "/meta/subscribe",
        "clientId": client_id,
        "subscription": "/t",
        "id": "7",
    }
    await ws.send_str(json.dumps([subscribe_message]))
    await ws.receive()
    await ws.close()
    lines = [line.split(" ", 4) for line in capsys.readouterr().err.splitlines()]
    seen = [(direction, transport) for _, direction, transport, _, _ in lines]
    assert seen == [
        ("in", "long-polling"),
        ("out", "long-polling"),
        ("in", "websocket"),
        ("out", "websocket"),
    ]
    assert json.loads(lines[2][4]) == [subscribe_message]
    [reply] = json.loads(lines[3][4])
    assert (reply["id"], reply["clientId"], reply["successful"]) == ("7", client_id, True)
