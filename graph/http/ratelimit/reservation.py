"""Reservations: budgets shared through the store, spent in this process from units each
worker reserves in chunks, so that most requests make no store round trip.

A request spends units its worker reserved before. When they run short, the worker reserves
``n = max(chunk, cost - units left)`` more with one INCRBY on the client's shared counter,
where ``chunk = max(1, quota // (4 * RATE_LIMIT_WORKERS))``, and keeps only the units that
fall within the quota: with C the count the store answers after adding n,
``min(n, max(0, quota - (C - n)))``. One reservation per budget and worker is in flight at
a time; the requests that need it wait for it.

The bound, per client, budget and window (a minute from the counter's first reservation),
across N workers sharing the store:

- **Never over the quota.** The store hands out counts atomically and a worker keeps only
  units numbered up to the quota, so all workers together serve at most ``quota`` units.
- **Short of it by less than (N - 1) x 1.5 x chunk before a refusal.** A one-unit request
  is refused when its worker holds no unit and the counter has reached the quota; the quota
  not yet served is then what the other workers hold, fewer than 1.5 chunks each (a worker
  answering from its front door reserves the next chunk, in the background, once it holds
  fewer than half a chunk: :meth:`Reservations.try_spend`). A client whose requests keep
  reaching every worker is served its whole quota.
- **At most ceil(units / chunk) store round trips** per worker for a steady stream of
  requests; once the counter has reached the quota, refusals are answered in process until
  the window ends.

A worker learns from each answer how long the store's window has left, and drops its unspent
units when that window ends (or when a reservation finds the store has started a new one):
a unit is spent in the window that counted it, at most one store round trip late. Forgetting
a budget (the table is bounded) loses its unspent units, never counts any back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from graph.http.ratelimit.table import BudgetTable
from graph.http.ratelimit.usage import WINDOW_SECONDS, Usage
from graph.stores import StoreUnavailable

Reserve = Callable[[str, int], Awaitable[tuple[int, float]]]
"""Add units to the shared counter at a key: the count after adding, and the seconds left in
its window (the store's ``hit``)."""


@dataclass(slots=True)
class _Reserved:
    # Unknown until the first reservation answers: the entry must not end before the store's.
    ends_at: float = math.inf
    units: int = 0
    """Reserved in the store, not spent yet."""
    shared: int = 0
    """The store's count at our last reservation: every worker's reservations together."""
    exhausted: bool = False
    """The store's count has reached the quota: nothing more to reserve in this window."""
    reserving: asyncio.Event | None = field(default=None)


def chunk_of(quota: int, workers: int) -> int:
    """How many units a worker reserves at a time."""
    return max(1, quota // (4 * workers))


class Reservations:
    """Each budget's reserved units in its current window, kept in a bounded table."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.table: BudgetTable[_Reserved] = BudgetTable()
        self._refills: set[asyncio.Task[None]] = set()  # (held until done)

    async def spend(
        self, reserve: Reserve, key: str, policy: str, quota: int, cost: int, chunk: int
    ) -> Usage:
        """Spend ``cost`` from the budget at ``key``, reserving through ``reserve`` when short.

        Raises what ``reserve`` raises (the store is down): nothing is spent then.
        """
        while True:
            now = self.clock()
            entry = self.table.get(key, now)
            if entry is None:
                entry = _Reserved()
                self.table.put(key, entry, now)
            if entry.units >= cost:
                entry.units -= cost
                self._refill_if_low(reserve, key, entry, quota, chunk)
                return self._usage(entry, policy, quota, now, exceeded=False)
            if entry.exhausted:
                return self._usage(entry, policy, quota, now, exceeded=True)
            if entry.reserving is None:
                await self._reserve(reserve, key, entry, quota, max(chunk, cost - entry.units))
            else:
                await entry.reserving.wait()

    def _refill_if_low(
        self, reserve: Reserve, key: str, entry: _Reserved, quota: int, chunk: int
    ) -> None:
        """Reserve the next chunk for ``key`` in the background once ``entry`` holds fewer than
        half a chunk, so that a stream of requests (through :meth:`try_spend` or :meth:`spend`)
        never has to wait for one (many requests waiting on one reservation of fewer units
        than they are would each wait for the next). A store that cannot answer leaves the
        budget as it was: :meth:`spend` handles that. Chunks of one unit are never refilled
        ahead: the unit would be held from the other workers for a request that may not come,
        and a client whose quota is that small waits for a round trip anyway."""
        if chunk <= 1 or entry.units * 2 >= chunk or entry.reserving is not None or entry.exhausted:
            return
        # In flight from now on, before the task first runs: one refill at a time.
        done = entry.reserving = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._refill(reserve, key, entry, quota, chunk)
        )
        self._refills.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            # Also when the task was cancelled before it ran (the loop closing): no request
            # may wait for a reservation that never happens.
            self._refills.discard(task)
            if entry.reserving is done:
                entry.reserving = None
            done.set()

        task.add_done_callback(finished)

    async def _refill(
        self, reserve: Reserve, key: str, entry: _Reserved, quota: int, units: int
    ) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._reserve(reserve, key, entry, quota, units)

    def try_spend(
        self,
        reserve: Reserve,
        key: str,
        policy: str,
        quota: int,
        cost: int,
        chunk: int,
    ) -> Usage | None:
        """:meth:`spend` when the units are already reserved here, the next chunk reserved in
        the background (through ``reserve``) once they run low; else None, nothing spent (a
        reservation or a refusal is :meth:`spend`'s to make)."""
        now = self.clock()
        entry = self.table.get(key, now)
        if entry is None or entry.units < cost:
            return None
        entry.units -= cost
        self._refill_if_low(reserve, key, entry, quota, chunk)
        return self._usage(entry, policy, quota, now, exceeded=False)

    async def _reserve(
        self, reserve: Reserve, key: str, entry: _Reserved, quota: int, units: int
    ) -> None:
        done = entry.reserving = entry.reserving or asyncio.Event()
        try:
            count, seconds = await reserve(key, units)
        finally:
            entry.reserving = None
            done.set()
        now = self.clock()
        # The entry may have been dropped from the table, or replaced, while we waited.
        current = self.table.get(key, now) or entry
        ends_at = now + seconds
        if now >= current.ends_at or ends_at > current.ends_at + WINDOW_SECONDS / 2:
            # The store's window is a new one: what was reserved in the last is not spent here.
            current.units, current.shared = 0, 0
        else:
            # Each answer's end is late by its round trip: the earliest is the closest.
            ends_at = min(ends_at, current.ends_at)
        current.ends_at = ends_at
        current.shared = max(current.shared, count)
        current.units += min(units, max(0, quota - (count - units)))
        current.exhausted = count >= quota
        self.table.put(key, current, now)

    @staticmethod
    def _usage(entry: _Reserved, policy: str, quota: int, now: float, *, exceeded: bool) -> Usage:
        remaining = max(0, quota - entry.shared) + entry.units
        return Usage(policy, quota, remaining, min(WINDOW_SECONDS, entry.ends_at - now), exceeded)
