"""trail's Bayeux mount alone on an aiohttp runner, as `trail collect` serves it (no store)."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import SimpleNamespace

from aiohttp import web

from trailcli.collector.bayeux import mount


async def main(port: int, timeout: float) -> None:
    app = web.Application()
    mount(app, SimpleNamespace(bayeux_timeout=timeout, grace=15.0, secret=None))
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print(f"trail listening on {port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
