"""The per-worker local copy of cache entries, and the rules that keep it from going stale.

Live only inside :meth:`LocalCopy.live`; trusted for ``seconds`` after the token was last read
from the store; dropped on every invalidation, and never filled by a read that overlapped one.
Bounded like the store: at most ``max_entries`` entries and ``max_bytes`` bytes of keys, fields
and payloads, the least recently used dropped first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from graph.cache.entry import Entry
from graph.cache.lru import BoundedLRU


class LocalCopy:
    """Entries this worker read from the store under one token, by ``(key, field)``."""

    def __init__(self, *, max_entries: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._entries: BoundedLRU[tuple[str, str], Entry] = BoundedLRU(
            max_entries=max_entries, max_bytes=max_bytes
        )
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
        self._entries.clear()
        self._token = None

    @property
    def read_at(self) -> float | None:
        """Monotonic time of the store read that last confirmed the token (None: none since
        the copy was last invalidated): what anything taken from the copy is known current at."""
        if self._token is None or not self._seconds:
            return None
        return self._until - self._seconds

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """What the entries count for: their keys, fields and payloads."""
        return self._entries.bytes

    def get(self, key: str, field: str) -> Entry | None:
        """The copied entry, while the copy is live and trusted."""
        if not self._seconds or time.monotonic() >= self._until:
            return None
        return self._entries.get((key, field))

    def trusted_token(self) -> str | None:
        """The token last read from the store, while the copy is live and trusted: the
        generation a reader may take as current without asking the store."""
        if not self._seconds or self._token is None or time.monotonic() >= self._until:
            return None
        return self._token

    def trust(self, epoch: int, token: str) -> bool:
        """Note the token a store read that began at ``epoch`` found (the copy is trusted for
        ``seconds`` more), unless an invalidation happened meanwhile (its answer may be from
        before the bump). Whether it was noted."""
        if not self._seconds or epoch != self.epoch:
            return False
        if token != self._token:
            self._entries.clear()
            self._token = token
        self._until = time.monotonic() + self._seconds
        return True

    def keep(self, epoch: int, token: str, key: str, field: str, entry: Entry | None) -> None:
        """Note what a store read that began at ``epoch`` found (see :meth:`trust`)."""
        if self.trust(epoch, token) and entry is not None:
            self._entries.put((key, field), entry, len(key) + len(field) + len(entry.payload))
