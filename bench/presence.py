"""What presence recording costs the Bayeux engine: sessions/s with the tracker beside the bare engine.

Each session is a handshake (bound to a visit), a subscribe and a disconnect, handled by the pure
engine in-process (no HTTP, so the difference is the tracker's own work). With the tracker every
session also writes three presence rows through the real WAL, and the figure includes waiting
until they are durable. Also: `GET /api/online`'s work (the live view's rows) with N persons online.

Run: python bench/presence.py [--sessions N]   (default 5,000; the full-size run is --sessions 50000)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from trailcli.collector.bayeux.engine import Context, Engine, EngineConfig
from trailcli.collector.metrics import Metrics
from trailcli.collector.presence_tracker import PresenceTracker
from trailcli.collector.settings import Settings
from trailcli.store.wal import LogWriter


def handshake(i: int) -> dict[str, Any]:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "ext": {"trail": {"visit_token": f"visit-{i}", "visitor_token": f"visitor-{i}"}},
    }


async def open_sessions(engine: Engine, count: int, *, close: bool) -> None:
    """Handshake and subscribe `count` sessions (and disconnect them when `close`)."""
    context = Context()
    for i in range(count):
        batch = await engine.handle([handshake(i)], context)
        client_id = batch.replies[0]["clientId"]
        sub = {
            "channel": "/meta/subscribe",
            "clientId": client_id,
            "subscription": f"/chat/{i % 10}",
        }
        await engine.handle([sub], context)
        if close:
            await engine.handle([{"channel": "/meta/disconnect", "clientId": client_id}], context)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let background tasks run, as between a server's requests


async def bare_engine(count: int) -> float:
    engine = Engine(EngineConfig(max_clients=count + 10))
    began = time.perf_counter()
    await open_sessions(engine, count, close=True)
    return time.perf_counter() - began


async def with_tracker(count: int, data_dir: Path) -> tuple[float, float, float]:
    """Seconds to handle the sessions, seconds until their rows are durable, and the seconds the
    live view takes to list `count` persons online (the work of one GET /api/online)."""
    settings = Settings(data_dir=data_dir, node_id="bench", compact=False)
    writer = LogWriter.open(data_dir, "bench", flush_interval=2.0)
    engine = Engine(EngineConfig(max_clients=2 * count + 10))
    tracker = PresenceTracker(settings=settings, metrics=Metrics())
    await tracker.start(writer, "bench", engine)
    began = time.perf_counter()
    await open_sessions(engine, count, close=True)
    handled = time.perf_counter() - began
    while tracker._rows:  # the tracker's writer task drains the queue
        await asyncio.sleep(0.001)
    await tracker._write_pending()
    durable = time.perf_counter() - began
    await open_sessions(engine, count, close=False)
    listed = time.perf_counter()
    rows = tracker.live.online()
    listing = time.perf_counter() - listed
    assert len(rows) == count
    await tracker.stop()
    writer.close()
    return handled, durable, listing


async def main(count: int) -> None:
    bare = await bare_engine(count)
    with tempfile.TemporaryDirectory() as tmp:
        handled, durable, listing = await with_tracker(count, Path(tmp))
    print(f"sessions: {count:,} (handshake + subscribe + disconnect each)")
    print(f"bare engine:          {count / bare:>10,.0f} sessions/s")
    print(
        f"engine + tracker:     {count / handled:>10,.0f} sessions/s  (the bare engine is {handled / bare:.2f}x as fast)"
    )
    print(
        f"  rows durable:       {count / durable:>10,.0f} sessions/s  ({3 * count / durable:,.0f} rows/s)"
    )
    print(f"/api/online rows for {count:,} persons: {listing * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", "--scale", type=int, default=5000, help="sessions per side")
    asyncio.run(main(parser.parse_args().sessions))
