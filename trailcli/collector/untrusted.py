"""Checks on what a request's bytes may ask of the parser: how deep its JSON nests, which
charset it names. Both answer before anything recursive or a codec lookup can fail."""

from __future__ import annotations

import codecs
import functools
from typing import Any

DEFAULT_MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests lists and objects more than `limit` levels deep.

    Iterative, so a value of any depth is measured without recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


@functools.lru_cache(maxsize=64)
def known_charset(name: str) -> bool:
    """Whether Python has a text codec for the charset a Content-Type names (bytes-to-bytes
    codecs such as `base64` have names too, but are not charsets)."""
    try:
        return isinstance(codecs.decode(b"", name.strip().strip('"')), str)
    except Exception:  # unknown, or a codec that fails on input (zlib, bz2, ...): not a charset
        return False
