"""A Bayeux-only server for the interop tests: `/faye` on an aiohttp app, session events as JSON lines.

Usage: python server.py --port N [--timeout S] [--grace S] [--secret X] [--events FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from trailcli.collector.bayeux import BAYEUX_ENGINE, mount
from trailcli.collector.bayeux.engine import EngineObserver
from trailcli.collector.settings import Settings

CLIENT_JS = Path(__file__).resolve().parents[1] / "node_modules/faye/client/faye-browser-min.js"


class EventLog(EngineObserver):
    """Writes each observer call as one JSON line, flushed at once."""

    def __init__(self, path: Path | None) -> None:
        self.out = path.open("a", buffering=1) if path else sys.stdout

    def _write(self, event: str, **fields: Any) -> None:
        row = {"event": event, **{k: _plain(v) for k, v in fields.items()}}
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()

    def client_opened(self, client_id: str, ext: dict, now: datetime) -> None:
        self._write("opened", client_id=client_id, ext=ext, now=now)

    def client_subscribed(self, client_id: str, channel: str, now: datetime) -> None:
        self._write("subscribed", client_id=client_id, channel=channel, now=now)

    def client_unsubscribed(self, client_id: str, channel: str, now: datetime) -> None:
        self._write("unsubscribed", client_id=client_id, channel=channel, now=now)

    def client_closed(
        self, client_id: str, reason: str, last_alive: datetime, now: datetime
    ) -> None:
        self._write("closed", client_id=client_id, reason=reason, last_alive=last_alive, now=now)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(
        bayeux_timeout=args.timeout,
        transport_grace=args.grace,
        secret=args.secret,
        open_publish=False,
        faye_client_js=CLIENT_JS,
    )
    app = web.Application()
    mount(app, settings)
    app[BAYEUX_ENGINE].add_observer(EventLog(args.events))
    if args.page:
        page = args.page.read_text()
        app.router.add_get("/", lambda _r: web.Response(text=page, content_type="text/html"))
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"listening on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=45.0)
    parser.add_argument("--grace", type=float, default=15.0)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--events", type=Path, default=None)
    parser.add_argument("--page", type=Path, default=None)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
