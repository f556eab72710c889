"""Bounded maps for collector state: least recently used entries go first, optional time-to-live."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict of at most `maxsize` entries; `get` and `put` make an entry the most recent."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K) -> V | None:
        try:
            self._data.move_to_end(key)
        except KeyError:
            return None
        return self._data[key]

    def put(self, key: K, value: V) -> None:
        if key in self._data:
            self._data.move_to_end(key)
        self._data[key] = value
        self._evict()

    def add_if_absent(self, key: K, value: V) -> bool:
        """Insert `key` unless present; True when it was inserted (the first writer wins)."""
        data = self._data
        if key in data:
            data.move_to_end(key)
            return False
        data[key] = value  # a new key goes last: no move needed
        if len(data) > self.maxsize:
            self._evict()
        return True

    def _evict(self) -> None:
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)
            self.evictions += 1

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)
