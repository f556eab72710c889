"""The app factory: health, metrics, mounts, store lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from collector_support import BROWSER_UA, make_settings, stored

from trailcli.collector import allocators
from trailcli.collector.app import create_app
from trailcli.collector.keys import METRICS, NODE_ID, SETTINGS, WRITER


async def test_health_reports_node_uptime_and_wal_lag(aiohttp_client, data_dir: Path) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["node_id"] == "test-node"
    assert body["uptime_seconds"] >= 0
    assert isinstance(body["wal_lag_seconds"], float)


async def test_app_keys_are_set_for_other_mounts(aiohttp_client, data_dir: Path) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir, node_id=None)))
    app = client.server.app
    assert app[SETTINGS].data_dir == data_dir
    assert app[NODE_ID] == (data_dir / "node_id").read_text().strip()
    assert hasattr(app[WRITER], "append_async")
    app[METRICS].inc("custom_total", {"a": "b"})
    text = await (await client.get("/metrics")).text()
    assert 'trail_custom_total{a="b"} 1' in text


async def test_metrics_count_requests_by_route_and_status(aiohttp_client, data_dir: Path) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    await client.get("/health")
    await client.get("/nope")
    await client.post("/ahoy/events", data=b"")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'trail_http_requests_total{route="/health",status="200"} 1' in text
    assert 'trail_http_requests_total{route="unmatched",status="404"} 1' in text
    assert 'trail_http_requests_total{route="/ahoy/events",status="400"} 1' in text
    assert "# TYPE trail_wal_bytes gauge" in text


async def test_closing_the_app_commits_what_was_accepted(aiohttp_client, data_dir: Path) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir, flush_interval=60)))
    resp = await client.post(
        "/ahoy/visits",
        json={"visit_token": "v1", "visitor_token": "u1", "landing_page": "http://x.test/"},
        headers={"User-Agent": BROWSER_UA},
    )
    assert resp.status == 200
    await client.close()
    assert [r["visit_token"] for r in stored(data_dir, "visits")] == ["v1"]


async def test_background_maintenance_runs_and_keeps_data(aiohttp_client, data_dir: Path) -> None:
    import asyncio

    settings = make_settings(
        data_dir, compact=True, bin_pack_interval=0.3, compact_interval=0.3, flush_interval=0.1
    )
    client = await aiohttp_client(create_app(settings))
    metrics = client.server.app[METRICS]
    for i in range(3):
        events = [{"name": "n", "id": f"e{i}", "properties": {}}]
        resp = await client.post(
            "/ahoy/events",
            json={"visit_token": "v", "visitor_token": "u", "events": events},
            headers={"User-Agent": BROWSER_UA},
        )
        assert resp.status == 200
        await asyncio.sleep(0.25)  # several commits: several small files today
    for _ in range(100):
        if metrics.value("maintenance_seconds", {"job": "bin_pack_today"}) > 0:
            break
        await asyncio.sleep(0.1)
    assert metrics.value("maintenance_seconds", {"job": "bin_pack_today"}) > 0
    assert metrics.value("maintenance_errors_total", {"job": "compact"}) == 0
    await client.close()
    assert sorted(r["event_id"] for r in stored(data_dir, "events", raw=False)) == [
        "e0",
        "e1",
        "e2",
    ]


async def test_gc_is_tuned_while_serving_and_restored_after(aiohttp_client, data_dir: Path) -> None:
    import gc

    from trailcli.collector.app import GC_THRESHOLDS

    before = gc.get_threshold()
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    await client.close()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def allocators_after_start(**environment: str) -> dict[str, object]:
    """What a fresh process, started as `trail collect` starts, ends up with: whether deltalake
    loaded before the app was built, deltalake's jemalloc settings and Arrow's pool."""
    code = textwrap.dedent(
        """
        import json, os, sys
        from pathlib import Path
        from trailcli.collector.app import create_app
        from trailcli.collector.settings import Settings
        create_app(Settings(data_dir=Path(sys.argv[1])))
        import pyarrow as pa
        print(json.dumps({
            "deltalake_loaded": "deltalake" in sys.modules,
            "jemalloc": os.environ.get("_RJEM_MALLOC_CONF"),
            "pool": pa.default_memory_pool().backend_name,
        }))
        """
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("_RJEM_MALLOC_CONF", "ARROW_DEFAULT_MEMORY_POOL")
    }
    seen: dict[str, object] = json.loads(
        in_fresh_process(code, "/nonexistent-data-dir", env={**env, **environment})
    )
    return seen


def in_fresh_process(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    """What `code` prints, run by a new interpreter (nothing of this process loaded)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout


def test_allocators_are_tuned_before_deltalake_loads() -> None:
    # deltalake's jemalloc reads its settings from the environment when the library loads, so
    # the app must set them first
    assert allocators_after_start() == {
        "deltalake_loaded": False,
        "jemalloc": allocators.DELTALAKE_JEMALLOC_CONF,
        "pool": "system",
    }


def test_allocator_settings_from_the_environment_win() -> None:
    import platform

    seen = allocators_after_start(
        _RJEM_MALLOC_CONF="narenas:4", ARROW_DEFAULT_MEMORY_POOL="mimalloc"
    )
    assert seen["jemalloc"] == "narenas:4"
    assert seen["pool"] == "mimalloc"
    assert allocators.tune_allocators()["glibc"] is (platform.libc_ver()[0] == "glibc")


def test_socket_reads_do_not_map_memory_of_their_own() -> None:
    """asyncio reads up to 256 KiB at a time into a new buffer and shrinks it to what arrived;
    the tuned mmap threshold must stay above that, or every request's read maps and unmaps
    memory (run in a fresh process, whose heap is still small: where that shows)."""
    code = textwrap.dedent(
        """
        import socket
        from trailcli.collector.allocators import tune_allocators
        tune_allocators()
        def mappings():
            with open("/proc/self/maps") as maps:
                return sum(1 for _ in maps)
        a, b = socket.socketpair()
        before, reads = mappings(), []
        for _ in range(8):
            a.send(b"x" * 600)
            reads.append(b.recv(256 * 1024))
        print(mappings() - before)
        """
    )
    assert int(in_fresh_process(code)) == 0
