"""Several `trail collect` nodes as one cluster through a real redis-server: joining, presence
seen from any node, a killed node's sessions ended once by a survivor."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_support import BROWSER_UA, Daemon, stored
from redis_support import RedisServer, redis_server  # noqa: F401 (fixture)

TOKEN = "cluster-api-token"
ENV = {"TRAIL_API_TOKEN": TOKEN, "TRAIL_FLUSH_INTERVAL": "0.2"}


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"User-Agent": BROWSER_UA, "Content-Type": "application/json",
                   "Authorization": f"Bearer {TOKEN}"}  # fmt: skip
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def open_session(port: int, visitor: str) -> str:
    """A Bayeux session on the node at `port` bound to `visitor`: handshake and first connect."""
    hello = {"channel": "/meta/handshake", "version": "1.0", "id": "1",
             "supportedConnectionTypes": ["long-polling"],
             "ext": {"trail": {"visitor_token": visitor, "visit_token": f"visit-{visitor}"}}}  # fmt: skip
    status, (reply,) = call(port, "POST", "/faye", [hello])
    assert status == 200 and reply["successful"], reply
    client_id: str = reply["clientId"]
    connect = {"channel": "/meta/connect", "clientId": client_id,
               "connectionType": "long-polling", "advice": {"timeout": 0}}  # fmt: skip
    status, (connected, *_) = call(port, "POST", "/faye", [connect])
    assert connected["successful"], connected
    return client_id


def node(data_dir: Path, redis: RedisServer, node_id: str, *extra: str) -> Daemon:
    return Daemon(data_dir, "--redis", redis.url, "--node-id", node_id,
                  "--heartbeat-interval", "0.5s", *extra, env=ENV)  # fmt: skip


def until(check: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def nodes() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.stop(signal.SIGKILL)


def presence(data_dir: Path) -> list[dict[str, Any]]:
    try:
        return stored(data_dir, "presence")
    except Exception:
        return []


def test_a_node_id_live_in_the_cluster_is_refused(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    nodes.append(node(tmp_path / "a", redis_server, "same"))
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect",
           "--port", "0", "--host", "127.0.0.1", "--data-dir", str(tmp_path / "b"),
           "--node-id", "same", "--redis", redis_server.url]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Node id 'same' is already live in the cluster" in result.stderr
    assert not (tmp_path / "b" / "_wal").exists() or not any((tmp_path / "b").rglob("*.wal"))
    assert nodes[0].stop() == 0
    # stopped cleanly, the id is free again at once
    nodes.append(node(tmp_path / "a", redis_server, "same"))


def test_online_on_any_node_lists_the_cluster_and_a_person_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    a = node(tmp_path, redis_server, "a")
    nodes.append(a)
    b = node(tmp_path, redis_server, "b")
    nodes.append(b)
    open_session(a.port, "two-tabs")
    open_session(b.port, "two-tabs")
    open_session(b.port, "only-b")

    def listing(port: int) -> dict[str, int] | None:
        status, rows = call(port, "GET", "/api/online")
        assert status == 200
        seen = {r["visitor_token"]: r["clients"] for r in rows}
        return seen if seen == {"two-tabs": 2, "only-b": 1} else None

    until(lambda: listing(a.port), "node a to list the cluster")
    until(lambda: listing(b.port), "node b to list the cluster")


def test_a_killed_nodes_sessions_end_once_at_its_last_heartbeat(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    a = node(tmp_path, redis_server, "a")
    nodes.append(a)
    b = node(tmp_path, redis_server, "b")
    nodes.append(b)
    c = node(tmp_path, redis_server, "c")
    nodes.append(c)
    on_a = {open_session(a.port, "p1"), open_session(a.port, "p2")}
    on_b = open_session(b.port, "p3")
    time.sleep(1.5)  # a few heartbeats of node a reach the log
    a.stop(signal.SIGKILL)

    def lost() -> list[dict[str, Any]]:
        rows = [r for r in presence(tmp_path) if r["reason"] == "node_lost"]
        return rows if len(rows) >= len(on_a) else []

    ended = until(lost, "a survivor to end node a's sessions")
    assert {r["client_id"] for r in ended} == on_a
    assert {r["node_id"] for r in ended} == {"a"}

    # node a comes back: it finds its sessions ended by another node and writes no second row
    again = node(tmp_path, redis_server, "a")
    nodes.append(again)
    _, rows = call(b.port, "GET", "/api/online")
    assert {r["visitor_token"] for r in rows} <= {"p3"}
    for daemon in (again, b, c):
        assert daemon.stop() == 0
    rows = presence(tmp_path)  # node a's WAL, recovered by its restart, included
    restarted = min(
        r["time"] for r in rows if r["node_id"] == "a" and r["seq"] > max(x["seq"] for x in ended)
    )
    beats = sorted(
        r["time"]
        for r in rows
        if r["node_id"] == "a" and r["transition"] == "heartbeat" and r["time"] < restarted
    )
    # the last heartbeat the cluster saw durable: the log's last, or (killed between the two
    # writes) the one before it
    assert {r["time"] for r in ended} <= set(beats[-2:])
    assert len({r["time"] for r in ended}) == 1
    offline = [r for r in rows if r["transition"] == "offline"]
    for client_id in on_a:
        assert [r["reason"] for r in offline if r["client_id"] == client_id] == ["node_lost"]
    assert [r["reason"] for r in offline if r["client_id"] == on_b] == ["server_shutdown"]


def test_workers_share_one_port_and_stop_with_the_parent(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    parent = Daemon(tmp_path, "--redis", redis_server.url, "--workers", "2", env=ENV)
    nodes.append(parent)
    until(lambda: sum("listening on" in line for line in parent.lines) == 2, "both workers")
    seen: set[str] = set()
    for _ in range(200):  # fresh connections: the kernel spreads them over both workers
        status, body = call(parent.port, "GET", "/health")
        assert status == 200
        seen.add(body["node_id"])
        if len(seen) == 2:
            break
    assert seen == {"daemon-test-1", "daemon-test-2"}, "".join(parent.lines)
    # each worker is a node of the cluster: a second start with the same id is refused
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect",
           "--port", "0", "--data-dir", str(tmp_path), "--node-id", "daemon-test",
           "--workers", "2", "--redis", redis_server.url]  # fmt: skip
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "'daemon-test-1' is already live" in refused.stderr
    assert parent.stop() == 0
    # the parent returned once both workers had stopped cleanly and left the cluster
    import redis

    assert redis.Redis.from_url(redis_server.url).hkeys("trail:nodes") == []


def test_redis_lost_mid_run_loses_and_doubles_nothing(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    a = node(tmp_path, redis_server, "a")
    nodes.append(a)
    b = node(tmp_path, redis_server, "b")
    nodes.append(b)
    sessions = {open_session(a.port, "p1"), open_session(b.port, "p2")}

    def lists(port: int, people: set[str]) -> bool:
        status, rows = call(port, "GET", "/api/online")
        return status == 200 and {r["visitor_token"] for r in rows} == people

    until(lambda: lists(b.port, {"p1", "p2"}), "the cluster's listing")
    redis_server.stop()
    until(lambda: call(a.port, "GET", "/health")[0] == 503, "node a to report Redis lost")
    _, body = call(a.port, "GET", "/health")
    assert body["status"] == "degraded" and "redis" in body["reasons"][0]
    # the tracking API does not need Redis
    event = {"visit_token": "v-x", "visitor_token": "u-x",
             "events": [{"name": "during", "id": "ev-during-outage", "time": time.time()}]}  # fmt: skip
    assert call(a.port, "POST", "/ahoy/events", event)[0] == 200
    time.sleep(2.0)  # longer than the live keys' TTL: no node may be taken for dead
    redis_server.start()  # empty, as a restarted Redis without persistence is
    for daemon in (a, b):
        until(lambda d=daemon: call(d.port, "GET", "/health")[0] == 200, "health back")
    sessions.add(open_session(a.port, "p3"))
    until(lambda: lists(b.port, {"p1", "p2", "p3"}), "the cluster's state rewritten")
    for daemon in (a, b):
        assert daemon.stop() == 0
    rows = presence(tmp_path)
    for client_id in sessions:
        mine = [r["transition"] for r in rows if r["client_id"] == client_id]
        assert sorted(mine) == ["offline", "online"], (client_id, mine)
    assert not [r for r in rows if r["reason"] == "node_lost"]
    assert [r["event_id"] for r in stored(tmp_path, "events")] == ["ev-during-outage"]
    assert any("lost Redis" in line for line in a.lines)
    assert sum("lost Redis" in line for line in a.lines) == 1  # logged once, not per request


def watcher(port: int) -> str:
    hello = {"channel": "/meta/handshake", "version": "1.0", "id": "1",
             "supportedConnectionTypes": ["long-polling"], "ext": {"trail": {"token": TOKEN}}}  # fmt: skip
    _, (reply,) = call(port, "POST", "/faye", [hello])
    client_id: str = reply["clientId"]
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id,
                 "subscription": "/trail/presence"}  # fmt: skip
    connect = {"channel": "/meta/connect", "clientId": client_id,
               "connectionType": "long-polling", "advice": {"timeout": 0}}  # fmt: skip
    _, replies = call(port, "POST", "/faye", [connect, subscribe])
    assert all(r["successful"] for r in replies), replies
    return client_id


def heard(port: int, client_id: str) -> list[dict[str, Any]]:
    connect = {"channel": "/meta/connect", "clientId": client_id,
               "connectionType": "long-polling", "advice": {"timeout": 300}}  # fmt: skip
    _, replies = call(port, "POST", "/faye", [connect])
    return [r["data"] for r in replies if r.get("channel") == "/trail/presence"]


def test_a_person_on_two_nodes_joins_and_leaves_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    a = node(tmp_path, redis_server, "a", "--transport-grace", "1s")
    nodes.append(a)
    b = node(tmp_path, redis_server, "b", "--transport-grace", "1s")
    nodes.append(b)
    watchers = [(a.port, watcher(a.port)), (b.port, watcher(b.port))]
    tabs = [(a.port, open_session(a.port, "both")), (b.port, open_session(b.port, "both"))]
    heard_by: dict[str, list[str]] = {client_id: [] for _, client_id in watchers}

    def listen() -> dict[str, list[str]]:
        for port, client_id in watchers:
            got = heard(port, client_id)
            heard_by[client_id] += [m["type"] for m in got if m["visitor_token"] == "both"]
        return heard_by

    until(lambda: all("join" in h for h in listen().values()), "the join")
    for port, client_id in tabs:
        bye = {"channel": "/meta/disconnect", "clientId": client_id}
        assert call(port, "POST", "/faye", [bye])[0] == 200
    until(lambda: all("leave" in h for h in listen().values()), "the leave")
    for _ in range(3):  # a few more rounds: nothing else comes
        listen()
    # a watcher on either node hears the person's one join and one leave, from whichever node
    assert list(heard_by.values()) == [["join", "leave"], ["join", "leave"]]


def test_a_session_whose_requests_go_to_three_nodes_has_its_rows_written_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    a, b, c = (node(tmp_path, redis_server, n) for n in ("a", "b", "c"))
    nodes.extend((a, b, c))
    # a watcher that showed the token at its handshake on a may subscribe on b
    hello = {"channel": "/meta/handshake", "version": "1.0", "id": "1",
             "supportedConnectionTypes": ["long-polling"], "ext": {"trail": {"token": TOKEN}}}  # fmt: skip
    _, (reply,) = call(a.port, "POST", "/faye", [hello])
    watching = reply["clientId"]
    subscribe = {"channel": "/meta/subscribe", "clientId": watching,
                 "subscription": "/trail/presence"}  # fmt: skip
    connect = {"channel": "/meta/connect", "clientId": watching,
               "connectionType": "long-polling", "advice": {"timeout": 0}}  # fmt: skip
    _, replies = call(b.port, "POST", "/faye", [connect, subscribe])
    assert all(r["successful"] for r in replies), replies

    hello = {"channel": "/meta/handshake", "version": "1.0", "id": "1",
             "supportedConnectionTypes": ["long-polling"],
             "ext": {"trail": {"visitor_token": "roamer", "visit_token": "visit-roamer"}}}  # fmt: skip
    _, (reply,) = call(a.port, "POST", "/faye", [hello])
    roamer = reply["clientId"]
    first = {"channel": "/meta/connect", "clientId": roamer,
             "connectionType": "long-polling", "advice": {"timeout": 0}}  # fmt: skip
    assert call(b.port, "POST", "/faye", [first])[1][0]["successful"]
    chat = {"channel": "/meta/subscribe", "clientId": roamer, "subscription": "/chat/1"}
    assert call(c.port, "POST", "/faye", [chat])[1][0]["successful"]

    def listed(port: int) -> bool:
        _, rows = call(port, "GET", "/api/online")
        return [(r["visitor_token"], r["clients"]) for r in rows] == [("roamer", 1)]

    for daemon in (a, b, c):
        until(lambda d=daemon: listed(d.port), "every node to list the roamer once")
    heard_join = until(
        lambda: [m for m in heard(c.port, watching) if m["visitor_token"] == "roamer"],
        "the watcher to hear the join",
    )
    assert [m["type"] for m in heard_join] == ["join"]
    bye = {"channel": "/meta/disconnect", "clientId": roamer}
    assert call(c.port, "POST", "/faye", [bye])[0] == 200
    until(lambda: not listed(b.port), "the roamer to be gone")  # gone after the grace
    for daemon in (a, b, c):
        assert daemon.stop() == 0
    rows = [r for r in presence(tmp_path) if r["client_id"] == roamer]
    assert [(r["node_id"], r["transition"]) for r in sorted(rows, key=lambda r: r["seq"])] == [
        ("a", "online"),
        ("a", "subscribe"),
        ("a", "offline"),
    ]
    assert max(rows, key=lambda r: r["seq"])["reason"] == "disconnect"


def test_a_session_outlives_its_node_stopping_cleanly_and_is_taken_over(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    a = node(tmp_path, redis_server, "a")
    nodes.append(a)
    b = node(tmp_path, redis_server, "b")
    nodes.append(b)
    mover = open_session(a.port, "mover")
    chat = {"channel": "/meta/subscribe", "clientId": mover, "subscription": "/chat/1"}
    assert call(a.port, "POST", "/faye", [chat])[1][0]["successful"]
    assert a.stop() == 0  # a rolling restart: the client goes on with node b
    connect = {"channel": "/meta/connect", "clientId": mover,
               "connectionType": "long-polling", "advice": {"timeout": 0}}  # fmt: skip
    assert call(b.port, "POST", "/faye", [connect])[1][0]["successful"]

    def listed() -> bool:
        _, rows = call(b.port, "GET", "/api/online")
        return [(r["visitor_token"], r["channels"]) for r in rows] == [("mover", ["/chat/1"])]

    until(listed, "node b to take the session over")
    assert b.stop() == 0
    rows = sorted(
        (r for r in presence(tmp_path) if r["client_id"] == mover), key=lambda r: r["seq"]
    )
    steps = [(r["node_id"], r["transition"], r["reason"] or r["channel"]) for r in rows]
    assert sorted(steps) == sorted([
        ("a", "online", "handshake"), ("a", "subscribe", "/chat/1"),
        ("a", "offline", "server_shutdown"),
        ("b", "online", "handover"), ("b", "subscribe", "/chat/1"),
        ("b", "offline", "server_shutdown"),
    ])  # fmt: skip


def test_the_parent_restarts_a_worker_that_died(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    import os

    parent = Daemon(tmp_path, "--redis", redis_server.url, "--workers", "2",
                    "--heartbeat-interval", "0.5s", env=ENV)  # fmt: skip
    nodes.append(parent)
    until(lambda: sum("listening on" in line for line in parent.lines) == 2, "both workers")
    children = Path(f"/proc/{parent.proc.pid}/task/{parent.proc.pid}/children").read_text()
    workers = [  # (the spawn start method also starts a resource tracker)
        int(pid)
        for pid in children.split()
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    # it comes back (under its id, once the cluster forgot the dead one) and serves again
    try:
        until(lambda: sum("listening on" in line for line in parent.lines) == 3, "the restart", 30)
    except AssertionError:
        print("".join(x for x in parent.lines if "aiohttp.access" not in x))
        raise
    seen: set[str] = set()
    for _ in range(200):
        seen.add(call(parent.port, "GET", "/health")[1]["node_id"])
        if len(seen) == 2:
            break
    assert seen == {"daemon-test-1", "daemon-test-2"}
    assert parent.stop() == 0
