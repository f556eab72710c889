"""The guard of the live channels: subscribing to `/trail/**` (or `/**`) needs the API token."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from trailcli.collector import identity
from trailcli.collector.bayeux.engine import Engine
from trailcli.collector.metrics import Metrics

# Set by the guard on a handshake, read by the tracker's `client_opened` in the same task: whether
# the handshake carried the API token (the engine strips the token before observers see `ext`).
handshake_has_token: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "trail_handshake_has_token", default=False
)


def covers_live_channels(pattern: str) -> bool:
    """Whether a subscription could receive `/trail/**` messages (and so needs the API token)."""
    return pattern == "/**" or pattern == "/trail" or pattern.startswith("/trail/")


class LiveChannelGuard:
    """Bayeux extension: subscribing to `/trail/**` (or `/**`) needs the API token in
    `ext.trail.token`, on that subscribe or on the client's handshake. `watchers` are the
    sessions that showed the token (shared with the tracker, which adds those whose handshake
    did)."""

    def __init__(
        self,
        engine: Engine,
        api_token: str | None,
        watchers: set[str],
        metrics: Metrics,
        remote: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """`remote` asks the cluster whether a session opened on another node showed the token
        at its handshake."""
        self.remote = remote
        self.engine = engine
        self.api_token = api_token
        self.watchers = watchers
        self.metrics = metrics

    async def incoming(self, message: dict[str, Any], context: Any) -> None:
        channel = message.get("channel")
        if channel == "/meta/handshake":
            handshake_has_token.set(self._has_token(message))
        elif channel == "/meta/subscribe":
            client_id = message.get("clientId")
            if (
                self.remote is not None
                and isinstance(client_id, str)
                and client_id not in self.watchers
                and self._guarded(message)
                and await self.remote(client_id)
            ):
                self.watchers.add(client_id)
            self._check_subscribe(message)

    def _has_token(self, message: dict[str, Any]) -> bool:
        ext = message.get("ext")
        trail = ext.get("trail") if isinstance(ext, dict) else None
        token = trail.get("token") if isinstance(trail, dict) else None
        return isinstance(token, str) and identity.tokens_equal(token, self.api_token)

    def _guarded(self, message: dict[str, Any]) -> list[str]:
        wanted = message.get("subscription")
        patterns = wanted if isinstance(wanted, list) else [wanted]
        return [p for p in patterns if isinstance(p, str) and covers_live_channels(p)]

    def _check_subscribe(self, message: dict[str, Any]) -> None:
        guarded = self._guarded(message)
        if not guarded:
            return
        client_id = message.get("clientId")
        if client_id in self.watchers:
            return
        if self._has_token(message) and isinstance(client_id, str):
            if client_id in self.engine.clients:
                self.watchers.add(client_id)
            return
        self.metrics.inc("presence_refused_watchers_total")
        message["error"] = (
            f"403:{guarded[0]}:Forbidden channel (the API token is required in ext.trail.token)"
        )
