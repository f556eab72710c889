"""The real Faye 1.4.3 clients (Node and browser) against /faye, over loopback.

Each test starts `tests/interop/faye/server.py` (the Bayeux mount on an aiohttp runner, with short
timeouts) and reads the session events it writes as JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from node_lines import Lines

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent / "faye"
SECRET = "interop-secret"
MODES = ["websocket", "long-polling"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FayeServer:
    """`server.py` as a child process; restartable on the same port."""

    def __init__(
        self, tmp_path: Path, timeout: float, grace: float, options: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.events_path = tmp_path / "events.jsonl"
        self.timeout = timeout
        self.grace = grace
        self.options = options  # more of server.py's flags (connection timeouts, limits)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/faye"

    def start(self, page: Path | None = None) -> None:
        args = [sys.executable, str(HERE / "server.py"), "--port", str(self.port)]
        args += ["--timeout", str(self.timeout), "--grace", str(self.grace), "--secret", SECRET]
        args += ["--events", str(self.events_path), *self.options]
        if page is not None:
            args += ["--page", str(page)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        self.proc = subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            assert self.proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line]

    def wait_for(self, match: Callable[[dict[str, Any]], bool], seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for event in self.events():
                if match(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no matching event within {seconds}s: {self.events()}")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            stats: dict[str, int] = json.loads(response.read())
            return stats

    def publish_form(self, channel: str, data: Any) -> dict[str, Any]:
        """A back-end publish as Rails apps send it (`Net::HTTP.post_form`): a form, no client id."""
        body = urlencode({"message": json.dumps({"channel": channel, "data": data})}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Authorization": f"Bearer {SECRET}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())[0]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., FayeServer]]:
    servers: list[FayeServer] = []

    def make(
        timeout: float = 3.0, grace: float = 1.0, page: Path | None = None, *options: str
    ) -> FayeServer:
        server = FayeServer(tmp_path, timeout, grace, options)
        server.start(page)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop(signal.SIGKILL)


class NodeClient:
    """A Node script from tests/interop/faye, its stdout read line by line."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(HERE / script), *args],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)

    def wait_line(self, prefix: str, seconds: float = 10.0) -> str:
        deadline = time.monotonic() + seconds
        seen = []
        while (line := self.lines.next(deadline)) is not None:
            if line.startswith(prefix):
                return line
            seen.append(line)
        self.kill()
        raise AssertionError(f"no line starting {prefix!r}; saw {seen}; stderr: {self.stderr()}")

    def remaining_lines(self, seconds: float = 5.0) -> list[str]:
        """The lines not read yet, up to the end of the output (the script has exited)."""
        deadline = time.monotonic() + seconds
        return list(iter(lambda: self.lines.next(deadline), None))

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()[-20000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def node() -> Iterator[Callable[..., NodeClient]]:
    started: list[NodeClient] = []

    def run(script: str, *args: str) -> NodeClient:
        client = NodeClient(script, *args)
        started.append(client)
        return client

    yield run
    for client in started:
        with contextlib.suppress(Exception):
            os.kill(client.proc.pid, signal.SIGCONT)
        client.kill()


def closed_event(client_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "closed" and e["client_id"] == client_id


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_errors_and_disconnect(make_server: Any, node: Any, mode: str) -> None:
    server = make_server()
    client = node("scenario.js", server.url, mode)
    assert client.proc.wait(20) == 0, client.stderr()
    outcome = json.loads(client.remaining_lines()[-1])
    assert outcome["transport"] == mode
    client_id = outcome["clientId"]
    closed = server.wait_for(closed_event(client_id), 2)
    assert closed["reason"] == "disconnect"
    subscribed = [e for e in server.events() if e["event"] == "subscribed"]
    assert [(e["client_id"], e["channel"]) for e in subscribed] == [(client_id, "/chat/*")]


@pytest.mark.parametrize("mode", MODES)
def test_killed_client_ends_with_transport_closed(make_server: Any, node: Any, mode: str) -> None:
    server = make_server(timeout=3.0, grace=1.0)
    client = node("listen.js", server.url, mode, "/k")
    client_id = client.wait_line("ready").split()[1]
    time.sleep(0.5)  # the connect is held (long-polling) or the socket bound (websocket)
    client.proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    closed = server.wait_for(closed_event(client_id), 4)
    assert closed["reason"] == "transport_closed"
    last_alive = datetime.fromisoformat(closed["last_alive"]).timestamp()
    detected = datetime.fromisoformat(closed["now"]).timestamp()
    assert abs(last_alive - killed_at) < 0.5
    assert 1.0 <= detected - last_alive < 2.5  # grace, plus one sweep


@pytest.mark.parametrize("mode", MODES)
def test_frozen_client_times_out(make_server: Any, node: Any, mode: str) -> None:
    # a 2 s timeout: short, yet the client's own 1.2 × timeout deadline survives a busy machine
    server = make_server(timeout=2.0, grace=1.0)
    client = node("listen.js", server.url, mode, "/f")
    client_id = client.wait_line("ready", 20).split()[1]
    client.proc.send_signal(signal.SIGSTOP)  # its sockets stay open; it just stops talking
    stopped_at = time.time()
    closed = server.wait_for(closed_event(client_id), 10)
    assert closed["reason"] == "timeout"
    detected = datetime.fromisoformat(closed["now"]).timestamp()
    assert detected - stopped_at < 2.0 + 2 * 2.0 + 1.5  # the last hold, 2 × timeout, a sweep


@pytest.mark.parametrize("mode", MODES)
def test_server_restart_makes_clients_come_back(make_server: Any, node: Any, mode: str) -> None:
    server = make_server(timeout=3.0, grace=1.0)
    client = node("listen.js", server.url, mode, "/r", "2", "25")
    first_id = client.wait_line("ready").split()[1]
    server.stop(signal.SIGKILL)
    server.start()
    deadline = time.monotonic() + 15
    while client.proc.poll() is None:
        assert time.monotonic() < deadline, "the client did not receive after the restart"
        server.publish_form("/r", {"after": "restart"})
        time.sleep(0.3)
    assert client.proc.returncode == 0, client.stderr()
    reopened = [e for e in server.events() if e["event"] == "opened" and e["client_id"] != first_id]
    assert reopened, "the client did not handshake again"
    new_id = reopened[-1]["client_id"]
    channels = {
        e["channel"]
        for e in server.events()
        if e.get("client_id") == new_id and e["event"] == "subscribed"
    }
    assert channels == {"/r"}


@pytest.mark.parametrize("mode", MODES)
def test_form_encoded_back_end_publish_reaches_subscribers(
    make_server: Any, node: Any, mode: str
) -> None:
    server = make_server()
    client = node("listen.js", server.url, mode, "/news/*")
    client.wait_line("ready")
    ack = server.publish_form("/news/today", {"headline": "hello"})
    assert ack == {"channel": "/news/today", "successful": True}
    line = client.wait_line("got", 5)
    assert line == 'got /news/today {"headline":"hello"}'
    assert client.proc.wait(5) == 0


@pytest.mark.parametrize(
    ("disable", "transport"),
    [("", "websocket"), ("websocket", "eventsource"), ("websocket,eventsource", "long-polling")],
)
def test_browser_client_in_headless_chromium(
    make_server: Any, disable: str, transport: str
) -> None:
    from playwright.sync_api import sync_playwright

    server = make_server(page=HERE / "page.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/?disable={disable}")
            page.wait_for_function("window.result !== null", timeout=15_000)
            result = page.evaluate("window.result")
        finally:
            browser.close()
    assert "error" not in result, result
    assert result["received"] == [{"channel": "/chat/lobby", "data": {"text": "from the browser"}}]
    assert result["trail"]["trail"] == 403
    assert result["transport"] == transport
    opened = server.wait_for(lambda e: e["event"] == "opened", 1)
    assert opened["client_id"] == result["clientId"]


# --- the collector's limits against the real clients ------------------------------------------

SHORT_CONNECTION_TIMEOUTS = ("--header-timeout", "1", "--keepalive-timeout", "1")


def publish_until_received(
    server: FayeServer, client: NodeClient, channel: str, seconds: float
) -> None:
    """Publish on `channel` until the listening client has exited 0 (it exits once it got one)."""
    deadline = time.monotonic() + seconds
    while client.proc.poll() is None:
        assert time.monotonic() < deadline, "the client received nothing"
        server.publish_form(channel, {"n": 1})
        time.sleep(0.3)
    assert client.proc.returncode == 0, client.stderr()


@pytest.mark.parametrize("mode", MODES)
def test_real_clients_outlive_short_connection_timeouts(
    make_server: Any, node: Any, mode: str
) -> None:
    # connects held 3 s, WebSockets quiet for seconds: neither is an idle or slow connection
    server = make_server(3.0, 1.0, None, *SHORT_CONNECTION_TIMEOUTS)
    client = node("listen.js", server.url, mode, "/t")
    client_id = client.wait_line("ready").split()[1]
    time.sleep(5)
    publish_until_received(server, client, "/t", 5)
    assert not [
        e for e in server.events() if e["event"] == "closed" and e["client_id"] == client_id
    ]
    assert server.stats()["header_timeouts"] == 0  # and no connection of theirs was cut


@pytest.mark.parametrize("mode", MODES)
def test_a_client_refused_by_the_handshake_limit_gets_in_when_allowed(
    make_server: Any, node: Any, mode: str
) -> None:
    server = make_server(3.0, 1.0, None, "--handshake-burst", "1", "--handshakes-per-minute", "60")
    spent = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    request = urllib.request.Request(server.url, data=json.dumps([spent]).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())[0]["successful"] is True  # the address's one handshake
    client = node("listen.js", server.url, mode, "/limited", "1", "40")
    client.wait_line("ready", 25)
    assert server.stats()["refused_handshake_rate"] >= 1
    publish_until_received(server, client, "/limited", 10)


@pytest.mark.parametrize("mode", MODES)
def test_a_client_whose_session_expired_comes_back(make_server: Any, node: Any, mode: str) -> None:
    # tight per-address limits: the client's new handshake must still get through
    server = make_server(2.0, 1.0, None, "--handshake-burst", "2", "--handshakes-per-minute", "30",
                         *SHORT_CONNECTION_TIMEOUTS)  # fmt: skip
    client = node("listen.js", server.url, mode, "/back", "1", "40")
    first_id = client.wait_line("ready", 25).split()[1]
    client.proc.send_signal(signal.SIGSTOP)
    server.wait_for(closed_event(first_id), 15)  # its session timed out meanwhile
    client.proc.send_signal(signal.SIGCONT)
    publish_until_received(server, client, "/back", 30)
    reopened = [e for e in server.events() if e["event"] == "opened" and e["client_id"] != first_id]
    assert reopened, "the client did not handshake again"


@pytest.mark.parametrize(
    ("disable", "transport"),
    [("", "websocket"), ("websocket", "eventsource"), ("websocket,eventsource", "long-polling")],
)
def test_browser_client_outlives_short_connection_timeouts(
    make_server: Any, disable: str, transport: str
) -> None:
    from playwright.sync_api import sync_playwright

    server = make_server(3.0, 1.0, HERE / "page.html", *SHORT_CONNECTION_TIMEOUTS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/?disable={disable}&wait=5")
            page.wait_for_function("window.result !== null", timeout=25_000)
            result = page.evaluate("window.result")
        finally:
            browser.close()
    assert "error" not in result, result
    assert result["transport"] == transport
    assert result["received"] == [{"channel": "/chat/lobby", "data": {"text": "from the browser"}}]
    closed = [e for e in server.events() if e["event"] == "closed"]
    assert closed == []  # the session lived through five seconds of 1 s connection timeouts
