"""One node of a trail cluster: the Bayeux mount alone on an aiohttp runner, its engine sharing
sessions through Redis as `trail collect --redis` does (no store).

Usage: python trail_cluster_server.py PORT TIMEOUT_S REDIS_URL NODE_ID
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from trailcli.collector.bayeux import mount
from trailcli.collector.metrics import Metrics
from trailcli.collector.redis_link import REDIS, RedisLink
from trailcli.collector.settings import Settings


async def main(port: int, timeout: float, redis_url: str, node_id: str) -> None:
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="trail-bench-")),
        bayeux_timeout=timeout,
        redis=redis_url,
        node_id=node_id,
        bayeux_max_sessions_per_address=100_000,
        bayeux_handshakes_per_minute=1e9,
        bayeux_handshake_burst=100_000,
    )
    link = RedisLink(redis_url, Metrics())
    await link.open()
    watch = asyncio.create_task(link.watch())
    app = web.Application()
    app[REDIS] = link
    mount(app, settings)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print(f"trail node {node_id} listening on {port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    watch.cancel()
    await link.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]))
