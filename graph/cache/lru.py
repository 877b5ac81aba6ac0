"""BoundedLRU: values by key within a count and a byte bound, the least recently used out first.

What every per-worker copy of answers needs (the cache's local copy, the REST fast path's
prebuilt responses, the GraphQL response cache): memory that stays bounded whatever clients
ask, and a value larger than the whole bound is not kept rather than pushing everything out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

__all__ = ["BoundedLRU"]


class BoundedLRU(Generic[K, V]):
    """At most ``max_entries`` values and ``max_bytes`` of their sizes (as the caller counts
    them); reading a value makes it the most recently used."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._values: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.bytes = 0  # what the values count for

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[K]:
        """The keys, least recently used first."""
        return iter(self._values)

    def values(self) -> Iterator[V]:
        """The values, least recently used first (reading them does not reorder them)."""
        return (value for value, _ in self._values.values())

    def get(self, key: K) -> V | None:
        found = self._values.get(key)
        if found is None:
            return None
        self._values.move_to_end(key)
        return found[0]

    def pop(self, key: K) -> V | None:
        found = self._values.pop(key, None)
        if found is None:
            return None
        self.bytes -= found[1]
        return found[0]

    def put(self, key: K, value: V, size: int) -> bool:
        """Keep ``value`` (replacing what ``key`` held), then drop the least recently used
        until both bounds hold. False, with ``key`` holding nothing, when ``size`` alone is
        over the byte bound."""
        self.pop(key)
        if size > self.max_bytes:
            return False
        self._values[key] = (value, size)
        self.bytes += size
        while self._values and (
            len(self._values) > self.max_entries or self.bytes > self.max_bytes
        ):
            _, (_, dropped) = self._values.popitem(last=False)
            self.bytes -= dropped
        return True

    def clear(self) -> None:
        self._values.clear()
        self.bytes = 0
