"""Bayeux across the nodes of a cluster: real `trail collect --redis` nodes, a real redis-server
and the real Faye 1.4.3 Node client; any node serves any request (no sticky sessions)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_support import Daemon
from node_lines import Lines
from redis_support import RedisServer

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent / "faye"
MODES = ["websocket", "long-polling"]
CLIENT_JS = str(HERE.parent / "node_modules/faye/client/faye-browser-min.js")


class Cluster:
    """redis-server and `count` nodes on it, each with its own data dir and node id."""

    def __init__(self, tmp_path: Path, count: int) -> None:
        self.redis = RedisServer().start()
        self.nodes: list[Daemon] = []
        for i in range(count):
            args = ["--redis", self.redis.url, "--node-id", f"bus-{i}", "--open-publish"]
            args += ["--timeout", "3", "--transport-grace", "1", "--faye-client-js", CLIENT_JS]
            self.nodes.append(Daemon(tmp_path / f"node{i}", *args))

    def url(self, i: int) -> str:
        return self.nodes[i].url("/faye")

    def publish(self, i: int, channel: str, data: Any) -> dict[str, Any]:
        """A back-end publish (no client id) on node `i`."""
        body = json.dumps({"channel": channel, "data": data}).encode()
        request = urllib.request.Request(
            self.url(i), data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            reply: dict[str, Any] = json.loads(response.read())[0]
            return reply

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop(signal.SIGKILL)
        self.redis.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[[int], Cluster]]:
    made: list[Cluster] = []

    def make(count: int) -> Cluster:
        made.append(Cluster(tmp_path, count))
        return made[-1]

    yield make
    for c in made:
        c.close()


class Script:
    """A child process whose stdout is read line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        import os

        self.proc = subprocess.Popen(
            args,
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        self.seen: list[str] = []

    def wait_line(self, prefix: str, seconds: float = 15.0) -> str:
        deadline = time.monotonic() + seconds
        while (line := self.lines.next(deadline)) is not None:
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        self.kill()
        stderr = self.proc.stderr.read()[-5000:] if self.proc.stderr else ""
        raise AssertionError(f"no line starting {prefix!r}; saw {self.seen}; stderr: {stderr}")

    def got(self) -> list[tuple[str, str, Any]]:
        """The (client id, channel, data) of every message printed so far."""
        out = []
        for line in self.seen:
            if line.startswith("got "):
                _, client_id, channel, data = line.split(" ", 3)
                out.append((client_id, channel, json.loads(data)))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def scripts() -> Iterator[Callable[..., Script]]:
    started: list[Script] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Script:
        started.append(Script(list(args), env))
        return started[-1]

    yield run
    for s in started:
        s.kill()


def faye(run: Callable[..., Script], url: str, mode: str, chans: str, **env: str) -> Script:
    return run("node", str(HERE / "cluster.js"), url, mode, chans, "30", env=env)


@pytest.mark.parametrize("mode", MODES)
def test_a_subscriber_on_one_node_hears_publishes_on_the_others(
    cluster: Any, scripts: Any, mode: str
) -> None:
    c = cluster(3)
    listener = faye(scripts, c.url(0), mode, "/room/*")
    client_id = listener.wait_line("ready").split()[1]
    # a Faye client publishing on node 1, a back end publishing on node 2
    publisher = faye(scripts, c.url(1), mode, "/unused", PUBLISH="/room/b", COUNT="3")
    publisher.wait_line("published 3")
    assert c.publish(2, "/room/c", {"from": "c"})["successful"] is True
    assert c.publish(2, "/elsewhere", {"from": "c"})["successful"] is True
    listener.wait_line("got " + client_id + " /room/c")
    time.sleep(0.3)  # anything sent twice would arrive by now
    listener.lines.next(time.monotonic() + 0.1)
    got = [(ch, d) for _, ch, d in listener.got()]
    assert sorted(got, key=json.dumps) == sorted(
        [("/room/b", {"n": 1}), ("/room/b", {"n": 2}), ("/room/b", {"n": 3}),
         ("/room/c", {"from": "c"})],
        key=json.dumps,
    )  # fmt: skip
    assert [d["n"] for ch, d in got if ch == "/room/b"] == [1, 2, 3]  # in publish order


@pytest.mark.parametrize("mode", MODES)
def test_wildcards_across_nodes_deliver_each_message_once(
    cluster: Any, scripts: Any, mode: str
) -> None:
    c = cluster(2)
    # two subscriptions matching the same channel: the client gets each message once, and
    # Faye's client hands it to both
    listener = faye(scripts, c.url(0), mode, "/w/*,/w/**")
    client_id = listener.wait_line("ready").split()[1]
    deep = faye(scripts, c.url(1), mode, "/w/**")
    deep_id = deep.wait_line("ready").split()[1]
    for n in range(5):
        assert c.publish(n % 2, "/w/x", {"n": n})["successful"] is True
    assert c.publish(1, "/w/x/y", {"n": "deep"})["successful"] is True
    deep.wait_line(f"got {deep_id} /w/x/y")
    listener.wait_line(f"got {client_id} /w/x/y")
    time.sleep(0.3)
    deep.lines.next(time.monotonic() + 0.1)
    listener.lines.next(time.monotonic() + 0.1)
    assert [d["n"] for _, _, d in deep.got()] == [0, 1, 2, 3, 4, "deep"]
    # /w/x matches both of the listener's subscriptions: each message once per subscription
    assert [d["n"] for _, _, d in listener.got()] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, "deep"]


def test_a_long_polling_client_alternating_nodes_gets_every_message_once(
    cluster: Any, scripts: Any
) -> None:
    c = cluster(2)
    proxy = scripts(sys.executable, str(HERE / "round_robin.py"), c.url(0)[:-5], c.url(1)[:-5])
    port = proxy.wait_line("listening").split()[1]
    listener = faye(scripts, f"http://127.0.0.1:{port}/faye", "long-polling", "/alt")
    client_id = listener.wait_line("ready").split()[1]
    for n in range(20):
        assert c.publish(n % 2, "/alt", {"n": n})["successful"] is True
        time.sleep(0.05 * (n % 3))  # some while a connect is held, some between connects
    listener.wait_line(f"got {client_id} /alt {json.dumps({'n': 19}, separators=(',', ':'))}")
    time.sleep(0.3)
    listener.lines.next(time.monotonic() + 0.1)
    assert [d["n"] for _, _, d in listener.got()] == list(range(20))
    assert {cid for cid, _, _ in listener.got()} == {client_id}  # one session throughout


@pytest.mark.parametrize("mode", MODES)
def test_clients_recover_by_themselves_when_redis_restarts(
    cluster: Any, scripts: Any, mode: str
) -> None:
    c = cluster(2)
    listener = faye(scripts, c.url(0), mode, "/r")
    first_id = listener.wait_line("ready").split()[1]
    assert c.publish(1, "/r", {"n": "before"})["successful"] is True
    listener.wait_line(f"got {first_id} /r")
    c.redis.stop()
    time.sleep(0.5)
    c.redis.start()  # empty: every session is gone
    deadline = time.monotonic() + 20
    while not any(d == {"n": "after"} for _, _, d in listener.got()):
        assert time.monotonic() < deadline, f"no message after the restart: {listener.seen}"
        with contextlib.suppress(OSError):
            c.publish(1, "/r", {"n": "after"})
        line = listener.lines.next(time.monotonic() + 0.5)
        if line is not None:
            listener.seen.append(line)
    after = [cid for cid, _, d in listener.got() if d == {"n": "after"}]
    assert after[0] != first_id  # it handshook again and subscribed again by itself
    with urllib.request.urlopen(c.nodes[0].url("/health"), timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"


def test_the_browser_client_long_polling_across_two_nodes(
    tmp_path: Path, scripts: Any, cluster: Any
) -> None:
    from playwright.sync_api import sync_playwright

    c = cluster(2)
    backends = [c.url(0)[:-5], c.url(1)[:-5]]
    proxy = scripts(sys.executable, str(HERE / "round_robin.py"), "--page", str(HERE / "page.html"),
                    *backends)  # fmt: skip
    port = proxy.wait_line("listening").split()[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/?disable=websocket,eventsource")
            page.wait_for_function("window.result !== null", timeout=20_000)
            result = page.evaluate("window.result")
        finally:
            browser.close()
    assert "error" not in result, result
    assert result["received"] == [{"channel": "/chat/lobby", "data": {"text": "from the browser"}}]
    assert result["trail"]["trail"] == 403
    assert result["transport"] == "long-polling"
