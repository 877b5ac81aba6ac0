"""BudgetTable: per-client state of the current window, in this process, bounded in size.

Whatever clients send (new addresses, new credentials), a worker tracks at most
``RATE_LIMIT_MAX_CLIENTS`` budgets: past it, the least recently used one is dropped. Each put
also drops the oldest entries whose window has ended, so a quiet table shrinks with traffic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

# How many ended windows one put may drop from the cold end: constant work per request.
_SWEEP_PER_PUT = 2


class Windowed(Protocol):
    ends_at: float
    """When the entry's window ends, on this process's monotonic clock."""


E = TypeVar("E", bound=Windowed)


class BudgetTable(Generic[E]):
    """Entries by budget key, least recently used first; at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, E] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> E | None:
        """The entry of a window that has not ended, now the most recently used; else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.ends_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: E, now: float) -> None:
        """Keep ``entry`` as the most recently used, dropping what the bounds ask for."""
        self._entries[key] = entry
        self._entries.move_to_end(key)
        for _ in range(_SWEEP_PER_PUT):
            oldest = next(iter(self._entries.values()))
            if oldest is entry or now < oldest.ends_at:
                break
            self._entries.popitem(last=False)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
