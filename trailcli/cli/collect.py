"""`trail collect`: run the collector daemon (Ahoy tracking API, Bayeux server, presence)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from trailcli.cli.common import DURATION_HELP as Dur
from trailcli.cli.common import cli_errors, warn


def collect(
    *,
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [9292]; 0 picks a free one.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the logs live [./trail-data].")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with options (flags and env win).")
    ] = None,
    node_id: Annotated[str | None, typer.Option(help="Stable id of this node.")] = None,
    redis: Annotated[
        str | None,
        typer.Option(help="Join the cluster of this Redis URL (redis://host:6379/0) [none]."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes on one port, one node each (needs --redis) [1].")
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="File holding the secret (else $TRAIL_SECRET).")
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(help="Origin allowed to call the API from a browser (repeatable; '*' any)."),
    ] = None,
    cookies: Annotated[
        str | None, typer.Option(help="'js' (ahoy.js cookies) or 'none' (cookie-less).")
    ] = None,
    visit_duration: Annotated[str | None, typer.Option(help=f"Visit lifetime [4h]. {Dur}")] = None,
    track_bots: Annotated[
        bool | None, typer.Option("--track-bots/--no-track-bots", help="Store bot traffic.")
    ] = None,
    trust_proxy: Annotated[
        bool | None,
        typer.Option("--trust-proxy/--no-trust-proxy", help="Client IP from X-Forwarded-For."),
    ] = None,
    mask_ips: Annotated[
        bool | None, typer.Option("--mask-ips/--no-mask-ips", help="Keep IPv4 /24, IPv6 /48 only.")
    ] = None,
    geoip: Annotated[Path | None, typer.Option(help="MaxMind .mmdb file for locations.")] = None,
    accept_unscoped_user_tokens: Annotated[
        bool | None,
        typer.Option(
            "--accept-unscoped-user-tokens/--no-accept-unscoped-user-tokens",
            help="Also accept user tokens in the older format that names no visit.",
        ),
    ] = None,
    max_content_length: Annotated[
        int | None, typer.Option(help="Largest body in bytes [8192]; larger gets 413.")
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(help="Client connections at once [60000, below the open-file limit]."),
    ] = None,
    max_events_per_request: Annotated[
        int | None, typer.Option(help="Events kept per request [10].")
    ] = None,
    compact: Annotated[
        bool | None, typer.Option("--compact/--no-compact", help="Background bin-pack/compaction.")
    ] = None,
    retention: Annotated[
        str | None,
        typer.Option(
            help="Delete whole days older than this, daily with compaction (e.g. 400d) [keep all]."
        ),
    ] = None,
    keep_daily: Annotated[
        bool | None,
        typer.Option(
            "--keep-daily/--no-keep-daily",
            help="With --retention: keep each day's figures in the daily table first.",
        ),
    ] = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="One line per request.")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help=f"Bayeux: how long a connect is held [45s]. {Dur}")
    ] = None,
    transport_grace: Annotated[
        str | None,
        typer.Option(
            help=f"Bayeux: time a closed socket or long-poll has to come back before its "
            f"session ends [15s]. {Dur}"
        ),
    ] = None,
    grace: Annotated[
        str | None,
        typer.Option(hidden=True, help="Deprecated name of --transport-grace."),
    ] = None,
    heartbeat_interval: Annotated[
        str | None, typer.Option(help=f"Presence: node heartbeat interval [10s]. {Dur}")
    ] = None,
    open_publish: Annotated[
        bool | None,
        typer.Option(
            "--open-publish/--no-open-publish",
            help="Bayeux: accept back-end publishes (no client id) without the secret.",
        ),
    ] = None,
    max_message_bytes: Annotated[
        int | None, typer.Option(help="Bayeux: largest published message in bytes [32768].")
    ] = None,
    max_queued_messages: Annotated[
        int | None, typer.Option(help="Bayeux: messages queued per client, oldest dropped [1000].")
    ] = None,
    max_clients: Annotated[
        int | None, typer.Option(help="Bayeux: clients per node [50000].")
    ] = None,
    max_subscriptions: Annotated[
        int | None, typer.Option(help="Bayeux: subscriptions per client [100].")
    ] = None,
    handshakes_per_minute: Annotated[
        float | None,
        typer.Option(help="Bayeux: handshakes a minute per client address, after a burst [120]."),
    ] = None,
    max_sessions_per_address: Annotated[
        int | None, typer.Option(help="Bayeux: live sessions per client address [1000].")
    ] = None,
    faye_client_js: Annotated[
        Path | None,
        typer.Option(help="Faye's client/faye-browser-min.js, served at /faye/client.js."),
    ] = None,
    dashboard: Annotated[
        bool | None,
        typer.Option(
            "--dashboard/--no-dashboard", help="The live page at /dashboard (needs the API token)."
        ),
    ] = None,
) -> None:
    """Run the collector daemon: Ahoy tracking API, Bayeux server, presence; stop with Ctrl-C."""
    with cli_errors():
        from trailcli.collector.settings import coerce, load_settings

        flags: dict[str, object] = {
            "host": host, "port": port, "data_dir": data_dir, "node_id": node_id,
            "secret_file": secret_file, "allow_origins": tuple(allow_origin or ()),
            "cookies": cookies, "track_bots": track_bots, "trust_proxy": trust_proxy,
            "mask_ips": mask_ips, "geoip": geoip, "max_content_length": max_content_length,
            "max_events_per_request": max_events_per_request, "compact": compact,
            "access_log": access_log, "open_publish": open_publish,
        }  # fmt: skip
        flags.update(
            bayeux_max_message_bytes=max_message_bytes, bayeux_max_queued=max_queued_messages
        )
        flags.update(bayeux_max_clients=max_clients, bayeux_max_subscriptions=max_subscriptions)
        flags["faye_client_js"] = faye_client_js
        flags["accept_unscoped_user_tokens"] = accept_unscoped_user_tokens
        flags["bayeux_handshakes_per_minute"] = handshakes_per_minute
        flags["bayeux_max_sessions_per_address"] = max_sessions_per_address
        flags["max_connections"] = max_connections
        flags["dashboard"] = dashboard
        flags.update(redis=redis, workers=workers)
        if grace is not None:
            warn(
                "--grace is deprecated and will be removed in the next release; use --transport-grace"
            )
        durations = {"visit_duration": visit_duration, "bayeux_timeout": timeout}
        durations["transport_grace"] = transport_grace if transport_grace is not None else grace
        durations["heartbeat_interval"] = heartbeat_interval
        durations["retention"] = retention
        flags["keep_daily"] = keep_daily
        for name, text in durations.items():
            flag = "--" + name.replace("_", "-")
            flags[name] = None if text is None else coerce(name, text, flag)
        settings = load_settings(flags, os.environ, config)
        start(settings)


def start(settings: object) -> None:
    """Run the daemon (tests replace this to check the settings a command line gives)."""
    from trailcli.cli.dashboard_reports import ReportsForDashboard
    from trailcli.collector.daemon import run
    from trailcli.collector.settings import Settings

    assert isinstance(settings, Settings)
    purge = retention_purge(settings)
    if settings.workers > 1:
        from trailcli.collector.workers import supervise

        code = supervise(settings, reports=ReportsForDashboard(), purge=purge)
        if code:
            raise typer.Exit(code)
        return
    run(settings, reports=ReportsForDashboard(), purge=purge)


@dataclass(frozen=True)
class RetentionPurge:
    """What the collector's daily upkeep calls to drop the days past its retention (a class, not
    a closure, so a `--workers` worker process can be handed it)."""

    older_than: timedelta
    keep_daily: bool

    def __call__(self, data_dir: Path, now: datetime) -> str:
        from trailcli.retention.purge import purge as run_purge

        return run_purge(data_dir, self.older_than, now=now, keep_daily=self.keep_daily).line()


def retention_purge(settings: object) -> RetentionPurge | None:
    """The daily purge of `--retention` (None: off)."""
    from trailcli.collector.settings import Settings

    assert isinstance(settings, Settings)
    if not settings.retention:
        return None
    return RetentionPurge(timedelta(seconds=settings.retention), settings.keep_daily)
