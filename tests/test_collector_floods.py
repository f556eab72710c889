"""Floods against a live collector: handshake floods from one address, sessions that never
connect (per-address limits, `never_connected`), and idle, slow or too many connections."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import json
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from collector_support import Daemon, make_settings

from trailcli.collector.app import create_app
from trailcli.collector.connections import AcceptErrors
from trailcli.collector.keys import METRICS
from trailcli.collector.metrics import Metrics
from trailcli.store import views

HANDSHAKE = {"channel": "/meta/handshake", "version": "1.0",
             "supportedConnectionTypes": ["long-polling"]}  # fmt: skip


async def handshakes(client: Any, count: int, address: str | None = None) -> list[dict]:
    headers = {"X-Forwarded-For": address} if address else {}
    response = await client.post("/faye", json=[HANDSHAKE] * count, headers=headers)
    assert response.status == 200
    replies: list[dict] = await response.json()
    return replies


async def test_a_handshake_flood_from_one_address_locks_nobody_else_out(
    aiohttp_client: Any, data_dir: Path
) -> None:
    settings = make_settings(data_dir, trust_proxy=True, bayeux_first_connect_timeout=0.5,
                             heartbeat_interval=0.2, bayeux_handshake_burst=60,
                             bayeux_handshakes_per_minute=120)  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    opened = 0
    started = time.monotonic()
    for _ in range(34):  # 34 requests of 1,400 handshakes (the largest body): 47,600 asked for
        replies = await handshakes(client, 1400, "198.51.100.9")
        opened += sum(r["successful"] for r in replies)
        refused = [r for r in replies if not r["successful"]]
        assert all(r["error"].startswith("429::") for r in refused)
        assert all(r["advice"]["reconnect"] == "retry" for r in refused)
    refilled = 2 * (time.monotonic() - started)  # 120 a minute
    assert 60 <= opened <= 60 + refilled + 1  # the burst, and what the bucket refilled meanwhile
    # everybody else still gets in
    (other,) = await handshakes(client, 1, "203.0.113.5")
    assert other["successful"] is True
    # sessions that never connect end within the first-connect timeout and leave no rows
    metrics = client.server.app[METRICS]
    deadline = time.monotonic() + 10
    while True:
        await asyncio.sleep(0.2)
        metrics.scrape()
        closed = metrics.value("bayeux_sessions_closed_total", {"reason": "never_connected"})
        if closed == opened + 1 or time.monotonic() > deadline:
            break
    assert closed == opened + 1
    refusals = metrics.value("bayeux_refused_total", {"limit": "handshakes_per_address"})
    assert refusals == 34 * 1400 - opened
    await client.close()
    con = views.connect(data_dir, need=("presence",))
    transitions = con.execute("SELECT DISTINCT transition FROM presence").fetchall()
    assert transitions == [("heartbeat",)]


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    aiohttp_client: Any, data_dir: Path
) -> None:
    settings = make_settings(data_dir, bayeux_handshake_burst=5)
    client = await aiohttp_client(create_app(settings))
    # without --trust-proxy a made-up X-Forwarded-For does not buy a fresh allowance
    allowed = [(await handshakes(client, 1, f"192.0.2.{i}"))[0]["successful"] for i in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    await client.close()


# --- idle, slow and too many connections (a real `trail collect` process) -------------------------


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading returns nothing or fails), or None."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - started


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_silent_and_slow_connections_are_closed_at_the_header_timeout(data_dir: Path) -> None:
    daemon = Daemon(data_dir, "--no-access-log",
                    env={"TRAIL_HEADER_TIMEOUT": "1s", "TRAIL_KEEPALIVE_TIMEOUT": "60s"})  # fmt: skip
    try:
        silent = socket.create_connection(("127.0.0.1", daemon.port))
        slow = socket.create_connection(("127.0.0.1", daemon.port))

        def trickle() -> None:  # a request head, one byte every 0.1 s
            with contextlib.suppress(OSError):
                for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
                    slow.send(bytes([byte]))
                    time.sleep(0.1)

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        # closed at the 1 s header timeout (not before), far from aiohttp's own 75 s
        took = closed_within(silent, 10)
        assert took is not None and 0.8 <= took < 8
        took = closed_within(slow, 10)
        assert took is not None and took < 8
        assert get(daemon.port, "/health")[0] == 200
        metrics = get(daemon.port, "/metrics")[1]
        assert 'trail_connections_closed_total{reason="header_timeout"} 2' in metrics
    finally:
        assert daemon.stop() == 0


def test_an_idle_keep_alive_connection_is_closed(data_dir: Path) -> None:
    daemon = Daemon(data_dir, "--no-access-log", env={"TRAIL_KEEPALIVE_TIMEOUT": "1s"})
    try:
        sock = socket.create_connection(("127.0.0.1", daemon.port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        took = closed_within(sock, 10)
        assert took is not None and 0.8 <= took < 8
    finally:
        assert daemon.stop() == 0


def test_connections_over_the_cap_are_refused_at_once(data_dir: Path) -> None:
    daemon = Daemon(data_dir, "--no-access-log", "--max-connections", "5",
                    env={"TRAIL_HEADER_TIMEOUT": "60s"})  # fmt: skip
    try:
        held = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(5)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", daemon.port))
        took = closed_within(extra, 10)
        assert took is not None and took < 8  # the header timeout is 60 s: only the cap does this
        for sock in held:
            sock.close()
        time.sleep(0.3)
        metrics = get(daemon.port, "/metrics")[1]
        assert 'trail_connections_refused_total{reason="max_connections"} 1' in metrics
    finally:
        assert daemon.stop() == 0


def test_held_long_polls_and_websockets_outlive_the_timeouts(data_dir: Path) -> None:
    daemon = Daemon(data_dir, "--no-access-log", "--timeout", "3s",
                    env={"TRAIL_HEADER_TIMEOUT": "1s", "TRAIL_KEEPALIVE_TIMEOUT": "1s"})  # fmt: skip
    try:
        asyncio.run(_hold_and_idle(daemon.port))
    finally:
        assert daemon.stop() == 0


async def _hold_and_idle(port: int) -> None:
    import aiohttp

    url = f"http://127.0.0.1:{port}/faye"
    async with aiohttp.ClientSession() as session:
        (hello,) = await (await session.post(url, json=[HANDSHAKE])).json()
        connect = {"channel": "/meta/connect", "clientId": hello["clientId"],
                   "connectionType": "long-polling"}  # fmt: skip
        started = time.monotonic()
        (answer,) = await (await session.post(url, json=[connect])).json()
        assert answer["successful"] is True
        assert time.monotonic() - started > 2.5  # held for the timeout, past both limits
        async with session.ws_connect(url) as ws:
            await asyncio.sleep(3)  # a quiet WebSocket is not an idle connection
            await ws.send_str(json.dumps([{**HANDSHAKE, "id": "ws"}]))
            reply = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert reply[0]["successful"] is True


def _soft_open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


def test_the_open_file_limit_is_raised_to_the_hard_limit(data_dir: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard <= 256 or hard == resource.RLIM_INFINITY:
        pytest.skip("needs a finite hard open-file limit above 256")
    daemon = Daemon(data_dir, "--no-access-log", open_files=(256, hard))
    try:
        assert _soft_open_files(daemon.proc.pid) == (hard, hard)
    finally:
        assert daemon.stop() == 0


@pytest.mark.slow
def test_1100_silent_sockets_at_a_1024_file_limit(data_dir: Path) -> None:
    mine_soft, mine_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if mine_hard < 2048:
        pytest.skip("the test itself needs 1,100 sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (mine_hard, mine_hard))
    daemon = Daemon(data_dir, "--no-access-log", env={"TRAIL_HEADER_TIMEOUT": "2s"},
                    open_files=(1024, 1024))  # fmt: skip
    sockets: list[socket.socket] = []
    try:
        for _ in range(1100):
            with contextlib.suppress(OSError):
                sockets.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=5))
        deadline = time.monotonic() + 8  # the header timeout, and some room on a busy machine
        while True:
            try:
                if get(daemon.port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "/health did not answer"
            time.sleep(0.2)
    finally:
        for sock in sockets:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (mine_soft, mine_hard))
        assert daemon.stop() == 0
    log = "".join(daemon.lines)
    assert len(log) < 5000, log[:2000]
    assert "Traceback" not in log


def test_failed_accepts_are_counted_and_logged_once_in_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    handler = AcceptErrors(metrics)
    loop = asyncio.new_event_loop()
    try:
        error = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level("ERROR", logger="trail.collect"):
            for _ in range(1000):
                handler(loop, {"message": "socket.accept() out of system resource",
                               "exception": error})  # fmt: skip
    finally:
        loop.close()
    assert metrics.value("accept_errors_total", {"errno": "EMFILE"}) == 1000
    assert len(caplog.records) == 1
    assert "Too many open files" in caplog.records[0].getMessage()


def test_the_guard_reads_what_aiohttp_keeps_on_its_request_handler() -> None:
    from aiohttp.web_protocol import RequestHandler

    assert {"_request_count", "_request_in_progress", "_messages"} <= set(RequestHandler.__slots__)
