"""LocalCounts: exact counts in fixed windows, in this process.

The budgets of a server on the in-process store (one process: nothing to share, so nothing
to reserve), and of any server while its shared store is down. A window starts at a
client's first request and lasts a minute; a refused request counts too, as in the store.
Exact for every client unless more than ``RATE_LIMIT_MAX_CLIENTS`` budgets are in use within
one window: the least recently used one is then forgotten and starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from graph.http.ratelimit.table import BudgetTable
from graph.http.ratelimit.usage import WINDOW_SECONDS, Usage


@dataclass(slots=True)
class _Count:
    ends_at: float
    count: int = 0


class LocalCounts:
    """Each budget's count in its current window, kept in a bounded table."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.table: BudgetTable[_Count] = BudgetTable()

    def spend(self, key: str, policy: str, quota: int, cost: int) -> Usage:
        """Add ``cost`` to the budget at ``key``: the budget afterwards."""
        now = self.clock()
        return self._spend(self._entry(key, now), policy, quota, cost, now)

    def try_spend(self, key: str, policy: str, quota: int, cost: int) -> Usage | None:
        """:meth:`spend`, only when the budget holds ``cost``; else None, nothing spent."""
        now = self.clock()
        entry = self._entry(key, now)
        if entry.count + cost > quota:
            return None
        return self._spend(entry, policy, quota, cost, now)

    def _entry(self, key: str, now: float) -> _Count:
        entry = self.table.get(key, now)
        if entry is None:
            entry = _Count(now + WINDOW_SECONDS)
            self.table.put(key, entry, now)
        return entry

    @staticmethod
    def _spend(entry: _Count, policy: str, quota: int, cost: int, now: float) -> Usage:
        entry.count += cost
        return Usage(
            policy,
            quota,
            remaining=max(0, quota - entry.count),
            # (now + WINDOW_SECONDS) - now can exceed the window by an ulp: never say 61.
            reset_seconds=min(WINDOW_SECONDS, entry.ends_at - now),
            exceeded=entry.count > quota,
        )
