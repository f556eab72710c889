"""A small long-polling Bayeux client that follows one person live on a collector's /trail channels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin

from trailcli.errors import TrailError, UsageError
from trailcli.reports.replay import Person

CHANNELS = ("/trail/events", "/trail/presence")
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


class BayeuxFollower:
    """Handshake, subscribe to the live channels with the read token, then connect in a loop."""

    def __init__(self, session: Any, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.token = token
        self.client_id: str | None = None
        self.resubscribed = False  # set when a connect had to handshake again

    async def _post(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import aiohttp

        try:
            async with self.session.post(self.url, json=messages) as response:
                if response.status >= 400:
                    raise FollowError(
                        f"{self.url} answered HTTP {response.status}.",
                        "check the --follow URL (the collector's Bayeux endpoint, e.g. "
                        "http://HOST:PORT/faye)",
                        retryable=response.status >= 500,
                    )
                replies = await response.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise FollowError(
                f"Cannot reach {self.url}: {str(exc).rstrip('.') or type(exc).__name__}.",
                "is 'trail collect' running there?",
                retryable=True,
            ) from exc
        except ValueError as exc:
            raise FollowError(
                f"{self.url} did not answer Bayeux JSON.", "check the URL", retryable=True
            ) from exc
        if not isinstance(replies, list):
            raise FollowError(f"{self.url} did not answer a Bayeux message list.", "check the URL")
        return [r for r in replies if isinstance(r, dict)]

    def _ext(self) -> dict[str, Any]:
        return {"trail": {"token": self.token}}

    async def handshake(self) -> None:
        replies = await self._post(
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
        await self.subscribe()

    async def subscribe(self) -> None:
        messages = [
            {
                "channel": "/meta/subscribe",
                "clientId": self.client_id,
                "subscription": channel,
                "ext": self._ext(),
            }
            for channel in CHANNELS
        ]
        for reply in await self._post(messages):
            if reply.get("channel") == "/meta/subscribe" and not reply.get("successful"):
                raise UsageError(
                    f"The collector refused to stream {reply.get('subscription')}: "
                    f"{reply.get('error')}.",
                    "pass the collector's TRAIL_API_TOKEN with --token",
                )

    async def connect(self) -> list[dict[str, Any]]:
        """One held connect; returns the data messages it delivered (re-handshakes if told to,
        which sets `resubscribed`: messages published meanwhile were not queued for us)."""
        replies = await self._post(
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
            await self.handshake()
            self.resubscribed = True
        return data

    async def wait_committed(self, max_wait: float = COMMIT_WAIT_SECONDS) -> bool:
        """Wait until the collector has committed to its tables everything it accepted before
        this call (its /health `wal_lag_seconds`, the age of the oldest uncommitted record, is
        younger than the wait). False when it could not tell within `max_wait` seconds."""
        started = time.monotonic()
        health = urljoin(self.url, "/health")
        while time.monotonic() - started < max_wait:
            try:
                async with self.session.get(health) as response:
                    lag = (await response.json(content_type=None)).get("wal_lag_seconds")
            except Exception:  # no /health there (a proxy, another server): cannot tell
                return False
            if isinstance(lag, (int, float)) and lag < time.monotonic() - started:
                return True
            await asyncio.sleep(0.2)
        return False


def _reply(replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    for reply in replies:
        if reply.get("channel") == channel:
            return reply
    raise FollowError(f"No {channel} reply from the collector.", "check the --follow URL")


# Called with `True` once the first subscription is in place, `False` after each reconnection:
# live messages from then on reach `on_message`, what came before must be read from the store.
OnSubscribed = Callable[[bool], Awaitable[None] | None]


async def follow(
    url: str,
    token: str,
    person: Person,
    on_message: Callable[[str, dict[str, Any]], None],
    on_subscribed: OnSubscribed | None = None,
    on_status: Callable[[str], None] | None = None,
    max_messages: int | None = None,
) -> int:
    """Hand `on_message` (channel, data) each live event and presence change of `person`;
    returns how many it got.

    Runs until interrupted, or until `max_messages` were delivered. A failure before the first
    subscription ends it (a wrong URL or token); after that, a lost connection or a restarted
    collector is retried with growing pauses (said through `on_status`), then subscribed again.
    """
    import aiohttp

    say = on_status or (lambda _text: None)
    seen = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = BayeuxFollower(session, url, token)
        await client.handshake()
        await _subscribed(client, on_subscribed, True)
        retry = FIRST_RETRY_SECONDS
        while max_messages is None or seen < max_messages:
            try:
                messages = await client.connect()
            except FollowError as exc:
                if not exc.retryable:
                    raise
                await _reconnect(client, exc, retry, say)
                retry = FIRST_RETRY_SECONDS
                await _subscribed(client, on_subscribed, False)
                continue
            if client.resubscribed:
                client.resubscribed = False
                say(f"The collector at {url} restarted; subscribed again.")
                await _subscribed(client, on_subscribed, False)
            for message in messages:
                data = message.get("data")
                if isinstance(data, dict) and person.matches(data):
                    on_message(str(message["channel"]), data)
                    seen += 1
    return seen


async def _reconnect(
    client: BayeuxFollower, lost: FollowError, first_pause: float, say: Callable[[str], None]
) -> None:
    """Handshake and subscribe again, pausing 1 s, 2 s, 4 s ... (at most 30 s) between tries."""
    pause, reason = first_pause, lost.message.rstrip(".")
    while True:
        say(f"Lost the collector ({reason}); reconnecting in {pause:g} s (Ctrl-C to stop).")
        await asyncio.sleep(pause)
        try:
            await client.handshake()
        except FollowError as exc:
            if not exc.retryable:
                raise
            pause, reason = min(pause * 2, MAX_RETRY_SECONDS), exc.message.rstrip(".")
            continue
        say(f"Reconnected to {client.url}.")
        return


async def _subscribed(client: BayeuxFollower, callback: OnSubscribed | None, first: bool) -> None:
    """Let the store catch up with what the collector accepted, then run `callback`."""
    if callback is None:
        return
    await client.wait_committed()
    result = callback(first)
    if result is not None:
        await result
