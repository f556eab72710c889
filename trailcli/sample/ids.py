"""Vectorised random identifiers: UUID-4 tokens as fixed-width byte strings, and Arrow strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DASH = ord("-")
_GROUPS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))


def uuid4s(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` random UUID-4 strings (`8-4-4-4-12` lower-case hex) as a numpy `S36` array."""
    nibbles = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nibbles[:, 12] = 4
    nibbles[:, 16] = 8 | (nibbles[:, 16] & 3)
    chars = _HEX[nibbles]
    out = np.full((n, 36), _DASH, dtype=np.uint8)
    start = 0
    for lo, hi in _GROUPS:
        out[:, lo:hi] = chars[:, start : start + hi - lo]
        start += hi - lo
    return out.view("S36").ravel()


def prefix(tokens: np.ndarray, width: int) -> np.ndarray:
    """The first `width` characters of each `S36` token (an `S<width>` array)."""
    raw = tokens.view(np.uint8).reshape(len(tokens), 36)[:, :width]
    return np.ascontiguousarray(raw).view(f"S{width}").ravel()


def arrow_strings(values: np.ndarray) -> pa.Array:
    """A numpy bytes array as an Arrow `string` array."""
    return pa.array(values, type=pa.binary()).cast(pa.string())


def numeric_strings(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Integers as Arrow strings (`user_id`s); null where `missing` is true."""
    text = pa.array(values).cast(pa.string())
    if missing is None:
        return text
    return pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), text)
