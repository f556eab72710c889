"""Dashboard sign-in: stateless session cookies signed with a key made from the two secrets.

The browser signs in once with `TRAIL_API_TOKEN` and gets a cookie holding only an expiry, a
random nonce and an HMAC of both; the token itself never leaves the sign-in request. The signing
key is derived from `TRAIL_SECRET` (the token when no secret is set) and the token, so changing
either signs everybody out, and any node with the same secrets accepts the cookie. Pure: the
clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "trail_dashboard"
VERSION = "v1"
MAX_TOKEN_LENGTH = 1024


def signing_key(secret: str | None, api_token: str) -> bytes:
    """The key session cookies are signed with: HMAC(secret, purpose + token)."""
    base = (secret or api_token).encode()
    return hmac.new(
        base, b"trail dashboard session\0" + api_token.encode(), hashlib.sha256
    ).digest()


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, now: float, lifetime: float) -> str:
    """A new cookie value valid for `lifetime` seconds from `now`."""
    body = f"{VERSION}.{int(now + lifetime)}.{secrets.token_hex(16)}"
    return f"{body}.{_mac(key, body)}"


def expiry(value: str | None, key: bytes, now: float) -> float | None:
    """When the session of a cookie value ends, or None if it is not a valid, live session."""
    if not value or len(value) > 200:
        return None
    body, _, mac = value.rpartition(".")
    parts = body.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1].isdigit():
        return None
    if not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
        return None
    ends = float(parts[1])
    return ends if ends > now else None


@dataclass
class _Failures:
    count: int
    since: float


class SignInLimiter:
    """At most `limit` wrong tokens per client address per `window` seconds, for a bounded
    number of addresses (the oldest forgotten first)."""

    def __init__(self, limit: int = 10, window: float = 60.0, addresses: int = 10_000) -> None:
        self.limit, self.window, self.addresses = limit, window, addresses
        self._seen: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, address: str, now: float | None = None) -> float:
        """Seconds until `address` may try again (0 when it may now)."""
        now = time.monotonic() if now is None else now
        entry = self._seen.get(address)
        if entry is None or now - entry.since >= self.window:
            return 0.0
        return self.window - (now - entry.since) if entry.count >= self.limit else 0.0

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entry = self._seen.get(address)
        if entry is None or now - entry.since >= self.window:
            entry = _Failures(0, now)
        entry.count += 1
        self._seen[address] = entry
        self._seen.move_to_end(address)
        while len(self._seen) > self.addresses:
            self._seen.popitem(last=False)
