"""The per-worker local copy of cache entries, and the rules that keep it from going stale.

Live only inside :meth:`LocalCopy.live`; trusted for ``seconds`` after the token was last read
from the store; dropped on every invalidation, and never filled by a read that overlapped one.
Bounded like the store: at most ``max_entries`` entries and ``max_bytes`` bytes of keys, fields
and payloads, the least recently used dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from graph.cache.entry import Entry


class LocalCopy:
    """Entries this worker read from the store under one token, by ``(key, field)``."""

    def __init__(self, *, max_entries: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # Least recently used first, with the bytes each counts for.
        self._entries: OrderedDict[tuple[str, str], tuple[Entry, int]] = OrderedDict()
        self.bytes = 0
        self._token: str | None = None
        # Monotonic time until which the copy is trusted; pushed on by each store read.
        self._until = 0.0
        # How long a store read keeps the copy trusted; 0 while not live.
        self._seconds = 0.0
        # Counts invalidations: a store read that saw it change must not fill the copy.
        self.epoch = 0

    @contextmanager
    def live(self, seconds: float) -> Iterator[None]:
        """Keep entries for ``seconds`` after each store read, until the block ends."""
        self._seconds = seconds
        try:
            yield
        finally:
            self._seconds = 0.0
            self.invalidate()

    def invalidate(self) -> None:
        """Drop every entry: a bump here or on another worker."""
        self.epoch += 1
        self._clear()
        self._token = None

    def _clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, field: str) -> Entry | None:
        """The copied entry, while the copy is live and trusted."""
        if not self._seconds or time.monotonic() >= self._until:
            return None
        found = self._entries.get((key, field))
        if found is None:
            return None
        self._entries.move_to_end((key, field))
        return found[0]

    def keep(self, epoch: int, token: str, key: str, field: str, entry: Entry | None) -> None:
        """Note what a store read that began at ``epoch`` found, unless an invalidation
        happened meanwhile (its answer may be from before the bump)."""
        if not self._seconds or epoch != self.epoch:
            return
        if token != self._token:
            self._clear()
            self._token = token
        self._until = time.monotonic() + self._seconds
        if entry is not None:
            self._add(key, field, entry)

    def _add(self, key: str, field: str, entry: Entry) -> None:
        replaced = self._entries.pop((key, field), None)
        if replaced is not None:
            self.bytes -= replaced[1]
        size = len(key) + len(field) + len(entry.payload)
        if size > self.max_bytes:
            return  # larger than the whole copy: not kept, and it pushes nothing else out
        self._entries[key, field] = (entry, size)
        self.bytes += size
        while self._entries and (
            len(self._entries) > self.max_entries or self.bytes > self.max_bytes
        ):
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped
