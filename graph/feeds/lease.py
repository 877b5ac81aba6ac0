"""The poller lease: the right to be the one poller in a cluster.

:class:`StoreLease` is a lock in the store (Redis, or in-process), renewed by each ``hold``;
:class:`AdvisoryLease` is a PostgreSQL session advisory lock (:mod:`db.locks`).
:func:`make_lease` picks Redis when configured, else PostgreSQL, else in-process.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from db.errors import StorageUnavailable
from db.locks import AdvisoryLock
from graph.stores import Store, StoreUnavailable

__all__ = [
    "LEASE_KEY",
    "POLLER_LOCK_ID",
    "AdvisoryLease",
    "Lease",
    "StoreLease",
    "make_lease",
]

LEASE_KEY = "trendmap:poller"
# The poller's advisory lock ("trendmap" + 2 in ASCII), distinct from the migrations' lock.
POLLER_LOCK_ID = 0x7472656E646D02


class Lease(Protocol):
    """The right to be the one poller: ``hold`` takes or renews it, True while ours."""

    kind: str

    async def hold(self) -> bool: ...

    async def release(self) -> None: ...


class StoreLease:
    """A lock in the store (Redis, or in-process), renewed by each ``hold`` while held."""

    def __init__(self, store: Store, ttl_seconds: float, key: str = LEASE_KEY) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.key = key
        self.kind = "redis" if store.kind == "redis" else "in-process"
        self._token: str | None = None

    async def hold(self) -> bool:
        try:
            if self._token is not None and await self.store.extend(
                self.key, self._token, self.ttl_seconds
            ):
                return True
            self._token = await self.store.acquire(self.key, self.ttl_seconds)
        except StoreUnavailable:
            # Unable to prove we still hold it: stop polling until the store answers.
            self._token = None
        return self._token is not None

    async def release(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(self.key, token)


class AdvisoryLease:
    """A PostgreSQL session advisory lock: if this process dies, its session and lock end."""

    kind = "postgres"

    def __init__(self, lock: AdvisoryLock) -> None:
        self.lock = lock

    async def hold(self) -> bool:
        try:
            return await self.lock.try_acquire()
        except StorageUnavailable:
            return False  # a lost session lost the lock; the next hold tries afresh

    async def release(self) -> None:
        with contextlib.suppress(StorageUnavailable):
            await self.lock.release()


def make_lease(store: Store, ttl_seconds: float, lock: AdvisoryLock | None) -> Lease:
    """Redis when configured, else PostgreSQL's advisory ``lock`` (None on SQLite), else
    in-process."""
    if store.kind != "memory" or lock is None:
        return StoreLease(store, ttl_seconds)
    return AdvisoryLease(lock)
