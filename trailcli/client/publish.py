"""Back-end publishing: one message to a running `/faye`, posted the way Faye apps' servers do it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from trailcli import channels
from trailcli.client.http import bearer, send
from trailcli.errors import TrailError, UsageError


def parse_data(text: str) -> Any:
    """The JSON payload given on the command line."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"The data is not valid JSON: {exc}.",
            'quote it for the shell, e.g. \'{"text": "hi"}\' or \'"a string"\'',
        ) from None


def check_channel(channel: str) -> None:
    """Refuse what the server would refuse anyway, before any network call."""
    if not channels.is_name(channel):
        raise UsageError(
            f"Invalid channel {channel!r}.",
            "a channel is /segment[/segment...] of letters, digits and -_!~()$@, without wildcards",
        )
    if channels.is_meta(channel) or channels.is_server_only(channel):
        raise UsageError(
            f"{channel} cannot be published to.",
            "/meta/** is the protocol's and /trail/** only the collector's own",
        )


def read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(
            f"Cannot read secret file {path}: {exc.strerror}.", "check the path"
        ) from None
    if not secret:
        raise UsageError(f"Secret file {path} is empty.", "put the secret in it")
    return secret


def publish(url: str, channel: str, data: Any, secret: str | None, timeout: float = 10.0) -> dict:
    """POST `message={"channel", "data"}` form-encoded, with the secret as a bearer token.

    Returns the server's acknowledgement; raises TrailError when the server is unreachable or
    refuses the message (the Bayeux error is in the message).
    """
    check_channel(channel)
    body = urlencode({"message": json.dumps({"channel": channel, "data": data})}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **bearer(secret)}
    answer = send(url, data=body, headers=headers, timeout=timeout)
    if not answer.ok:
        raise TrailError(f"{url} answered HTTP {answer.status}: {answer.text()}", "check --url")
    return _acknowledgement(url, answer.body)


def _acknowledgement(url: str, raw: bytes) -> dict:
    try:
        replies = json.loads(raw)
        reply = replies[0]
    except (ValueError, IndexError, KeyError, TypeError):
        raise TrailError(f"{url} did not answer as a Bayeux server.", "check --url") from None
    if not isinstance(reply, dict) or reply.get("successful") is not True:
        error = reply.get("error") if isinstance(reply, dict) else None
        raise TrailError(f"The server refused the message: {error}", _hint(error))
    return reply


def _hint(error: Any) -> str:
    text = str(error)
    if "Authentication required" in text:
        return "pass --secret-file (or set TRAIL_SECRET) with the collector's secret"
    return "see docs/bayeux.md for the error codes"
