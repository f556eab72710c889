"""Typed keys of everything the collector keeps on its aiohttp application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from trailcli.collector.bayeux import BAYEUX_ENGINE as BAYEUX_ENGINE  # the Bayeux engine
from trailcli.collector.metrics import Metrics
from trailcli.collector.settings import Settings


class RecordWriter(Protocol):
    """The store writer (trailcli.store.wal.LogWriter): durable once `append_async` returns."""

    def append_async(self, kind: str, records: list[dict[str, Any]]) -> Awaitable[Any]: ...

    def close(self) -> Any: ...

    def stats(self) -> dict[str, Any]: ...


Mount = Callable[[web.Application, Settings], None]
WriterFactory = Callable[[Settings, str], Awaitable[RecordWriter] | RecordWriter]

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
NODE_ID = web.AppKey("node_id", str)
STARTED_AT = web.AppKey("started_at", float)  # time.time() at start
WRITER = web.AppKey("writer", RecordWriter)
# Called with each batch of accepted event rows once they are durable (e.g. /trail/events fan-out),
# and each row's properties as the client sent them, parsed (so hooks need not parse them again).
EventHook = Callable[[list[dict[str, Any]], list[Any]], None]
EVENT_HOOKS = web.AppKey("event_hooks", list[EventHook])
