"""`trail compact`: rewrite closed partitions into large deduplicated files, vacuum, then build the
presence snapshots."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from trailcli.cli.common import (
    DEFAULT_DATA_DIR,
    DURATION_HELP,
    DataDir,
    Tz,
    cli_errors,
    warn,
)
from trailcli.timeparse import TIME_FORMS


def compact(
    *,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help=f"Compact the UTC days that ended by this time: {TIME_FORMS}.",
        ),
    ] = "today",
    retention: Annotated[
        str,
        typer.Option("--retention", help=f"Delete replaced files after this long. {DURATION_HELP}"),
    ] = "24h",
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="Only this log kind: visits, events, presence or identities (repeatable).",
        ),
    ] = None,
    tz: Tz = "UTC",
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar="TRAIL_REDIS_URL",
            help="The cluster's Redis: wait for no node to be compacting (its lock) [none].",
        ),
    ] = None,
) -> None:
    """Compact closed days into large deduplicated files and vacuum old ones."""
    with cli_errors():
        from trailcli.presence.snapshots import build_snapshots
        from trailcli.store.maintenance import compact as run_compact
        from trailcli.timeparse import parse_duration, parse_time, parse_tz

        lock: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if redis:
            from trailcli.collector.maintenance_lock import held_sync

            lock = held_sync(redis)
        with lock:
            summary = run_compact(
                data_dir,
                older_than=parse_time(older_than, parse_tz(tz)),
                kinds=kind or None,
                retention=parse_duration(retention),
                progress=warn,
            )
            if "presence" in summary.kinds:
                warn("presence: building snapshots")
                build_snapshots(data_dir, progress=warn)
        warn(summary.line())
