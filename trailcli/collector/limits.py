"""Per-address limits: a token bucket of handshakes and a count of live sessions per client address.

The engine asks an `AddressLimiter`; `MemoryAddressLimiter` keeps one node's counts. A limiter
shared by the nodes of a cluster (kept in Redis, say) implements the same four methods.
Addresses are grouped as a network assigns them: an IPv6 client is limited by its /64, since one
host commonly holds a whole /64.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from trailcli.collector.lru import LRU


class AddressLimiter(Protocol):
    """What the Bayeux engine asks before opening a session, and tells as sessions come and go."""

    def take_handshake(self, key: str, now: float) -> float:
        """Take one handshake from `key`'s allowance at time `now` (seconds): 0.0 when allowed,
        else how many seconds until the next one would be."""
        ...

    def session_opened(self, key: str) -> None: ...

    def session_closed(self, key: str) -> None: ...

    def sessions(self, key: str) -> int:
        """Live sessions opened from `key`."""
        ...


def address_key(address: str | None) -> str | None:
    """The key an address is limited under: an IPv4 address as is, an IPv6 address's /64
    network (an IPv4-mapped one as IPv4); None when there is no address (an in-process caller)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class _Bucket:
    tokens: float
    at: float


class MemoryAddressLimiter:
    """One node's per-address counts: a bucket of up to `burst` handshakes, refilled at
    `per_minute` a minute, and the live sessions.

    Buckets are kept for the `max_addresses` most recent addresses (a forgotten one starts full
    again); session counts for every address with a live session (bounded by the sessions).
    """

    def __init__(self, per_minute: float, burst: int, max_addresses: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: LRU[str, _Bucket] = LRU(max_addresses)
        self._sessions: dict[str, int] = {}

    def take_handshake(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets.put(key, bucket)
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else float("inf")

    def session_opened(self, key: str) -> None:
        self._sessions[key] = self._sessions.get(key, 0) + 1

    def session_closed(self, key: str) -> None:
        left = self._sessions.get(key, 0) - 1
        if left > 0:
            self._sessions[key] = left
        else:
            self._sessions.pop(key, None)

    def sessions(self, key: str) -> int:
        return self._sessions.get(key, 0)
