"""Which field names are secret-like, and copies of URLs and JSON values without their secrets
(for the access log and for Bayeux deliveries)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote

REDACTED = "[redacted]"
# words that make a field name secret-like (`auth_token`, `ext.auth`, `trail.token`,
# `clientSecret`, `X-Api-Key`, ...); `author` or `keyboard` are not
_SECRET_WORDS = frozenset(
    ("token", "tokens", "auth", "authorization", "authentication", "secret", "secrets",
     "password", "passwd", "pwd", "credential", "credentials", "signature", "apikey", "cookie")
)  # fmt: skip
_SECRET_PAIRS = frozenset((("api", "key"), ("private", "key"), ("access", "key")))
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
MAX_DEPTH = 64  # deeper than this is not looked into: replaced as a whole


def is_secret_name(name: object) -> bool:
    """Whether a field called `name` may hold a secret (token, auth, secret, password, key...)."""
    if not isinstance(name, str):
        return False
    words = [w.lower() for w in _WORDS.findall(name)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def without_secrets(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value without the object fields named like secrets, at any depth."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {k: without_secrets(v, depth + 1) for k, v in value.items() if not is_secret_name(k)}
    if isinstance(value, list):
        return [without_secrets(v, depth + 1) for v in value]
    return value


def redacted_json(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value with the values of secret-like fields replaced by `[redacted]`."""
    if depth > MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_name(k) else redacted_json(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted_json(v, depth + 1) for v in value]
    return value


def redacted_target(target: str) -> str:
    """A request target (path and query) with the values of secret-like query parameters, and of
    secret-like fields inside JSON parameters (a JSON-P `message`), replaced by `[redacted]`.
    Returned unchanged when it holds nothing to redact."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    changed = False
    pairs = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        clean = _redacted_parameter(name, value)
        changed = changed or clean != value
        pairs.append((name, clean))
    if not changed:
        return target
    safe = "/:,[]{}\"'@!$()*;"
    return path + "?" + "&".join(f"{quote(n, safe=safe)}={quote(v, safe=safe)}" for n, v in pairs)


def _redacted_parameter(name: str, value: str) -> str:
    if is_secret_name(name):
        return REDACTED
    if not value.lstrip().startswith(("{", "[")):
        return value
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return value
    clean = redacted_json(parsed)
    return value if clean == parsed else json.dumps(clean, separators=(",", ":"))
