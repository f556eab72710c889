"""A small long-polling Bayeux client that follows one person live on a collector's /trail channels."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from trailcli.errors import TrailError, UsageError
from trailcli.reports.replay import Person, live_row

CHANNELS = ("/trail/events", "/trail/presence")


class FollowError(TrailError):
    """The collector could not be followed (unreachable, refused the token, broke the protocol)."""


class BayeuxFollower:
    """Handshake, subscribe to the live channels with the read token, then connect in a loop."""

    def __init__(self, session: Any, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.token = token
        self.client_id: str | None = None

    async def _post(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import aiohttp

        try:
            async with self.session.post(self.url, json=messages) as response:
                if response.status >= 400:
                    raise FollowError(
                        f"{self.url} answered HTTP {response.status}.",
                        "check the --follow URL (the collector's Bayeux endpoint, e.g. "
                        "http://HOST:PORT/faye)",
                    )
                replies = await response.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise FollowError(
                f"Cannot reach {self.url}: {exc}.", "is 'trail collect' running there?"
            ) from exc
        except ValueError as exc:
            raise FollowError(f"{self.url} did not answer Bayeux JSON.", "check the URL") from exc
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
        """One held connect; returns the data messages it delivered (re-handshakes if told to)."""
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
        return data


def _reply(replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    for reply in replies:
        if reply.get("channel") == channel:
            return reply
    raise FollowError(f"No {channel} reply from the collector.", "check the --follow URL")


async def follow(
    url: str,
    token: str,
    person: Person,
    on_row: Callable[[dict[str, Any]], None],
    max_rows: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Print (via `on_row`) each live event and presence change of `person`; returns rows seen.

    Runs until interrupted, or until `max_rows` rows were delivered.
    """
    import aiohttp

    seen = 0
    previous: datetime | None = None
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = BayeuxFollower(session, url, token)
        await client.handshake()
        if on_ready is not None:
            on_ready()
        while max_rows is None or seen < max_rows:
            for message in await client.connect():
                data = message.get("data")
                if not isinstance(data, dict) or not person.matches(data):
                    continue
                row = live_row(str(message["channel"]), data, previous)
                previous = row["time"] or previous
                on_row(row)
                seen += 1
    return seen
