"""The pure Bayeux engine, message by message, with a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trailcli import channels
from trailcli.collector.bayeux.engine import (
    CONNECTION_TYPES,
    Context,
    Delivery,
    Engine,
    EngineConfig,
    EngineObserver,
    encode,
)

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cret-value"


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder(EngineObserver):
    """An observer that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def client_opened(self, client_id: str, ext: dict, now: datetime) -> None:
        self.calls.append(("opened", client_id, ext, now))

    def client_subscribed(self, client_id: str, channel: str, now: datetime) -> None:
        self.calls.append(("subscribed", client_id, channel, now))

    def client_unsubscribed(self, client_id: str, channel: str, now: datetime) -> None:
        self.calls.append(("unsubscribed", client_id, channel, now))

    def client_closed(self, client_id: str, reason: str, last_alive: datetime, now: datetime):
        self.calls.append(("closed", client_id, reason, last_alive, now))

    def client_connected(self, client_id: str, now: datetime) -> None:
        self.calls.append(("connected", client_id, now))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_engine(clock: FakeClock, recorder: Recorder | None = None, **config: Any) -> Engine:
    config.setdefault("timeout", 45.0)
    config.setdefault("secret", SECRET)
    engine = Engine(EngineConfig(**config), clock=clock)
    if recorder is not None:
        engine.add_observer(recorder)
    return engine


@pytest.fixture
def engine(clock: FakeClock, recorder: Recorder) -> Engine:
    return make_engine(clock, recorder)


async def send(engine: Engine, *messages: dict, context: Context | None = None) -> list[dict]:
    """Replies to one request; a connect is answered at once (hold 0)."""
    batch = await engine.handle(list(messages), context or Context())
    replies = [r if isinstance(r, dict) else r.message for r in batch.replies]
    if batch.connect is not None:
        batch.connect.hold = 0
        held = await engine.hold(batch.connect)
        replies += [r if isinstance(r, dict) else r.message for r in held]
    return replies


async def handshake(engine: Engine, ext: dict | None = None) -> str:
    message: dict = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling"],
        "id": "1",
    }
    if ext is not None:
        message["ext"] = ext
    [reply] = await send(engine, message)
    assert reply["successful"] is True
    return reply["clientId"]


async def subscribe(engine: Engine, client_id: str, channel: Any) -> dict:
    [reply] = await send(
        engine, {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}
    )
    return reply


async def connect(engine: Engine, client_id: str, **extra: Any) -> list[dict]:
    message = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    return await send(engine, {**message, **extra})


# ---- handshake ------------------------------------------------------------------------


async def test_handshake_gives_a_client_id_transports_and_advice(engine: Engine) -> None:
    [reply] = await send(
        engine,
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": ["in-process", "websocket", "long-polling"],
            "id": "1",
        },
    )
    assert reply["successful"] is True
    assert reply["id"] == "1"
    assert reply["version"] == "1.0"
    assert "websocket" in reply["supportedConnectionTypes"]
    assert reply["supportedConnectionTypes"] == CONNECTION_TYPES
    assert len(reply["clientId"]) == 31
    assert reply["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 45000}
    assert "ext" not in reply
    assert reply["clientId"] in engine.clients


async def test_handshake_tells_observers_with_secrets_stripped(
    engine: Engine, recorder: Recorder
) -> None:
    ext = {"auth": SECRET, "trail": {"token": "read-token", "visit_token": "v1"}, "visit_id": 7}
    client_id = await handshake(engine, ext)
    [(_, seen_id, seen_ext, when)] = recorder.of("opened")
    assert seen_id == client_id
    assert seen_ext == {"trail": {"visit_token": "v1"}, "visit_id": 7}
    assert when == START


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"supportedConnectionTypes": ["long-polling"]}, "402:version:Missing required parameter"),
        ({"version": "1.0"}, "402:supportedConnectionTypes:Missing required parameter"),
        (
            {"version": "1.0", "supportedConnectionTypes": ["iframe", "flash"]},
            "301:iframe,flash:Connection types not supported",
        ),
    ],
)
async def test_handshake_errors(engine: Engine, message: dict, expected: str) -> None:
    [reply] = await send(engine, {"channel": "/meta/handshake", "id": "1", **message})
    assert reply["successful"] is False
    assert reply["error"] == expected
    assert reply["advice"] == {"reconnect": "handshake"}
    assert "clientId" not in reply
    assert reply["supportedConnectionTypes"] == CONNECTION_TYPES
    assert not engine.clients


async def test_handshake_refused_when_the_node_is_full(clock: FakeClock) -> None:
    engine = make_engine(clock, max_clients=2)
    await handshake(engine)
    await handshake(engine)
    [reply] = await send(
        engine,
        {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]},
    )
    assert reply["successful"] is False
    assert reply["error"].startswith("503::Too many clients on this node (limit 2)")
    # the Faye client retries after its own delay, not at once (no handshake storm)
    assert reply["advice"] == {"reconnect": "retry", "interval": 10000}
    assert engine.stats["refused_clients"] == 1
    assert len(engine.clients) == 2


# ---- connect --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"clientId": "nope", "connectionType": "long-polling"}, "401:nope:Unknown client"),
        ({"connectionType": "long-polling"}, "402:clientId:Missing required parameter"),
        ({"clientId": "nope"}, "402:connectionType:Missing required parameter"),
        (
            {"clientId": "nope", "connectionType": "iframe"},
            "301:iframe:Connection types not supported",
        ),
    ],
)
async def test_connect_errors_ask_for_a_new_handshake(
    engine: Engine, message: dict, expected: str
) -> None:
    [reply] = await send(engine, {"channel": "/meta/connect", "id": "2", **message})
    assert reply == {
        "id": "2",
        "channel": "/meta/connect",
        "error": expected,
        "successful": False,
        "advice": {"reconnect": "handshake"},
    }


async def test_connect_hold_time_follows_the_request_advice(engine: Engine) -> None:
    client_id = await handshake(engine)
    base = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}

    async def hold_of(message: dict) -> float:
        batch = await engine.handle([message], Context())
        assert batch.connect is not None
        assert batch.connect.reply["successful"] is True
        assert batch.connect.reply["advice"]["timeout"] == 45000
        return batch.connect.hold

    assert await hold_of(base) == 45.0
    assert await hold_of({**base, "advice": {"timeout": 0}}) == 0.0
    assert await hold_of({**base, "advice": {"timeout": 1500}}) == 1.5
    assert await hold_of({**base, "advice": {"timeout": 10**9}}) == 45.0


async def test_connect_with_timeout_zero_answers_at_once_with_queued_messages(
    engine: Engine,
) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/a")
    await engine.publish("/a", {"n": 1})
    batch = await engine.handle(
        [
            {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
                "advice": {"timeout": 0},
            }
        ],
        Context(),
    )
    assert batch.connect is not None
    out = await asyncio.wait_for(engine.hold(batch.connect), 1.0)
    assert out[0]["channel"] == "/meta/connect"
    assert isinstance(out[1], Delivery)
    assert out[1].message == {"channel": "/a", "data": {"n": 1}}


async def test_held_connect_is_released_early_by_a_publish(clock: FakeClock) -> None:
    engine = make_engine(clock, timeout=30.0)
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/chat/*")
    batch = await engine.handle(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}],
        Context(),
    )
    assert batch.connect is not None
    held = asyncio.create_task(engine.hold(batch.connect))
    await asyncio.sleep(0.05)
    assert not held.done()
    assert engine.clients[client_id].held == 1
    await engine.publish("/chat/room", "hi")
    out = await asyncio.wait_for(held, 1.0)
    assert [i.message for i in out if isinstance(i, Delivery)] == [
        {"channel": "/chat/room", "data": "hi"}
    ]
    assert engine.clients[client_id].held == 0


async def test_held_connect_ends_after_its_hold_time_and_when_the_session_ends(
    clock: FakeClock,
) -> None:
    engine = make_engine(clock, timeout=0.1)
    client_id = await handshake(engine)
    replies = await asyncio.wait_for(connect(engine, client_id, id="c"), 1.0)
    assert replies[0]["successful"] is True
    batch = await engine.handle(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}],
        Context(),
    )
    assert batch.connect is not None
    batch.connect.hold = 30.0
    held = asyncio.create_task(engine.hold(batch.connect))
    await asyncio.sleep(0.02)
    await send(engine, {"channel": "/meta/disconnect", "clientId": client_id})
    out = await asyncio.wait_for(held, 1.0)
    assert out == [batch.connect.reply]


async def test_a_newer_connect_answers_the_one_still_held(engine: Engine) -> None:
    client_id = await handshake(engine)
    message = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    first = await engine.handle([message], Context())
    assert first.connect is not None
    old = asyncio.create_task(engine.hold(first.connect))
    await asyncio.sleep(0.01)
    second = await engine.handle([message], Context())
    assert second.connect is not None
    new = asyncio.create_task(engine.hold(second.connect))
    await asyncio.wait_for(old, 1.0)
    assert not new.done()
    new.cancel()


# ---- subscribe / unsubscribe ----------------------------------------------------------


async def test_subscribe_echoes_a_string_or_an_array(engine: Engine, recorder: Recorder) -> None:
    client_id = await handshake(engine)
    one = await subscribe(engine, client_id, "/chat/*")
    assert one == {
        "clientId": client_id,
        "channel": "/meta/subscribe",
        "subscription": "/chat/*",
        "successful": True,
    }
    many = await subscribe(engine, client_id, ["/foo/**", "/bar/*"])
    assert many["subscription"] == ["/foo/**", "/bar/*"]
    assert many["successful"] is True
    assert "advice" not in many
    assert engine.clients[client_id].subscriptions == {"/chat/*", "/foo/**", "/bar/*"}
    assert [c[2] for c in recorder.of("subscribed")] == ["/chat/*", "/foo/**", "/bar/*"]


async def test_subscribe_is_idempotent(engine: Engine, recorder: Recorder) -> None:
    client_id = await handshake(engine)
    assert (await subscribe(engine, client_id, "/r"))["successful"]
    assert (await subscribe(engine, client_id, "/r"))["successful"]
    assert len(recorder.of("subscribed")) == 1
    await engine.publish("/r", 1)
    assert len(engine.clients[client_id].queue) == 1


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("/meta/connect", "403:/meta/connect:Forbidden channel"),
        ("/meta/**", "403:/meta/**:Forbidden channel"),
        ("/service/foo", "403:/service/foo:Forbidden channel"),
        ("/a b", "405:/a b:Invalid channel"),
        ("/foo/*/bar", "405:/foo/*/bar:Invalid channel"),
        ("/foo/***", "405:/foo/***:Invalid channel"),
        ("chat", "405:chat:Invalid channel"),
        (7, "405:7:Invalid channel"),
    ],
)
async def test_subscribe_refuses_forbidden_and_invalid_channels(
    engine: Engine, channel: Any, expected: str
) -> None:
    client_id = await handshake(engine)
    reply = await subscribe(engine, client_id, channel)
    assert reply["successful"] is False
    assert reply["error"] == expected
    assert not engine.clients[client_id].subscriptions


async def test_subscribe_keeps_channels_before_the_first_bad_one(engine: Engine) -> None:
    client_id = await handshake(engine)
    reply = await subscribe(engine, client_id, ["/ok", "/meta/x", "/later"])
    assert reply["error"] == "403:/meta/x:Forbidden channel"
    assert engine.clients[client_id].subscriptions == {"/ok"}


async def test_subscribe_and_unsubscribe_errors(engine: Engine) -> None:
    for channel in ("/meta/subscribe", "/meta/unsubscribe"):
        [unknown] = await send(
            engine, {"channel": channel, "clientId": "nope", "subscription": "/a"}
        )
        assert unknown["error"] == "401:nope:Unknown client"
        [missing] = await send(engine, {"channel": channel, "subscription": "/a"})
        assert missing["error"] == "402:clientId:Missing required parameter"
        client_id = await handshake(engine)
        [empty] = await send(engine, {"channel": channel, "clientId": client_id})
        assert empty["error"] == "402:subscription:Missing required parameter"
        assert empty["subscription"] == []


async def test_subscription_limit_per_client(clock: FakeClock) -> None:
    engine = make_engine(clock, max_subscriptions=2)
    client_id = await handshake(engine)
    await subscribe(engine, client_id, ["/a", "/b"])
    assert (await subscribe(engine, client_id, "/a"))["successful"] is True
    reply = await subscribe(engine, client_id, "/c")
    assert reply["error"] == "403:/c:Too many subscriptions for one client (limit 2)"
    assert engine.stats["refused_subscriptions"] == 1


async def test_unsubscribe_stops_deliveries_and_is_silent_when_not_subscribed(
    engine: Engine, recorder: Recorder
) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/a")
    [reply] = await send(
        engine, {"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": "/a"}
    )
    assert reply["successful"] is True
    [again] = await send(
        engine, {"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": "/a"}
    )
    assert again["successful"] is True
    assert len(recorder.of("unsubscribed")) == 1
    assert await engine.publish("/a", 1) == 0
    assert "/a" not in engine.subscribers


# ---- publish --------------------------------------------------------------------------


async def test_publish_delivers_the_whole_message_minus_client_id(engine: Engine) -> None:
    publisher = await handshake(engine)
    listener = await handshake(engine)
    await subscribe(engine, publisher, "/x/*")
    await subscribe(engine, listener, ["/x/y", "/x/*", "/**"])
    message = {
        "channel": "/x/y",
        "data": {"a": 1},
        "clientId": publisher,
        "id": "zz",
        "ext": {"room": "kept", "auth": SECRET},
        "foo": "bar",
    }
    [ack] = await send(engine, message)
    assert ack == {"id": "zz", "clientId": publisher, "channel": "/x/y", "successful": True}
    expected = {
        "channel": "/x/y",
        "data": {"a": 1},
        "id": "zz",
        "ext": {"room": "kept"},
        "foo": "bar",
    }
    for client_id in (publisher, listener):  # the sender gets its own message; one copy each
        assert [d.message for d in engine.clients[client_id].queue] == [expected]


async def test_secret_like_ext_fields_are_never_delivered(clock: FakeClock) -> None:
    # the Railscasts-era Faye convention: back ends publish with ext.auth_token
    engine = make_engine(clock, open_publish=True)
    listener = await handshake(engine)
    await subscribe(engine, listener, "/chat/**")
    ext = {"auth_token": "rails-token", "apiKey": "k1", "clientSecret": "s1", "password": "p",
           "author": "ann", "trail": {"token": "read", "user_token": "u.v.sig", "page": "/x"}}  # fmt: skip
    [ack] = await send(engine, {"channel": "/chat/room", "data": "hi", "ext": ext})
    assert ack["successful"] is True
    [delivered] = [d.message for d in engine.clients[listener].queue]
    assert delivered["ext"] == {"author": "ann", "trail": {"page": "/x"}}
    only_secrets = {"channel": "/chat/room", "data": 2, "ext": {"auth_token": "t"}}
    await send(engine, only_secrets)
    assert "ext" not in engine.clients[listener].queue[-1].message


@pytest.mark.parametrize(
    ("pattern", "hits", "misses"),
    [
        ("/chat/*", ["/chat/a"], ["/chat", "/chat/a/b", "/chatter/a"]),
        ("/chat/**", ["/chat/a", "/chat/a/b"], ["/chat", "/other/a"]),
        ("/**", ["/a", "/a/b/c", "/x"], ["/trail/presence", "/service/x"]),
        ("/*", ["/a"], ["/a/b"]),
        ("/trail/**", ["/trail/presence", "/trail/events"], []),
    ],
)
async def test_wildcards(engine: Engine, pattern: str, hits: list, misses: list) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, pattern)
    for channel in hits:
        assert await engine.publish(channel, 1) == 1, channel
    for channel in misses:
        assert await engine.publish(channel, 1) == 0, channel


def test_expand_lists_every_matching_subscription() -> None:
    assert sorted(channels.expand("/a/b/c")) == sorted(
        ["/**", "/a/b/c", "/a/b/*", "/a/**", "/a/b/**"]
    )
    assert "/**" not in channels.expand("/trail/presence")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"channel": "/foo/*", "data": 1}, "405:/foo/*:Invalid channel"),
        ({"channel": "/bad channel", "data": 1}, "405:/bad channel:Invalid channel"),
        ({"channel": "/foo"}, "402:data:Missing required parameter"),
        ({"channel": "/meta/bogus", "data": 1}, "403:/meta/bogus:Forbidden channel"),
        ({"channel": "/meta/subscribe/x", "data": 1}, "403:/meta/subscribe/x:Forbidden channel"),
        ({"channel": "/trail/presence", "data": 1}, "403:/trail/presence:Forbidden channel"),
        ({"data": 1}, "402:channel:Missing required parameter"),
    ],
)
async def test_publish_errors(engine: Engine, message: dict, expected: str) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/**")
    [reply] = await send(engine, {**message, "clientId": client_id, "id": "9"})
    assert reply["successful"] is False
    assert reply["error"] == expected
    assert "data" not in reply
    assert not engine.clients[client_id].queue


async def test_publish_naming_an_unknown_client_is_refused(engine: Engine) -> None:
    [reply] = await send(
        engine, {"channel": "/a", "data": 1, "clientId": "ghost"}, context=Context(has_secret=True)
    )
    assert reply["error"] == "401:ghost:Unknown client"


async def test_publish_without_client_id_needs_the_secret(clock: FakeClock) -> None:
    engine = make_engine(clock)
    listener = await handshake(engine)
    await subscribe(engine, listener, "/news")
    [refused] = await send(engine, {"channel": "/news", "data": 1})
    assert refused["error"].startswith("403:/news:Authentication required")
    [wrong] = await send(engine, {"channel": "/news", "data": 2, "ext": {"auth": "guess"}})
    assert wrong["successful"] is False
    [by_header] = await send(
        engine, {"channel": "/news", "data": 3}, context=Context(has_secret=True)
    )
    assert by_header["successful"] is True
    [by_ext] = await send(engine, {"channel": "/news", "data": 4, "ext": {"auth": SECRET}})
    assert by_ext["successful"] is True
    delivered = [d.message for d in engine.clients[listener].queue]
    assert delivered == [{"channel": "/news", "data": 3}, {"channel": "/news", "data": 4}]
    open_engine = make_engine(clock, open_publish=True, secret=None)
    [open_reply] = await send(open_engine, {"channel": "/news", "data": 1})
    assert open_reply["successful"] is True


async def test_service_channels_are_acked_but_never_fanned_out(engine: Engine) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/**")
    [reply] = await send(engine, {"channel": "/service/echo", "data": 1, "clientId": client_id})
    assert reply["successful"] is True
    assert not engine.clients[client_id].queue


async def test_server_publish_reaches_trail_subscribers_only(engine: Engine) -> None:
    watcher = await handshake(engine)
    everything = await handshake(engine)
    await subscribe(engine, watcher, "/trail/**")
    await subscribe(engine, everything, "/**")
    assert await engine.publish("/trail/presence", {"type": "join"}) == 1
    assert [d.message["data"] for d in engine.clients[watcher].queue] == [{"type": "join"}]
    with pytest.raises(ValueError):
        await engine.publish("/meta/connect", {})


async def test_queue_limit_drops_the_oldest_and_counts(clock: FakeClock) -> None:
    engine = make_engine(clock, max_queued_messages=3)
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/q")
    for n in range(5):
        await engine.publish("/q", n)
    client = engine.clients[client_id]
    assert [d.message["data"] for d in client.queue] == [2, 3, 4]
    assert client.dropped == 2
    assert engine.stats["dropped_queue_full"] == 2


async def test_message_size_limit(clock: FakeClock) -> None:
    engine = make_engine(clock, max_message_bytes=100)
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/big")
    [small] = await send(engine, {"channel": "/big", "data": "x", "clientId": client_id})
    assert small["successful"] is True
    [big] = await send(engine, {"channel": "/big", "data": "x" * 200, "clientId": client_id})
    assert big["successful"] is False
    assert big["error"].startswith("407:/big:Failed to publish: ")
    assert "100-byte limit" in big["error"]
    assert len(engine.clients[client_id].queue) == 1


# ---- disconnect and session ends ------------------------------------------------------


async def test_disconnect_ends_the_session(
    engine: Engine, recorder: Recorder, clock: FakeClock
) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/a")
    clock.advance(5)
    [reply] = await send(engine, {"channel": "/meta/disconnect", "clientId": client_id, "id": "3"})
    assert reply == {
        "id": "3",
        "clientId": client_id,
        "channel": "/meta/disconnect",
        "successful": True,
    }
    assert recorder.of("closed") == [("closed", client_id, "disconnect", clock.now, clock.now)]
    assert not engine.subscribers
    [again] = await connect(engine, client_id)
    assert again["error"] == f"401:{client_id}:Unknown client"
    assert again["advice"] == {"reconnect": "handshake"}


async def test_disconnect_of_an_unknown_client(engine: Engine) -> None:
    [reply] = await send(engine, {"channel": "/meta/disconnect", "clientId": "nope"})
    assert reply == {
        "channel": "/meta/disconnect",
        "error": "401:nope:Unknown client",
        "successful": False,
    }


async def test_silent_client_times_out_after_twice_the_timeout(
    recorder: Recorder, clock: FakeClock
) -> None:
    engine = make_engine(clock, recorder, timeout=10.0)
    client_id = await handshake(engine)
    await connect(engine, client_id)  # answered at once in this helper
    last_request = clock.now
    clock.advance(3)
    await subscribe(engine, client_id, "/a")  # a request, but not a handshake or connect
    subscribe_time = clock.now
    clock.advance(16.9)
    assert engine.sweep() == []
    clock.advance(0.2)
    assert engine.sweep() == [(client_id, "timeout")]
    [(_, _, reason, last_alive, detected)] = recorder.of("closed")
    assert reason == "timeout"
    assert last_alive == subscribe_time
    assert last_alive > last_request
    assert detected == clock.now


async def test_held_connect_counts_as_alive(recorder: Recorder, clock: FakeClock) -> None:
    engine = make_engine(clock, recorder, timeout=10.0)
    client_id = await handshake(engine)
    batch = await engine.handle(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}],
        Context(),
    )
    assert batch.connect is not None
    batch.connect.hold = 30.0
    held = asyncio.create_task(engine.hold(batch.connect))
    await asyncio.sleep(0.01)
    clock.advance(60)
    assert engine.sweep() == []
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    clock.advance(19)
    assert engine.sweep() == []  # the countdown restarts when the hold ends
    clock.advance(1)
    assert engine.sweep() == [(client_id, "timeout")]


async def test_transport_closed_ends_the_session_after_grace(
    recorder: Recorder, clock: FakeClock
) -> None:
    engine = make_engine(clock, recorder, grace=15.0)
    client_id = await handshake(engine)
    clock.advance(2)
    closed_at = clock.now
    engine.transport_closed(client_id)
    clock.advance(14.9)
    assert engine.sweep() == []
    clock.advance(0.1)
    assert engine.sweep() == [(client_id, "transport_closed")]
    [(_, _, reason, last_alive, detected)] = recorder.of("closed")
    assert (reason, last_alive, detected) == ("transport_closed", closed_at, clock.now)


async def test_a_client_back_within_grace_keeps_its_session(clock: FakeClock) -> None:
    engine = make_engine(clock, grace=15.0)
    client_id = await handshake(engine)
    engine.transport_closed(client_id)
    clock.advance(10)
    await connect(engine, client_id)
    clock.advance(10)
    assert engine.sweep() == []
    assert client_id in engine.clients


async def test_shutdown_ends_every_session(recorder: Recorder, clock: FakeClock) -> None:
    engine = make_engine(clock, recorder)
    ids = {await handshake(engine), await handshake(engine)}
    engine.shutdown()
    assert {(c[1], c[2]) for c in recorder.of("closed")} == {(i, "server_shutdown") for i in ids}
    assert not engine.clients


# ---- batches and extensions -----------------------------------------------------------


async def test_a_batch_answers_in_order_with_the_connect_last(engine: Engine) -> None:
    client_id = await handshake(engine)
    await subscribe(engine, client_id, "/b")
    replies = await send(
        engine,
        {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
            "advice": {"timeout": 0},
            "id": "1",
        },
        {"channel": "/b", "data": "x", "clientId": client_id, "id": "2"},
    )
    assert [r.get("id") for r in replies] == ["2", "1", "2"]
    assert replies[0]["successful"] and "data" not in replies[0]
    assert replies[2] == {"channel": "/b", "data": "x", "id": "2"}
    assert "successful" not in replies[2]


class RequireToken:
    """An extension refusing subscriptions to /private/** without ext.token."""

    def __init__(self) -> None:
        self.outgoing_seen: list[tuple[dict, Context]] = []

    async def incoming(self, message: dict, context: Context) -> None:
        private = str(message.get("subscription")).startswith("/private")
        token = (message.get("ext") or {}).get("token")
        if message.get("channel") == "/meta/subscribe" and private and token != "letmein":
            message["error"] = "403::Authentication required"

    async def outgoing(self, message: dict, context: Context) -> None:
        self.outgoing_seen.append((dict(message), context))
        if message.get("channel") == "/private/room" and "data" in message:
            message["data"] = {"redacted": True}


async def test_extensions_can_reject_and_see_outgoing_messages(engine: Engine) -> None:
    extension = RequireToken()
    engine.add_extension(extension)
    client_id = await handshake(engine)
    refused = await subscribe(engine, client_id, "/private/room")
    assert refused["error"] == "403::Authentication required"
    assert not engine.clients[client_id].subscriptions
    [ok] = await send(
        engine,
        {
            "channel": "/meta/subscribe",
            "clientId": client_id,
            "subscription": "/private/room",
            "ext": {"token": "letmein"},
        },
        context=Context(has_secret=True),
    )
    assert ok["successful"] is True
    reply_context = extension.outgoing_seen[-1][1]
    assert reply_context.has_secret is True
    assert reply_context.message is not None and reply_context.message["ext"]["token"] == "letmein"
    await engine.publish("/private/room", {"secret": 1})
    out = await connect(engine, client_id)
    assert out[1] == {"channel": "/private/room", "data": {"redacted": True}}


def test_encode_reuses_the_cached_delivery_text() -> None:
    delivery = Delivery({"channel": "/a", "data": "é"})
    text = delivery.text()
    assert delivery.text() is text
    assert encode([{"successful": True}, delivery]) == '[{"successful":true},' + text + "]"


async def test_errors_are_counted(engine: Engine) -> None:
    await send(engine, {"channel": "/meta/connect", "clientId": "x", "connectionType": "websocket"})
    await send(engine, {"channel": "/meta/bogus", "data": 1, "clientId": "x"})
    assert engine.stats["errors_401"] == 1
    assert engine.stats["errors_403"] == 1


async def test_in_process_listeners_get_matching_publishes_until_stopped(engine: Engine) -> None:
    heard: list[tuple[str, Any]] = []
    stop = engine.listen("/trail/**", lambda channel, data: heard.append((channel, data)))
    exact: list[Any] = []
    engine.listen("/trail/events", lambda channel, data: exact.append(data))
    assert await engine.publish("/trail/presence", {"type": "join"}) == 0  # no Bayeux client
    await engine.publish("/trail/events", {"name": "$view"})
    await engine.publish("/chat/room", {"text": "not for /trail/**"})
    assert heard == [("/trail/presence", {"type": "join"}), ("/trail/events", {"name": "$view"})]
    assert exact == [{"name": "$view"}]
    stop()
    await engine.publish("/trail/presence", {"type": "leave"})
    assert len(heard) == 2 and "/trail/**" not in engine.listeners
    with pytest.raises(ValueError):
        engine.listen("not a channel", lambda channel, data: None)


async def test_a_failing_listener_does_not_stop_delivery(engine: Engine) -> None:
    def broken(channel: str, data: Any) -> None:
        raise RuntimeError("boom")

    heard: list[Any] = []
    engine.listen("/trail/events", broken)
    engine.listen("/trail/events", lambda channel, data: heard.append(data))
    await engine.publish("/trail/events", {"n": 1})
    assert heard == [{"n": 1}]


# ---- per-address limits and sessions that never connect ------------------------------------------


async def handshake_from(engine: Engine, address: str | None) -> dict:
    message = {"channel": "/meta/handshake", "version": "1.0", "id": "h",
               "supportedConnectionTypes": ["long-polling"]}  # fmt: skip
    [reply] = await send(engine, message, context=Context(address=address))
    return reply


async def test_handshakes_per_address_are_a_token_bucket(clock: FakeClock) -> None:
    engine = make_engine(clock, handshakes_per_minute=60, handshake_burst=3)
    for _ in range(3):
        assert (await handshake_from(engine, "203.0.113.7"))["successful"] is True
    refused = await handshake_from(engine, "203.0.113.7")
    assert refused["successful"] is False and "clientId" not in refused
    assert refused["error"] == "429::Too many handshakes from this address (limit 60 a minute)"
    assert refused["advice"] == {"reconnect": "retry", "interval": 1000}
    assert (await handshake_from(engine, "203.0.113.8"))["successful"] is True  # another address
    assert (await handshake_from(engine, None))["successful"] is True  # in-process: not limited
    clock.advance(1.0)  # one more handshake's worth
    assert (await handshake_from(engine, "203.0.113.7"))["successful"] is True
    assert (await handshake_from(engine, "203.0.113.7"))["successful"] is False
    assert engine.stats["refused_handshake_rate"] == 2
    assert len(engine.clients) == 6


async def test_an_ipv6_client_is_limited_by_its_slash_64(clock: FakeClock) -> None:
    engine = make_engine(clock, handshakes_per_minute=60, handshake_burst=2)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"):
        assert (await handshake_from(engine, host))["successful"] is True
    assert (await handshake_from(engine, "2001:db8:1:2::77"))["successful"] is False
    assert (await handshake_from(engine, "2001:db8:1:3::1"))["successful"] is True


async def test_live_sessions_per_address_are_capped(clock: FakeClock) -> None:
    engine = make_engine(clock, max_sessions_per_address=2)
    first = (await handshake_from(engine, "198.51.100.4"))["clientId"]
    assert (await handshake_from(engine, "198.51.100.4"))["successful"] is True
    refused = await handshake_from(engine, "198.51.100.4")
    assert refused["error"] == "429::Too many sessions from this address (limit 2)"
    assert refused["advice"] == {"reconnect": "retry", "interval": 10000}
    await send(engine, {"channel": "/meta/disconnect", "clientId": first})
    assert (await handshake_from(engine, "198.51.100.4"))["successful"] is True
    assert engine.stats["refused_sessions_per_address"] == 1


async def test_a_session_that_never_connects_ends_soon(
    clock: FakeClock, recorder: Recorder
) -> None:
    engine = make_engine(clock, recorder, first_connect_timeout=5.0, max_sessions_per_address=2)
    silent = (await handshake_from(engine, "192.0.2.1"))["clientId"]
    active = (await handshake_from(engine, "192.0.2.1"))["clientId"]
    await connect(engine, active, advice={"timeout": 0})
    assert [c[1] for c in recorder.of("connected")] == [active]
    clock.advance(4.9)
    assert engine.sweep() == []
    clock.advance(0.1)
    assert engine.sweep() == [(silent, "never_connected")]
    assert [(c[1], c[2]) for c in recorder.of("closed")] == [(silent, "never_connected")]
    assert active in engine.clients
    # its place under the per-address cap is free again
    assert (await handshake_from(engine, "192.0.2.1"))["successful"] is True
