"""The node's Redis link: refused at start when Redis is unreachable, degraded while it is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ahoy_databases import free_port
from aiohttp.test_utils import TestClient, TestServer
from collector_support import make_settings
from redis_support import RedisServer, redis_server  # noqa: F401 (fixture)

from trailcli.collector.app import create_app
from trailcli.collector.redis_link import REDIS, redacted_url
from trailcli.collector.settings import Settings
from trailcli.errors import TrailError, UsageError


def test_redacted_url_hides_only_the_password() -> None:
    assert redacted_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redacted_url("redis://:pw@h/0") == "redis://:***@h/0"
    assert redacted_url("redis://h:6379/2") == "redis://h:6379/2"


def test_workers_without_redis_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs --redis"):
        Settings(data_dir=tmp_path, workers=2)
    assert Settings(data_dir=tmp_path, workers=2, redis="redis://h/0").workers == 2


async def test_unreachable_redis_refuses_to_start_naming_the_url(tmp_path: Path) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    app = create_app(make_settings(tmp_path, redis=url))
    with pytest.raises(TrailError, match=r"Cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1"):
        async with TestClient(TestServer(app)):
            pass


async def test_lost_redis_degrades_health_until_it_is_back(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    app = create_app(make_settings(tmp_path, redis=redis_server.url))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/health")
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
        redis_server.stop()
        body = await _health_until(client, 503)
        assert body["status"] == "degraded"
        assert body["reasons"][0].startswith("redis unreachable")
        assert "trail_redis_up 0" in await (await client.get("/metrics")).text()
        redis_server.start()
        await asyncio.wait_for(app[REDIS].wait_up(), timeout=20)
        assert (await _health_until(client, 200))["status"] == "ok"
        metrics = await (await client.get("/metrics")).text()
        assert "trail_redis_up 1" in metrics
        assert "trail_redis_reconnects_total 1" in metrics


async def _health_until(client: TestClient, status: int) -> dict[str, object]:
    for _ in range(200):  # the watch pings every second, with backoff below 5 s while down
        resp = await client.get("/health")
        if resp.status == status:
            return dict(await resp.json())
        await asyncio.sleep(0.1)
    raise AssertionError(f"/health never answered {status}")
