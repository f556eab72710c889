"""A small long-polling Bayeux client that follows a collector's live `/trail` channels."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from trailcli.client.http import send
from trailcli.errors import TrailError, UsageError

CHANNELS = ("/trail/events", "/trail/presence")
HOLD_SECONDS = 120.0  # longer than any connect the collector holds (its --timeout, 45 s)


class FollowError(TrailError):
    """The collector could not be followed (unreachable, refused the token, broke the protocol)."""


class Follower:
    """Handshake, subscribe to the live channels with the read token, then connect in a loop."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.client_id: str | None = None

    def _post(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps(messages).encode()
        headers = {"Content-Type": "application/json"}
        answer = send(self.url, data=body, headers=headers, timeout=HOLD_SECONDS)
        if not answer.ok:
            raise FollowError(
                f"{self.url} answered HTTP {answer.status}.",
                "check the --follow URL (the collector's Bayeux endpoint, e.g. "
                "http://HOST:PORT/faye)",
            )
        replies = answer.json("Bayeux JSON")
        if not isinstance(replies, list):
            raise FollowError(f"{self.url} did not answer a Bayeux message list.", "check the URL")
        return [r for r in replies if isinstance(r, dict)]

    def _ext(self) -> dict[str, Any]:
        return {"trail": {"token": self.token}}

    def handshake(self) -> None:
        replies = self._post(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                    "ext": self._ext(),
                }
            ]
        )
        reply = _reply(replies, "/meta/handshake")
        if not reply.get("successful") or not reply.get("clientId"):
            raise FollowError(f"The handshake was refused: {reply.get('error')}.", "check --token")
        self.client_id = str(reply["clientId"])
        self.subscribe()

    def subscribe(self) -> None:
        messages = [
            {
                "channel": "/meta/subscribe",
                "clientId": self.client_id,
                "subscription": channel,
                "ext": self._ext(),
            }
            for channel in CHANNELS
        ]
        for reply in self._post(messages):
            if reply.get("channel") == "/meta/subscribe" and not reply.get("successful"):
                raise UsageError(
                    f"The collector refused to stream {reply.get('subscription')}: "
                    f"{reply.get('error')}.",
                    "pass the collector's TRAIL_API_TOKEN with --token",
                )

    def connect(self) -> list[dict[str, Any]]:
        """One held connect; returns the data messages it delivered (re-handshakes if told to)."""
        replies = self._post(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": self.client_id,
                    "connectionType": "long-polling",
                }
            ]
        )
        data = [r for r in replies if r.get("channel") in CHANNELS and "data" in r]
        meta = [r for r in replies if r.get("channel") == "/meta/connect"]
        if meta and not meta[0].get("successful"):
            advice = meta[0].get("advice") or {}
            if advice.get("reconnect") == "none":
                raise FollowError("The collector ended the stream.", "start --follow again")
            self.handshake()
        return data


def _reply(replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    for reply in replies:
        if reply.get("channel") == channel:
            return reply
    raise FollowError(f"No {channel} reply from the collector.", "check the --follow URL")


def messages(
    url: str, token: str, on_ready: Callable[[], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Every message the collector delivers on its live channels, as they come, until the caller
    stops (`on_ready` is called once the subscriptions hold)."""
    follower = Follower(url, token)
    follower.handshake()
    if on_ready is not None:
        on_ready()
    while True:
        yield from follower.connect()
