"""Helpers for the collector tests: settings for a temp data dir, a live in-process app, stored rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trailcli.collector.settings import Settings

BROWSER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:78.0) Gecko/20100101 Firefox/78.0"
BOT_UA = "DuckDuckBot/1.0; (+http://duckduckgo.com/duckduckbot.html)"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: a temp data dir, fast WAL commits, no background compaction or access log."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "node_id": "test-node",
        "compact": False,
        "flush_interval": 0.2,
        "access_log": False,
    }
    base.update(overrides)
    return Settings(**base)


def stored(data_dir: Path, kind: str, raw: bool = True) -> list[dict[str, Any]]:
    """Every committed row of `kind` (raw: duplicates kept), ordered by its time column."""
    from trailcli.store import views
    from trailcli.store.schema import KINDS

    con = views.connect(data_dir, need=())
    name = f"raw_{kind}" if raw else kind
    order = KINDS[kind].time_column
    cur = con.execute(f"SELECT * FROM {name} ORDER BY {order}")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


class Clock:
    """A settable clock for the collector's notion of now."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now
