"""`trail forget` while a collector runs: records still in its WAL, a tab still open and the live
view; the person does not come back after the next commit, compaction or restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from collector_support import BROWSER_UA, stored
from erasure_support import files_holding
from test_presence_tracker import API_TOKEN, handshake, make_settings

from trailcli.collector.app import create_app
from trailcli.collector.keys import WRITER
from trailcli.collector.presence_http import TRACKER
from trailcli.store import forget, maintenance

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
GONE = {"visit_token": "gone-visit", "visitor_token": "gone-visitor"}
KEPT = {"visit_token": "kept-visit", "visitor_token": "kept-visitor"}


async def track(client: Client, who: dict[str, str], event_id: str) -> None:
    headers = {"User-Agent": BROWSER_UA}
    visit = await client.post(
        "/ahoy/visits", json={**who, "landing_page": "https://x.test/a"}, headers=headers
    )
    assert visit.status == 200
    body = {**who, "events": [{"id": event_id, "name": "$view", "time": time.time(),
                               "properties": {"page": "/a"}}]}  # fmt: skip
    event = await client.post("/ahoy/events", json=body, headers=headers)
    assert event.status == 200


async def online_visitors(client: Client) -> set[str]:
    response = await client.get("/api/online", headers=AUTH)
    assert response.status == 200
    return {row["visitor_token"] for row in await response.json()}


async def test_records_in_the_wal_and_an_open_tab_never_come_back(
    aiohttp_client: ClientFactory, data_dir: Path
) -> None:
    settings = make_settings(data_dir, flush_interval=3600.0)  # everything stays in the WAL
    client = await aiohttp_client(create_app(settings))
    await track(client, GONE, "gone-1")
    await track(client, KEPT, "kept-1")
    await handshake(client, {"trail": GONE})
    await handshake(client, {"trail": KEPT})
    await client.app[TRACKER].settle()
    assert await online_visitors(client) == {"gone-visitor", "kept-visitor"}
    assert files_holding(data_dir, ["gone-visitor"])  # in the WAL segment

    report = await asyncio.to_thread(
        forget.forget, data_dir, [forget.Selector("visitor", "gone-visitor")]
    )
    assert report.running_nodes == [settings.node_id]  # its WAL is filtered when it commits

    for _ in range(100):  # the live view reads the erasure list every tick
        if await online_visitors(client) == {"kept-visitor"}:
            break
        await asyncio.sleep(0.1)
    assert await online_visitors(client) == {"kept-visitor"}

    await track(client, GONE, "gone-2")  # the tab still open sends more
    await client.app[TRACKER].settle()
    client.app[WRITER].flush()  # type: ignore[attr-defined]
    assert {e["event_id"] for e in stored(data_dir, "events")} == {"kept-1"}
    assert {v["visitor_token"] for v in stored(data_dir, "visits")} == {"kept-visitor"}
    await client.close()  # shutdown commits the rest (the open tab's offline row among it)

    again = await aiohttp_client(
        create_app(settings)
    )  # restart: recovery commits nothing of theirs
    await track(again, KEPT, "kept-2")
    await again.close()
    maintenance.compact(data_dir, older_than=datetime.now(UTC) + timedelta(days=2))

    assert {e["event_id"] for e in stored(data_dir, "events")} == {"kept-1", "kept-2"}
    assert all(p["visitor_token"] != "gone-visitor" for p in stored(data_dir, "presence"))
    assert files_holding(data_dir, ["gone-visitor", "gone-visit"]) == []
    assert files_holding(data_dir, ["kept-visitor"])
