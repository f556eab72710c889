"""The cluster's Bayeux engine: two engines (two nodes) in one process on a real redis-server,
with a fake clock for the session deadlines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis_support import RedisServer, redis_server  # noqa: F401 (fixture)

from trailcli.collector.bayeux.cluster import PREFIX, ClusterEngine
from trailcli.collector.bayeux.engine import (
    CONNECTION_TYPES,
    Context,
    EngineConfig,
    EngineObserver,
)
from trailcli.collector.metrics import Metrics
from trailcli.collector.redis_link import RedisLink

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder(EngineObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def client_opened(self, client_id: str, ext: dict[str, Any], now: datetime) -> None:
        self.calls.append(("opened", client_id))

    def client_connected(self, client_id: str, now: datetime) -> None:
        self.calls.append(("connected", client_id))

    def client_subscribed(self, client_id: str, channel: str, now: datetime) -> None:
        self.calls.append(("subscribed", client_id, channel))

    def client_closed(
        self, client_id: str, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        self.calls.append(("closed", client_id, reason, last_alive))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


class Node:
    """One node's engine, its link to Redis and what its observer heard."""

    def __init__(self, engine: ClusterEngine, link: RedisLink, task: asyncio.Task[None]) -> None:
        self.engine = engine
        self.link = link
        self.task = task
        self.heard = Recorder()
        engine.add_observer(self.heard)

    async def send(self, **message: Any) -> dict[str, Any]:
        batch = await self.engine.handle([message], Context(address="10.0.0.1"))
        assert batch.connect is None, "use connect()"
        reply: dict[str, Any] = batch.replies[0]
        return reply

    async def handshake(self) -> str:
        reply = await self.send(
            channel="/meta/handshake", version="1.0", supportedConnectionTypes=CONNECTION_TYPES
        )
        assert reply["successful"], reply
        client_id: str = reply["clientId"]
        return client_id

    async def subscribe(self, client_id: str, channel: str) -> dict[str, Any]:
        return await self.send(channel="/meta/subscribe", clientId=client_id, subscription=channel)

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return await self.send(channel=channel, data=data, ext={"auth": "s"})

    async def connect(self, client_id: str, hold: float = 0.5) -> list[Any]:
        """A long-poll connect held up to `hold` seconds: [reply, *messages' data]."""
        message = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
            "advice": {"timeout": int(hold * 1000)},
        }
        batch = await self.engine.handle([message], Context())
        if batch.connect is None:
            return batch.replies
        items = await self.engine.hold(batch.connect)
        return [items[0], *[i.message["data"] for i in items[1:]]]


@pytest.fixture
async def nodes(
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Node] = []
    clock = FakeClock()

    async def make(count: int = 2, **config: Any) -> list[Node]:
        settings = {"timeout": 2.0, "grace": 1.0, "secret": "s", **config}
        for i in range(count):
            link = RedisLink(redis_server.url, Metrics())
            await link.open()
            engine = ClusterEngine(EngineConfig(**settings), node_id=f"n{i}", clock=clock)
            engine.attach(link)
            task = asyncio.create_task(engine.hear_events())
            made.append(Node(engine, link, task))
        await asyncio.sleep(0.05)  # every node hears events
        return made[-count:]

    make.clock = clock  # type: ignore[attr-defined]
    make.redis = redis_server  # type: ignore[attr-defined]
    yield make
    for node in made:
        node.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await node.task
        await node.engine.close()
        await node.link.close()


async def test_each_session_opens_connects_and_closes_once_across_nodes(nodes: Any) -> None:
    a, b = await nodes(2)
    client_id = await a.handshake()
    assert (await b.subscribe(client_id, "/x"))["successful"]
    assert (await b.connect(client_id, hold=0))[0]["successful"]
    assert (await a.connect(client_id, hold=0))[0]["successful"]
    assert (await a.subscribe(client_id, "/x"))["successful"]  # already subscribed
    reply = await b.send(channel="/meta/disconnect", clientId=client_id)
    assert reply["successful"]
    await asyncio.sleep(0.1)
    assert a.heard.of("opened") == [("opened", client_id)] and not b.heard.of("opened")
    assert b.heard.of("connected") == [("connected", client_id)] and not a.heard.of("connected")
    assert b.heard.of("subscribed") == [("subscribed", client_id, "/x")]
    assert not a.heard.of("subscribed")
    assert [c[:3] for c in b.heard.of("closed")] == [("closed", client_id, "disconnect")]
    assert not a.heard.of("closed")
    assert client_id not in a.engine.clients  # the end's event dropped A's copy
    # a request after the end gets Faye's 401 on any node
    reply = (await a.connect(client_id, hold=0))[0]
    assert reply["error"] == f"401:{client_id}:Unknown client"
    assert reply["advice"]["reconnect"] == "handshake"


@pytest.mark.parametrize(
    ("connect", "transport_closed", "wait", "reason"),
    [
        (False, False, 20.5, "never_connected"),
        (True, False, 4.5, "timeout"),
        (True, True, 1.5, "transport_closed"),
    ],
)
async def test_an_expired_session_ends_once_when_every_node_reaps_at_once(
    nodes: Any, connect: bool, transport_closed: bool, wait: float, reason: str
) -> None:
    a, b, c = await nodes(3)
    clock = nodes.clock
    client_id = await a.handshake()
    if connect:
        await b.connect(client_id, hold=0)
    if transport_closed:
        b.engine.transport_closed(client_id)
        await asyncio.sleep(0.1)
    clock.advance(wait - 1.0)
    await asyncio.gather(a.engine.upkeep(), b.engine.upkeep(), c.engine.upkeep())
    assert not any(n.heard.of("closed") for n in (a, b, c))  # not yet
    clock.advance(1.0)
    await asyncio.gather(a.engine.upkeep(), b.engine.upkeep(), c.engine.upkeep())
    closed = [call for n in (a, b, c) for call in n.heard.of("closed")]
    assert [call[:3] for call in closed] == [("closed", client_id, reason)]


async def test_a_client_coming_back_within_grace_on_another_node_keeps_its_session(
    nodes: Any,
) -> None:
    a, b = await nodes(2)
    client_id = await a.handshake()
    await a.connect(client_id, hold=0)
    a.engine.transport_closed(client_id)
    await asyncio.sleep(0.1)
    nodes.clock.advance(0.5)
    await b.connect(client_id, hold=0)
    nodes.clock.advance(1.0)
    await asyncio.gather(a.engine.upkeep(), b.engine.upkeep())
    assert not a.heard.of("closed") and not b.heard.of("closed")


async def test_messages_wait_in_redis_for_the_next_connect_on_any_node(nodes: Any) -> None:
    a, b = await nodes(2, max_queued_messages=3)
    client_id = await a.handshake()
    await a.subscribe(client_id, "/q/*")
    for n in range(5):
        assert (await b.publish("/q/x", n))["successful"]
    assert (await b.connect(client_id, hold=5))[1:] == [2, 3, 4]  # the oldest two dropped
    assert b.engine.stats["dropped_queue_full"] == 2


async def test_a_held_connect_on_another_node_is_answered_and_takes_nothing(nodes: Any) -> None:
    a, b = await nodes(2)
    client_id = await a.handshake()
    await a.subscribe(client_id, "/s")
    old = asyncio.create_task(a.connect(client_id, hold=5))
    await asyncio.sleep(0.2)
    new = asyncio.create_task(b.connect(client_id, hold=5))
    done, _ = await asyncio.wait([old], timeout=2)
    assert done and old.result()[1:] == []  # answered at once, empty
    await b.publish("/s", "hello")
    assert (await asyncio.wait_for(new, 2))[1:] == ["hello"]


async def test_limits_hold_across_the_cluster(nodes: Any) -> None:
    a, b = await nodes(2, max_clients=2, max_subscriptions=2, max_message_bytes=200)
    first = await a.handshake()
    await b.handshake()
    reply = await a.send(
        channel="/meta/handshake", version="1.0", supportedConnectionTypes=["long-polling"]
    )
    assert reply["successful"] is False
    assert reply["error"] == "503::Too many clients in the cluster (limit 2)"
    assert (await a.subscribe(first, "/1"))["successful"]
    assert (await b.subscribe(first, "/2"))["successful"]
    reply = await a.subscribe(first, "/3")
    assert reply["error"] == "403:/3:Too many subscriptions for one client (limit 2)"
    reply = await b.send(channel="/1", clientId=first, data="x" * 300)
    assert reply["error"].startswith("407:/1:Failed to publish")


async def test_sessions_per_address_are_counted_across_the_cluster(nodes: Any) -> None:
    a, b = await nodes(2, max_sessions_per_address=2)
    one = await a.handshake()
    await b.handshake()
    reply = await a.send(
        channel="/meta/handshake", version="1.0", supportedConnectionTypes=["long-polling"]
    )
    assert reply["error"] == "429::Too many sessions from this address (limit 2)"
    await b.send(channel="/meta/disconnect", clientId=one)
    await a.handshake()  # the ended session's place is free again


async def test_in_process_listeners_hear_publishes_of_every_node(nodes: Any) -> None:
    a, b = await nodes(2)
    heard: list[tuple[str, Any]] = []
    a.engine.listen("/trail/**", lambda channel, data: heard.append((channel, data)))
    await b.engine.publish("/trail/presence", {"n": 1})
    for _ in range(50):
        if heard:
            break
        await asyncio.sleep(0.02)
    assert heard == [("/trail/presence", {"n": 1})]


async def test_redis_lost_answers_retry_and_a_lost_session_ends_once(nodes: Any) -> None:
    a, b = await nodes(2)
    client_id = await a.handshake()
    await b.connect(client_id, hold=0)
    nodes.redis.stop()
    reply = await a.send(
        channel="/meta/handshake", version="1.0", supportedConnectionTypes=["long-polling"]
    )
    assert reply["successful"] is False
    assert reply["advice"] == {"reconnect": "retry", "interval": 1000}
    assert a.link.up is False
    nodes.redis.start()  # empty
    for _ in range(100):
        if a.link.up and b.link.up:
            break
        await asyncio.sleep(0.05)
    replies = await asyncio.gather(a.connect(client_id, hold=0), b.connect(client_id, hold=0))
    for reply in replies:
        assert reply[0]["error"] == f"401:{client_id}:Unknown client"
        assert reply[0]["advice"]["reconnect"] == "handshake"
    closed = a.heard.of("closed") + b.heard.of("closed")
    assert [c[:3] for c in closed] == [("closed", client_id, "timeout")]


async def test_keys_of_abandoned_sessions_expire_and_churn_leaves_redis_flat(nodes: Any) -> None:
    import redis.asyncio as aioredis

    a, b = await nodes(
        2, max_sessions_per_address=100_000, handshake_burst=100_000, handshakes_per_minute=1e9
    )
    for node in (a, b):
        node.engine.gone_seconds = 1
    r = aioredis.Redis.from_url(nodes.redis.url)
    client_id = await a.handshake()
    await a.subscribe(client_id, "/ttl")
    await b.publish("/ttl", 1)
    for kind in ("c", "s", "q"):
        ttl = await r.pttl(f"{PREFIX}{kind}:{client_id}")
        assert 0 < ttl <= a.engine.ttl_ms
    await a.send(channel="/meta/disconnect", clientId=client_id)

    async def churn(count: int) -> None:
        ids = [await (a if i % 2 else b).handshake() for i in range(count)]
        for i, cid in enumerate(ids):
            node = b if i % 2 else a
            await node.subscribe(cid, f"/room/{i % 7}")
            await node.connect(cid, hold=0)
        for i in range(7):
            await a.publish(f"/room/{i}", "x" * 100)
        for i, cid in enumerate(ids):
            if i % 2:
                await a.send(channel="/meta/disconnect", clientId=cid)
        nodes.clock.advance(10)  # the rest time out
        await asyncio.gather(a.engine.upkeep(), b.engine.upkeep())

    left, memory = [], []
    for _ in range(4):
        await churn(200)
        # only the ended sessions' short-lived `gone:` marks are left (expiring in a second)
        keys = [k.decode() async for k in r.scan_iter(count=1000)]
        left.append([k for k in keys if not k.startswith(PREFIX + "gone:")])
        assert all(0 < ttl <= 1000 for ttl in [await r.pttl(k) for k in keys])
        await asyncio.sleep(1.5)
        memory.append((await r.info("memory"))["used_memory"])
    await r.aclose()
    assert left == [[], [], [], []]
    assert max(memory[1:]) <= memory[0] * 1.1


async def test_a_stopping_node_leaves_its_sessions_the_grace_to_move(nodes: Any) -> None:
    a, b = await nodes(2)
    moving, staying = await a.handshake(), await a.handshake()
    await a.subscribe(moving, "/m")
    held = [asyncio.create_task(a.connect(cid, hold=5)) for cid in (moving, staying)]
    await asyncio.sleep(0.2)
    await a.engine.stop()
    assert all(r[0]["successful"] for r in await asyncio.wait_for(asyncio.gather(*held), 2))
    assert not a.heard.of("closed")  # a node stopping ends none of its sessions
    nodes.clock.advance(0.5)
    await b.publish("/m", "still here")
    assert (await b.connect(moving, hold=1))[1:] == ["still here"]
    nodes.clock.advance(0.6)
    await b.engine.upkeep()
    assert [c[:3] for c in b.heard.of("closed")] == [("closed", staying, "transport_closed")]


async def test_a_node_stops_at_once_when_redis_is_gone(nodes: Any) -> None:
    (a,) = await nodes(1)
    client_id = await a.handshake()
    task = asyncio.create_task(a.connect(client_id, hold=5))
    await asyncio.sleep(0.2)
    nodes.redis.stop()
    a.link.failed(ConnectionError("gone"))
    await asyncio.wait_for(a.engine.stop(), 3)
    await asyncio.wait_for(task, 2)


async def test_sessions_redis_lost_end_once_even_if_their_clients_never_return(
    nodes: Any,
) -> None:
    a, b = await nodes(2)
    client_id = await a.handshake()
    await b.connect(client_id, hold=0)  # both nodes have served it
    await a.link.client.flushdb()  # as a restart without persistence leaves it
    await asyncio.gather(a.engine.upkeep(), b.engine.upkeep())
    closed = a.heard.of("closed") + b.heard.of("closed")
    assert [c[:3] for c in closed] == [("closed", client_id, "timeout")]
    assert client_id not in a.engine.clients and client_id not in b.engine.clients


class FakeStream:
    """An EventSource stream bound on one node (as transports.EventStream is)."""

    takes_for_any_connect = True

    def __init__(self) -> None:
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.woken.set()

    def close(self) -> None:
        return None


async def test_an_eventsource_stream_gets_messages_while_its_connects_go_elsewhere(
    nodes: Any,
) -> None:
    a, b = await nodes(2)
    client_id = await b.handshake()
    await b.subscribe(client_id, "/es")
    stream = FakeStream()
    await a.engine.load(client_id)  # as the stream's request does
    client = a.engine.bind_socket(client_id, stream)
    assert client is not None
    batch = await b.engine.handle(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "eventsource"}],
        Context(),
    )  # the heartbeat connect lands on the other node
    assert batch.connect is not None
    await b.engine.hold(batch.connect)
    stream.woken.clear()
    await b.publish("/es", "pushed")
    await asyncio.wait_for(stream.woken.wait(), 2)
    await a.engine.fill(client)
    assert [d.message["data"] for d in a.engine.take(client)] == ["pushed"]
