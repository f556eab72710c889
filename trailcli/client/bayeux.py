"""A small long-polling Bayeux client that follows one person live on a collector's /trail channels."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from trailcli.client.http import Unreachable, send
from trailcli.errors import TrailError, UsageError

CHANNELS = ("/trail/events", "/trail/presence")
HOLD_SECONDS = 120.0  # longer than any connect the collector holds (its --timeout, 45 s)
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0
COMMIT_WAIT_SECONDS = 10.0  # longest wait for the collector to commit what it accepted


class FollowError(TrailError):
    """The collector could not be followed (unreachable, refused the token, broke the protocol).

    `retryable` errors (the connection dropped, the collector restarted or answered 5xx) are
    retried once the stream has started; the others end it.
    """

    def __init__(self, message: str, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint)
        self.retryable = retryable


class Follower:
    """Handshake, subscribe to the live channels with the read token, then connect in a loop."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.client_id: str | None = None
        self.resubscribed = False  # set when a connect had to handshake again

    def _post(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps(messages).encode()
        headers = {"Content-Type": "application/json"}
        try:
            answer = send(self.url, data=body, headers=headers, timeout=HOLD_SECONDS)
        except Unreachable as exc:
            raise FollowError(exc.message, "is 'trail collect' running there?", True) from exc
        if not answer.ok:
            raise FollowError(
                f"{self.url} answered HTTP {answer.status}.",
                "check the --follow URL (the collector's Bayeux endpoint, e.g. "
                "http://HOST:PORT/faye)",
                retryable=answer.status >= 500,
            )
        try:
            replies = json.loads(answer.body)
        except ValueError as exc:
            raise FollowError(
                f"{self.url} did not answer Bayeux JSON.", "check the URL", retryable=True
            ) from exc
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
        """One held connect; returns the data messages it delivered (re-handshakes if told to,
        which sets `resubscribed`: messages published meanwhile were not queued for us)."""
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
            self.resubscribed = True
        return data

    def wait_committed(self, max_wait: float = COMMIT_WAIT_SECONDS) -> bool:
        """Wait until the collector has committed to its tables everything it accepted before
        this call (its /health `wal_lag_seconds`, the age of the oldest uncommitted record, is
        younger than the wait). False when it could not tell within `max_wait` seconds."""
        started = time.monotonic()
        health = urljoin(self.url, "/health")
        while time.monotonic() - started < max_wait:
            try:
                lag = send(health, timeout=max_wait).json().get("wal_lag_seconds")
            except Exception:  # no /health there (a proxy, another server): cannot tell
                return False
            if isinstance(lag, (int, float)) and lag < time.monotonic() - started:
                return True
            time.sleep(0.2)
        return False


def _reply(replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    for reply in replies:
        if reply.get("channel") == channel:
            return reply
    raise FollowError(f"No {channel} reply from the collector.", "check the --follow URL")


# Called with `True` once the first subscription is in place, `False` after each reconnection:
# live messages from then on reach `on_message`, what came before must be read from the store.
OnSubscribed = Callable[[bool], None]


def follow(
    url: str,
    token: str,
    wanted: Callable[[dict[str, Any]], bool],
    on_message: Callable[[str, dict[str, Any]], None],
    on_subscribed: OnSubscribed | None = None,
    on_status: Callable[[str], None] | None = None,
    max_messages: int | None = None,
) -> int:
    """Hand `on_message` (channel, data) each live event and presence change whose data is
    `wanted` (one person's); returns how many it got.

    Runs until interrupted, or until `max_messages` were delivered. A failure before the first
    subscription ends it (a wrong URL or token); after that, a lost connection or a restarted
    collector is retried with growing pauses (said through `on_status`), then subscribed again.
    """
    say = on_status or (lambda _text: None)
    seen = 0
    client = Follower(url, token)
    client.handshake()
    _subscribed(client, on_subscribed, True)
    while max_messages is None or seen < max_messages:
        try:
            messages = client.connect()
        except FollowError as exc:
            if not exc.retryable:
                raise
            _reconnect(client, exc, FIRST_RETRY_SECONDS, say)
            _subscribed(client, on_subscribed, False)
            continue
        if client.resubscribed:
            client.resubscribed = False
            say(f"The collector at {url} restarted; subscribed again.")
            _subscribed(client, on_subscribed, False)
        for message in messages:
            data = message.get("data")
            if isinstance(data, dict) and wanted(data):
                on_message(str(message["channel"]), data)
                seen += 1
    return seen


def _reconnect(
    client: Follower, lost: FollowError, first_pause: float, say: Callable[[str], None]
) -> None:
    """Handshake and subscribe again, pausing 1 s, 2 s, 4 s ... (at most 30 s) between tries."""
    pause, reason = first_pause, lost.message.rstrip(".")
    while True:
        say(f"Lost the collector ({reason}); reconnecting in {pause:g} s (Ctrl-C to stop).")
        time.sleep(pause)
        try:
            client.handshake()
        except FollowError as exc:
            if not exc.retryable:
                raise
            pause, reason = min(pause * 2, MAX_RETRY_SECONDS), exc.message.rstrip(".")
            continue
        say(f"Reconnected to {client.url}.")
        return


def _subscribed(client: Follower, callback: OnSubscribed | None, first: bool) -> None:
    """Let the store catch up with what the collector accepted, then run `callback`."""
    if callback is None:
        return
    client.wait_committed()
    callback(first)
