"""SIGKILL of `trail collect` with real Faye clients online: after a restart their sessions end
`node_lost` at the node's last heartbeat (docs/presence.md, rule 2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from node_lines import Lines

INTEROP = Path(__file__).resolve().parent
NODE = shutil.which("node")
NODE_ID = "crash-node"
HEARTBEAT = timedelta(seconds=1)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        NODE is None or not (INTEROP / "node_modules/faye").is_dir(),
        reason="needs node and tests/interop/node_modules/faye (make node-deps)",
    ),
]

# Faye clients that bind themselves to a visit on the handshake, subscribe, then stay online.
CLIENTS_JS = r"""
const faye = require('faye');
const [url, ...modes] = process.argv.slice(1);
modes.forEach((mode, i) => {
  const client = new faye.Client(url, { timeout: 20, retry: 1 });
  if (mode === 'long-polling') client.disable('websocket');
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/handshake') {
        message.ext = { trail: { visit_token: 'visit-' + i, visitor_token: 'visitor-' + i } };
      }
      callback(message);
    },
  });
  client.subscribe('/chat/room').then(() => {
    console.log(JSON.stringify({ clientId: client._dispatcher.clientId, mode }));
  }, (err) => { console.error('subscribe failed: ' + JSON.stringify(err)); process.exit(1); });
});
setTimeout(() => process.exit(2), 60000);
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_collector(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        "from trailcli.cli import main; main()",
        "collect",
        "--data-dir", str(data_dir),
        "--port", str(port),
        "--node-id", NODE_ID,
        "--heartbeat-interval", "1s",
        "--no-compact",
        "--no-access-log",
    ]  # fmt: skip
    env = {**os.environ, "TRAIL_SECRET": "s3cret", "TRAIL_API_TOKEN": "read-token"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"collector exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("collector did not answer /health within 30 s")


def read_ready(process: subprocess.Popen[str], count: int, timeout: float) -> list[dict[str, Any]]:
    assert process.stdout is not None
    lines = Lines(process.stdout)
    deadline = time.monotonic() + timeout
    ready: list[dict[str, Any]] = []
    while len(ready) < count and (line := lines.next(deadline)) is not None:
        ready.append(json.loads(line))
    assert len(ready) == count, f"only {len(ready)} of {count} Faye clients subscribed"
    return ready


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def presence_rows(data_dir: Path) -> list[dict[str, Any]]:
    from trailcli.store import views

    con = views.connect(data_dir, need=("presence",))
    cursor = con.execute("SELECT * FROM presence WHERE node_id = $n ORDER BY seq", {"n": NODE_ID})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_sessions_of_a_killed_collector_end_node_lost_at_its_last_heartbeat(
    data_dir: Path, processes: list[subprocess.Popen[Any]]
) -> None:
    port = free_port()
    collector = start_collector(data_dir, port)
    processes.append(collector)
    clients = subprocess.Popen(
        [str(NODE), "-e", CLIENTS_JS, f"http://127.0.0.1:{port}/faye", "websocket", "websocket", "long-polling"],
        cwd=INTEROP,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    processes.append(clients)
    online = {c["clientId"] for c in read_ready(clients, 3, timeout=20)}

    time.sleep(2.5)  # at least two heartbeats after every subscribe
    collector.send_signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)
    collector.wait(timeout=10)
    clients.kill()
    clients.wait(timeout=10)

    restarted = start_collector(data_dir, port)
    processes.append(restarted)
    restarted_at = datetime.now(UTC)
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=30) == 0

    rows = presence_rows(data_dir)
    beats_before = [
        r["time"] for r in rows if r["transition"] == "heartbeat" and r["time"] <= killed_at
    ]
    last_beat = max(beats_before)
    assert killed_at - last_beat <= 2 * HEARTBEAT + timedelta(seconds=1)  # slack for a busy CI
    for client_id in online:
        mine = [r for r in rows if r["client_id"] == client_id]
        assert [r["transition"] for r in mine] == ["online", "subscribe", "offline"], mine
        offline = mine[-1]
        assert offline["reason"] == "node_lost"
        assert offline["time"] == last_beat  # its subscribe came before the last heartbeat
        assert offline["time"] >= mine[1]["time"]
        assert offline["detected_at"] >= restarted_at - timedelta(seconds=30)
        assert offline["detected_at"] > killed_at
        assert offline["visitor_token"].startswith("visitor-")
    seqs = [r["seq"] for r in rows]
    assert len(seqs) == len(set(seqs))
    # the restarted node wrote its own heartbeat and nothing else was left open
    assert any(r["transition"] == "heartbeat" and r["time"] > killed_at for r in rows)
    opened = {r["client_id"] for r in rows if r["transition"] == "online"}
    closed = {r["client_id"] for r in rows if r["transition"] == "offline"}
    assert opened == closed == online
