"""`trail publish`: send one message to a running collector's /faye, as an app server would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trailcli.cli.common import cli_errors, warn

DEFAULT_URL = "http://127.0.0.1:9292/faye"


def publish(
    channel: Annotated[str, typer.Argument(help="Channel to publish on, e.g. /chat/room1.")],
    data: Annotated[str, typer.Argument(help='The message data as JSON, e.g. \'{"text": "hi"}\'.')],
    *,
    url: Annotated[
        str, typer.Option("--url", envvar="TRAIL_URL", help="The collector's Bayeux endpoint.")
    ] = DEFAULT_URL,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file", help="File holding the collector's secret (else TRAIL_SECRET)."
        ),
    ] = None,
    secret: Annotated[
        str | None, typer.Option(envvar="TRAIL_SECRET", hidden=True, help="The collector's secret.")
    ] = None,
) -> None:
    """Publish a message to every subscriber of CHANNEL (needs the secret unless --open-publish)."""
    with cli_errors():
        from trailcli.client import publish as bayeux_publish

        key = bayeux_publish.read_secret(secret_file) if secret_file else secret
        bayeux_publish.publish(url, channel, bayeux_publish.parse_data(data), key)
        warn(f"Published to {channel}.")
