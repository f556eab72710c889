"""Signed user claims: a user id signed together with the visit it binds.

A claim is `<user_id>.<visit_token>.<hex HMAC-SHA256(secret, "<visit_token>\\0<user_id>")>`. It
binds that visit only: a correctly signed claim presented for any other visit is refused, so one
person's token cannot claim another person's visit. (The NUL byte keeps the signed text apart
from anything the older format, `<user_id>.<hex HMAC-SHA256(secret, user_id)>`, signs: no user id
holds one.) The older, unscoped format is accepted only when the collector is told to
(`accept-unscoped-user-tokens`), for the time an app server needs to move to the new one.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

MAX_USER_ID = 255
# why a claim was refused (the `reason` label of trail_user_tokens_refused_total)
BAD_SIGNATURE = "bad_signature"  # signed with another secret, altered, or not a token at all
OTHER_VISIT = "other_visit"  # correctly signed, but for another visit than the one it came with
UNSCOPED = "unscoped"  # correctly signed in the older format, which names no visit


def sign_user_token(user_id: str, visit_token: str, secret: str) -> str:
    """The claim binding `visit_token` to `user_id`, as the app server makes it."""
    return f"{user_id}.{visit_token}.{_mac(secret, _scoped_text(user_id, visit_token))}"


def sign_unscoped_user_token(user_id: str, secret: str) -> str:
    """The older claim `<user_id>.<hex HMAC-SHA256(secret, user_id)>`, which names no visit."""
    return f"{user_id}.{_mac(secret, user_id)}"


@dataclass(frozen=True)
class ClaimCheck:
    """What a claim proves: the user id to bind (None when refused) and, if refused, why."""

    user_id: str | None = None
    refused: str | None = None
    unscoped: bool = False  # accepted in the older format


def check_user_token(
    token: object, visit_token: str | None, secret: str | None, *, accept_unscoped: bool = False
) -> ClaimCheck:
    """Check a claim presented together with `visit_token` (the visit the request names)."""
    if not secret or not isinstance(token, str):
        return ClaimCheck(refused=BAD_SIGNATURE)
    scoped = _scoped_claim(token, secret)
    if scoped is not None:
        user_id, signed_visit = scoped
        if signed_visit != visit_token:  # tokens are not secret: a plain comparison
            return ClaimCheck(refused=OTHER_VISIT)
        return ClaimCheck(user_id=user_id)
    unscoped_user = _unscoped_claim(token, secret)
    if unscoped_user is None:
        return ClaimCheck(refused=BAD_SIGNATURE)
    if not accept_unscoped:
        return ClaimCheck(refused=UNSCOPED)
    return ClaimCheck(user_id=unscoped_user, unscoped=True)


def _scoped_claim(token: str, secret: str) -> tuple[str, str] | None:
    """(user id, visit token) of a correctly signed claim in the current format."""
    parts = token.rsplit(".", 2)
    if len(parts) != 3:
        return None
    user_id, visit_token, mac = parts
    if not _valid_user_id(user_id) or not visit_token:
        return None
    expected = _mac(secret, _scoped_text(user_id, visit_token))
    return (user_id, visit_token) if _same(mac, expected) else None


def _unscoped_claim(token: str, secret: str) -> str | None:
    user_id, _, mac = token.rpartition(".")
    if not _valid_user_id(user_id):
        return None
    return user_id if _same(mac, _mac(secret, user_id)) else None


def _scoped_text(user_id: str, visit_token: str) -> str:
    return visit_token + "\0" + user_id


def _valid_user_id(user_id: str) -> bool:
    return 0 < len(user_id) <= MAX_USER_ID


def _mac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.lower().encode("utf-8", "replace"), expected.encode())


def count(metrics: Any, check: ClaimCheck, where: str) -> None:
    """Count a refused claim by reason, and an accepted one in the older format, per place
    (`visit`, `handshake`, `identify`) in the collector's metrics."""
    if check.refused is not None:
        metrics.inc("user_tokens_refused_total", {"reason": check.refused, "where": where})
    elif check.unscoped:
        metrics.inc("user_tokens_unscoped_total", {"where": where})
