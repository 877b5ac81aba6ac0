"""ResponseCache: answers computed once and shared by every worker, never stale.

Every entry carries the generation token it was computed under and is a hit only under the
current one (bumped after each ingest). Misses are computed once per token: single flight in
process, a lock in the store across workers. A failing store never fails a read: calls go
through a circuit breaker and answers are then computed as if there were no cache.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from graph.breaker import BreakerState, CircuitBreaker
from graph.cache.entry import Entry
from graph.cache.keys import GENERATION_CHANNEL, GENERATION_KEY, TTL_SECONDS
from graph.cache.local_copy import LocalCopy
from graph.observability.log import logger
from graph.stores import Store, StoreUnavailable

LOCK_SECONDS = 10.0
_POLL_SECONDS = 0.05

Compute = Callable[[str], Awaitable[Entry]]


class ResponseCache:
    """Entries in a store (Redis or in-process), with generations, single-flight and a breaker."""

    def __init__(
        self,
        store: Store | None,
        *,
        refresh_seconds: float,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.breaker = breaker or CircuitBreaker(failures=3, reset_seconds=5.0)
        self.clock = clock
        # Computations in progress by (key, field, token): a read under a newer token must
        # not join one from before the bump.
        self._inflight: dict[tuple[str, str, str], asyncio.Future[Entry]] = {}
        # Set when an ingest could not replace the token; replaced as soon as the store answers.
        self._stale_token = False
        # The last token seen, used while the store cannot be asked: entries are then not
        # trusted at all (see lookup), but computations still need a label.
        self._local_token = uuid.uuid4().hex
        # Answers by (kind, hit): "flows"/"hotspots", served from the cache or computed.
        self.lookups: Counter[tuple[str, bool]] = Counter()
        # Entries already read, answered without a round trip while listen() runs.
        self.local_copy = LocalCopy()

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def status(self) -> str:
        """``disabled``, ``ok`` or ``degraded`` (the store is failing; answers are computed)."""
        if self.store is None:
            return "disabled"
        healthy = (
            self.breaker.state is BreakerState.CLOSED and not self.breaker.consecutive_failures
        )
        return "ok" if healthy else "degraded"

    async def _call(self, action: Callable[[Store], Awaitable[Any]]) -> Any:
        """Run one store call through the breaker; StoreUnavailable when it cannot be made."""
        assert self.store is not None
        if not self.breaker.allow():
            raise StoreUnavailable("the cache's breaker is open")
        try:
            result = await action(self.store)
        except StoreUnavailable:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        if self._stale_token:
            # The store is back: first retire every entry computed before the missed bump.
            self._stale_token = False
            await self.bump()
        return result

    async def bump(self) -> None:
        """Retire every entry: called after each ingest that changed data."""
        self._local_token = uuid.uuid4().hex
        self.local_copy.invalidate()
        if self.store is None:
            return
        token = self._local_token.encode()
        try:
            await self._call(lambda s: s.set(GENERATION_KEY, token, TTL_SECONDS))
        except StoreUnavailable:
            self._stale_token = True
            logger.warning("cache generation not replaced; will retry", key=GENERATION_KEY)
            return
        finally:
            # Again: a read that began before the new token was stored may have filled it.
            self.local_copy.invalidate()
        try:
            await self._call(lambda s: s.publish(GENERATION_CHANNEL, token))
        except StoreUnavailable:
            # The others' copies lapse within CACHE_LOCAL_SECONDS (their next store read
            # sees the new token).
            logger.warning("cache generation not announced", channel=GENERATION_CHANNEL)

    async def listen(self, local_seconds: float) -> None:
        """Keep a local copy of entries (for ``local_seconds`` after each store read) while
        following the other workers' bumps; until cancelled. 0 keeps none (strict mode)."""
        if self.store is None or local_seconds <= 0:
            return
        with self.local_copy.live(local_seconds):
            async for _token in self.store.subscribe(GENERATION_CHANNEL):
                self.local_copy.invalidate()

    def _young(self, entry: Entry, sliding: bool) -> bool:
        """False for an entry of a window ending "now" older than the refresh period."""
        age = (self.clock() - entry.computed_at).total_seconds()
        return not sliding or age < self.refresh_seconds

    async def _token(self, raw: bytes | None) -> str:
        if raw is not None:
            return raw.decode()
        # No token yet (first start, or it expired after 24 h without ingests): make one. NX so
        # that concurrent workers agree on a single token.
        fresh = uuid.uuid4().hex.encode()
        written = await self._call(
            lambda s: s.set(GENERATION_KEY, fresh, TTL_SECONDS, only_if_absent=True)
        )
        if written:
            return fresh.decode()
        [again] = await self._call(lambda s: s.read([(GENERATION_KEY, None)]))
        return again.decode() if again is not None else fresh.decode()

    async def lookup(self, key: str, field: str, *, sliding: bool) -> tuple[Entry | None, str]:
        """The entry if it is fresh, and the current token, in one round trip."""
        epoch = self.local_copy.epoch
        entry, token = await self._lookup(key, field, sliding=sliding)
        self.local_copy.keep(epoch, token, key, field, entry)
        return entry, token

    async def _lookup(self, key: str, field: str, *, sliding: bool) -> tuple[Entry | None, str]:
        raw_token, raw_entry = await self._call(
            lambda s: s.read([(GENERATION_KEY, None), (key, field)])
        )
        token = await self._token(raw_token)
        if raw_entry is None:
            return None, token
        entry = Entry.decode(raw_entry)
        if entry.generation != token or not self._young(entry, sliding):
            return None, token
        return entry, token

    async def get_or_compute(
        self, key: str, field: str, *, sliding: bool, compute: Compute
    ) -> tuple[Entry, bool]:
        """The cached entry (hit) or a freshly computed and stored one (miss)."""
        entry, hit = await self._get_or_compute(key, field, sliding, compute)
        self.lookups[key.partition(":")[0], hit] += 1
        return entry, hit

    async def _get_or_compute(
        self, key: str, field: str, sliding: bool, compute: Compute
    ) -> tuple[Entry, bool]:
        if self.store is None:
            return await compute(self._local_token), False
        copied = self.local_copy.get(key, field)
        if copied is not None and self._young(copied, sliding):
            return copied, True
        try:
            entry, token = await self.lookup(key, field, sliding=sliding)
        except StoreUnavailable:
            return await compute(self._local_token), False
        if entry is not None:
            return entry, True
        return await self._single_flight(key, field, token, sliding, compute), False

    async def _single_flight(
        self, key: str, field: str, token: str, sliding: bool, compute: Compute
    ) -> Entry:
        """Compute the entry, or join the computation of it under the same token."""
        slot = (key, field, token)
        running = self._inflight.get(slot)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = future
        try:
            entry = await self._compute_once(key, field, token, sliding, compute)
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            # Waiters see the exception; nobody may be waiting, so mark it retrieved.
            future.exception()
            raise
        finally:
            del self._inflight[slot]

    async def _compute_once(
        self, key: str, field: str, token: str, sliding: bool, compute: Compute
    ) -> Entry:
        # Per token, like the single flight: a worker reading after a bump must not wait for
        # an entry computed under the previous token, which it could never use.
        lock = f"lock:{key}:{field}:{token}"
        try:
            owner = await self._call(lambda s: s.acquire(lock, LOCK_SECONDS))
        except StoreUnavailable:
            return await compute(token)
        if owner is None:
            waited = await self._wait_for(key, field, sliding)
            if waited is not None:
                return waited
        try:
            entry = await compute(token)
            await self._put([(key, field, entry.encode())])
            return entry
        finally:
            if owner is not None:
                await self._quietly(lambda s: s.release(lock, owner))

    async def _wait_for(self, key: str, field: str, sliding: bool) -> Entry | None:
        """Another worker computes this entry: wait for it, up to the lock's lifetime."""
        deadline = time.monotonic() + LOCK_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
            try:
                entry, _ = await self.lookup(key, field, sliding=sliding)
            except StoreUnavailable:
                return None
            if entry is not None:
                return entry
        return None

    async def _put(self, entries: Sequence[tuple[str, str, bytes]]) -> None:
        await self._quietly(lambda s: s.write(entries, TTL_SECONDS))

    async def _quietly(self, action: Callable[[Store], Awaitable[Any]]) -> None:
        try:
            await self._call(action)
        except StoreUnavailable:
            pass

    async def read_many(self, items: Sequence[tuple[str, str | None]]) -> list[bytes | None] | None:
        """Several raw values in one round trip, or None when the cache cannot answer."""
        if self.store is None:
            return None
        try:
            values: list[bytes | None] = await self._call(lambda s: s.read(items))
        except StoreUnavailable:
            return None
        return values

    async def write_many(self, entries: Sequence[tuple[str, str, bytes]]) -> None:
        if self.store is not None:
            await self._put(entries)
