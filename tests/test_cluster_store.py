"""Several nodes writing one log: concurrent commits to the same Delta tables, and the
maintenance lock that keeps compaction to one node at a time."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from collector_support import BROWSER_UA, Daemon, stored
from redis_support import RedisServer, redis_server  # noqa: F401 (fixture)

from trailcli.collector.maintenance_lock import LOCK_KEY, held, held_sync
from trailcli.errors import TrailError

POST_SECONDS = 4.0  # each sender posts for this long, one event per request


def post_events(port: int, prefix: str, acked: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + POST_SECONDS
    try:
        for i in itertools.count():
            if time.monotonic() > deadline:
                break
            event_id = f"{prefix}-{i}"
            body = {"visit_token": f"v-{prefix}", "visitor_token": f"u-{prefix}",
                    "events": [{"name": "tick", "id": event_id, "time": time.time(),
                                "properties": {"i": i}}]}  # fmt: skip
            conn.request("POST", "/ahoy/events", body=json.dumps(body),
                         headers={"User-Agent": BROWSER_UA, "Content-Type": "application/json"})  # fmt: skip
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                acked.append(event_id)
    finally:
        conn.close()


@pytest.fixture
def nodes() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.stop(signal.SIGKILL)


def test_two_nodes_committing_together_store_every_event_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    nodes: list[Daemon],
) -> None:
    # commits every 50 ms and bin-packing every second on both nodes: their commits meet
    env = {"TRAIL_FLUSH_INTERVAL": "0.05", "TRAIL_BIN_PACK_INTERVAL": "1"}
    for node_id in ("w1", "w2"):
        nodes.append(Daemon(tmp_path, "--redis", redis_server.url, "--node-id", node_id,
                            "--compact", env=env))  # fmt: skip
    acked: list[str] = []
    threads = [
        threading.Thread(target=post_events, args=(d.port, f"{d.port}-{t}", acked))
        for d in nodes
        for t in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(acked) > 100
    for daemon in nodes:
        assert daemon.stop() == 0
    rows = [r["event_id"] for r in stored(tmp_path, "events")]  # raw: duplicates kept
    assert sorted(rows) == sorted(acked)
    commits = [json.loads(line) for f in sorted((tmp_path / "events" / "_delta_log").glob("*.json"))
               for line in f.read_text().splitlines()]  # fmt: skip
    writers = {t["txn"]["appId"] for t in commits if "txn" in t}
    assert writers == {"w1", "w2"}  # both nodes committed to the one table
    operations = [t["commitInfo"].get("operation") for t in commits if "commitInfo" in t]
    assert "OPTIMIZE" in operations  # bin-packing ran beside the appends (under the lock)


async def test_the_maintenance_lock_is_held_by_one_and_renewed(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with held(client, ttl_ms=300) as first:
            assert first
            await asyncio.sleep(0.8)  # beyond the TTL: renewed while held
            async with held(client, ttl_ms=300) as second:
                assert not second
            with (
                pytest.raises(TrailError, match="compacting the tables now"),
                held_sync(redis_server.url),
            ):
                pass
        assert await client.get(LOCK_KEY) is None  # released at the end
        with held_sync(redis_server.url, ttl_ms=300):
            await asyncio.sleep(0.8)
            async with held(client) as third:
                assert not third
    finally:
        await client.aclose()


def test_trail_compact_by_hand_waits_for_no_node(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).set(LOCK_KEY, "a-node", px=30_000)
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "compact",
           "--data-dir", str(tmp_path), "--redis", redis_server.url]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "A node of the cluster is compacting the tables now" in result.stderr
