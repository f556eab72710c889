"""Floods against a live collector: handshake floods from one address, sessions that never
connect (per-address limits, `never_connected`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from collector_support import make_settings

from trailcli.collector.app import create_app
from trailcli.collector.keys import METRICS
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
    for _ in range(34):  # 34 requests of 1,400 handshakes (the largest body): 47,600 asked for
        replies = await handshakes(client, 1400, "198.51.100.9")
        opened += sum(r["successful"] for r in replies)
        refused = [r for r in replies if not r["successful"]]
        assert all(r["error"].startswith("429::") for r in refused)
        assert all(r["advice"]["reconnect"] == "handshake" for r in refused)
    assert 60 <= opened < 70  # the burst, and what the bucket refilled meanwhile
    # everybody else still gets in
    (other,) = await handshakes(client, 1, "203.0.113.5")
    assert other["successful"] is True
    # sessions that never connect end within the first-connect timeout and leave no rows
    await asyncio.sleep(1.6)
    metrics = client.server.app[METRICS]
    metrics.scrape()
    closed = metrics.value("bayeux_sessions_closed_total", {"reason": "never_connected"})
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
