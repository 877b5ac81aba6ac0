"""Reclaimer: gives the memory of a burst of connections back to the system once they close.

Nothing keeps a closed connection's objects, but many of them are in reference cycles (a task
and its coroutine, an exception and its frames) that wait for the collector's next full pass,
and what they held in glibc's heap stays there, free but not returned. After a burst (the
worker held at least ``min_burst`` connections and now holds at most half of its peak), one
collection and ``malloc_trim(0)`` return that memory. CPython returns its small-object arenas
only when they are wholly free, so RSS does not fall all the way back; what stays is reused by
the next burst rather than added to.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from collections.abc import Callable, Sized


def _malloc_trim() -> Callable[[int], object] | None:
    """glibc's ``malloc_trim``; None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], object] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


class Reclaimer:
    """Watches one worker's connections; after a burst has closed, reclaims its memory."""

    def __init__(self, connections: Sized, *, min_burst: int = 256, interval: float = 5.0) -> None:
        self.connections = connections
        self.min_burst = min_burst
        self.interval = interval
        self.peak = 0
        self.reclaimed = 0  # how many times, for tests and curiosity
        self._check: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()

    def opened(self) -> None:
        """A connection opened: a new peak, and a check scheduled once it is a burst."""
        self.peak = max(self.peak, len(self.connections))
        if self.peak >= self.min_burst and self._check is None:
            self._check = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._check = None
        now = len(self.connections)
        if now > self.peak // 2:
            self._check = asyncio.get_running_loop().call_later(self.interval, self._tick)
            return
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self.reclaimed += 1
        self.peak = now
