"""This node's live view for the dashboard: the presence tracker's persons and the engine's
`/trail/**` messages, heard in-process (no Bayeux session, so nothing lands in the presence log)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from trailcli.collector.bayeux import BAYEUX_ENGINE
from trailcli.collector.dashboard.ports import Listener
from trailcli.collector.keys import NODE_ID
from trailcli.collector.presence_http import TRACKER
from trailcli.collector.presence_tracker import EVENTS_CHANNEL, PRESENCE_CHANNEL


class CollectorLive:
    """`LiveSource` over one node."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    @property
    def node_id(self) -> str | None:
        return self.app.get(NODE_ID)

    def online(self) -> list[dict[str, Any]]:
        tracker = self.app.get(TRACKER)
        rows = tracker.live.online() if tracker is not None else []
        node = self.node_id
        for row in rows:
            row.setdefault("node_id", node)
        return rows

    def clients(self) -> Mapping[str, int]:
        tracker = self.app.get(TRACKER)
        return tracker.live.clients() if tracker is not None else {}

    def listen(self, listener: Listener) -> Callable[[], None]:
        engine = self.app.get(BAYEUX_ENGINE)
        if engine is None:
            return lambda: None
        stops = [engine.listen(channel, listener) for channel in (PRESENCE_CHANNEL, EVENTS_CHANNEL)]

        def stop() -> None:
            for each in stops:
                each()

        return stop
