"""Bayeux channel names: grammar, reserved prefixes and the patterns a publish fans out to."""

from __future__ import annotations

import re

_SEGMENT = r"[A-Za-z0-9\-_!~()$@]+"
_NAME = re.compile(rf"(?:/{_SEGMENT})+", re.ASCII)
_PATTERN = re.compile(rf"(?:/{_SEGMENT})*/\*\*?", re.ASCII)


def is_name(channel: object) -> bool:
    """A literal channel name such as `/chat/room1` (no wildcards)."""
    return isinstance(channel, str) and _NAME.fullmatch(channel) is not None


def is_pattern(channel: object) -> bool:
    """A subscription pattern: a literal prefix ending in `/*` or `/**`."""
    return isinstance(channel, str) and _PATTERN.fullmatch(channel) is not None


def is_valid(channel: object) -> bool:
    """A name or a pattern: anything a client may subscribe to, grammar-wise."""
    return is_name(channel) or is_pattern(channel)


def first_segment(channel: str) -> str:
    """The first segment of a channel: `meta` for `/meta/connect`."""
    return channel[1:].split("/", 1)[0]


def is_meta(channel: str) -> bool:
    return first_segment(channel) == "meta"


def is_service(channel: str) -> bool:
    return first_segment(channel) == "service"


def is_server_only(channel: str) -> bool:
    """`/trail/**`: the collector's own live channels, published only by the server."""
    return first_segment(channel) == "trail"


def expand(channel: str) -> list[str]:
    """Every subscription that receives a publish on `channel`.

    `/a/b/c` gives `/a/b/c`, `/a/b/*` and `/**`, `/a/**`, `/a/b/**`. The global `/**` is left
    out for the server's `/trail/**` channels, so reading them always takes a subscription that
    names `/trail` (which the presence extension guards with the read token).
    """
    segments = channel[1:].split("/")
    patterns = [channel, "/" + "/".join([*segments[:-1], "*"])]
    for depth in range(len(segments)):
        prefix = "/".join(segments[:depth])
        patterns.append(f"/{prefix}/**" if prefix else "/**")
    if is_server_only(channel):
        patterns.remove("/**")
    return patterns
