"""ResponseCache: answers computed once and shared by every worker, never stale.

The generation is a counter in the store (INCR), raised after each ingest that changed data,
after its commit. Every entry carries the generation it was computed under and is a hit only
under the current one; an entry labelled g was computed from the database after the store
said g, so it holds every write answered with a generation up to g. That is what a read with
``min_generation`` relies on (read-your-writes on any worker): an entry at least that new, else
the database, which is always at least as new as any generation issued. Misses are computed
once per generation: single flight in process, a lock in the store across workers. A failing
store never fails a read: calls go through a circuit breaker and answers are then computed as
if there were no cache.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from graph.breaker import BreakerState, CircuitBreaker
from graph.cache.bounds import CacheBounds
from graph.cache.entry import Entry
from graph.cache.keys import GENERATION_CHANNEL, GENERATION_KEY, TTL_SECONDS
from graph.cache.local_copy import LocalCopy
from graph.cache.single_flight import SingleFlight
from graph.observability.log import logger
from graph.observability.tracing import span
from graph.stores import Store, StoreUnavailable

LOCK_SECONDS = 10.0
_POLL_SECONDS = 0.05

Compute = Callable[[str], Awaitable[Entry]]


# A partial, not a lambda: read on every cached answer, without a Python frame.
_utc_now = functools.partial(datetime.now, UTC)


class ResponseCache:
    """Entries in a store (Redis or in-process), with generations, single-flight and a breaker."""

    def __init__(
        self,
        store: Store | None,
        *,
        refresh_seconds: float,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], datetime] = _utc_now,
        bounds: CacheBounds | None = None,
    ) -> None:
        self.store = store
        # What the store and the local copy may hold, and which explicit instants are kept.
        self.bounds = bounds or CacheBounds()
        self.refresh_seconds = refresh_seconds
        self.breaker = breaker or CircuitBreaker(failures=3, reset_seconds=5.0)
        self.clock = clock
        # Computations in progress by (key, field, token): a read under a newer token must
        # not join one from before the bump.
        self._inflight: SingleFlight[tuple[str, str, str], Entry] = SingleFlight("answers")
        # Set when an ingest could not raise the generation; raised as soon as the store answers.
        self._stale_token = False
        # The highest generation this worker has seen: its own ingests, the other workers'
        # announcements and store reads. Without a store, the in-process counter itself.
        self.generation = 0
        # The label of answers computed while the store cannot be asked (entries are then not
        # trusted at all, but computations still need a label). Replaced whenever the
        # generation rises, so nothing computed under it predates the newest generation seen.
        self._local_token = uuid.uuid4().hex
        # Answers by (kind, hit): "flows"/"hotspots", served from the cache or computed.
        self.lookups: Counter[tuple[str, bool]] = Counter()
        # Entries already read, answered without a round trip while listen() runs.
        self.local_copy = LocalCopy(
            max_entries=self.bounds.max_entries, max_bytes=self.bounds.max_bytes
        )

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

    async def _call(
        self, action: Callable[[Store], Awaitable[Any]], *, always: bool = False
    ) -> Any:
        """Run one store call through the breaker; StoreUnavailable when it cannot be made.
        ``always`` makes the call even while the breaker is open (its outcome still counts)."""
        assert self.store is not None
        if not always and not self.breaker.allow():
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

    async def bump(self) -> int | None:
        """Raise the generation, retiring every entry on every worker: called after each
        committed ingest that changed data. The new generation, or None when the store could
        not count it (it is raised as soon as the store answers again)."""
        self._local_token = uuid.uuid4().hex
        self.local_copy.invalidate()
        if self.store is None:
            self.generation += 1
            return self.generation
        # This bump covers one that was missed: _call must not replay it once more.
        self._stale_token = False
        try:
            # Even while the breaker is open: the store may be back for everyone else already,
            # and a write's generation is what lets its client read it back anywhere.
            generation: int = await self._call(lambda s: s.incr(GENERATION_KEY), always=True)
        except StoreUnavailable:
            self._stale_token = True
            logger.warning("cache generation not raised; will retry", key=GENERATION_KEY)
            return None
        finally:
            # Again: a read that began before the generation rose may have filled it.
            self.local_copy.invalidate()
        self._saw(generation)
        try:
            await self._call(lambda s: s.publish(GENERATION_CHANNEL, str(generation).encode()))
        except StoreUnavailable:
            # The others' copies lapse within CACHE_LOCAL_SECONDS (their next store read
            # sees the new generation).
            logger.warning("cache generation not announced", channel=GENERATION_CHANNEL)
        return generation

    async def next_generation(self) -> int | None:
        """What a write that changed nothing answers: one past the current generation, or None
        when the store cannot be asked.

        The records it matched may have been committed by a concurrent ingest that has not
        raised the generation yet; a read asking for the next one is answered from entries
        computed after that rise, or else from the database.
        """
        if self.store is None:
            return self.generation + 1
        seen = self.generation
        try:
            [raw] = await self._call(lambda s: s.read([(GENERATION_KEY, None)]))
            return await self._current(raw, seen) + 1
        except StoreUnavailable:
            return None

    def _saw(self, generation: int) -> None:
        """Note a generation read or announced; a newer one retires the local label."""
        if generation > self.generation:
            self.generation = generation
            self._local_token = uuid.uuid4().hex

    async def _current(self, raw: bytes | None, seen: int) -> int:
        """The store's generation from its raw value (absent: 0, nothing ingested yet), where
        ``seen`` is what this worker had seen before asking.

        A store that answers less than that has lost its counter (deleted, evicted, a failover
        to a lagging replica): it is raised past it, so a label never comes back to an entry
        computed under the counter that was lost.
        """
        generation = _number(raw) or 0
        if generation < seen:
            lost = generation
            logger.warning("cache generation behind; raising it", store=lost, seen=seen)
            generation = await self._call(lambda s: s.incr(GENERATION_KEY, seen - lost + 1))
        self._saw(generation)
        return generation

    async def listen(self, local_seconds: float) -> None:
        """Keep a local copy of entries (for ``local_seconds`` after each store read) while
        following the other workers' generations; until cancelled. 0 keeps none (strict mode).
        """
        if self.store is None or local_seconds <= 0:
            return

        async def resubscribed() -> None:
            # Announcements made while the subscription was down are lost: start afresh.
            self.local_copy.invalidate()

        with self.local_copy.live(local_seconds):
            async for message in self.store.subscribe(
                GENERATION_CHANNEL, on_subscribed=resubscribed
            ):
                self.local_copy.invalidate()
                announced = _number(message)
                if announced is not None:
                    self._saw(announced)

    def _young(self, entry: Entry, sliding: bool) -> bool:
        """False for an entry of a window ending "now" older than the refresh period."""
        age = (self.clock() - entry.computed_at).total_seconds()
        return not sliding or age < self.refresh_seconds

    async def _current_token(self) -> str:
        """The store's generation, or the local label when there is no store or it cannot
        answer."""
        if self.store is None:
            return self._local_token
        seen = self.generation
        try:
            [raw] = await self._call(lambda s: s.read([(GENERATION_KEY, None)]))
            return str(await self._current(raw, seen))
        except StoreUnavailable:
            return self._local_token

    async def lookup(self, key: str, field: str, *, sliding: bool) -> tuple[Entry | None, str]:
        """The entry if it is fresh, and the current token, in one round trip."""
        epoch = self.local_copy.epoch
        entry, token = await self._lookup(key, field, sliding=sliding)
        self.local_copy.keep(epoch, token, key, field, entry)
        return entry, token

    async def _lookup(self, key: str, field: str, *, sliding: bool) -> tuple[Entry | None, str]:
        seen = self.generation
        raw_token, raw_entry = await self._call(
            lambda s: s.read([(GENERATION_KEY, None), (key, field)])
        )
        token = str(await self._current(raw_token, seen))
        if raw_entry is None:
            return None, token
        entry = Entry.decode(raw_entry)
        if entry.generation != token or not self._young(entry, sliding):
            return None, token
        return entry, token

    async def get_or_compute(
        self,
        key: str,
        field: str,
        *,
        sliding: bool,
        compute: Compute,
        keep: bool = True,
        min_generation: int | None = None,
    ) -> tuple[Entry, bool]:
        """The cached entry (hit) or a freshly computed and stored one (miss). With ``keep``
        false (an instant the bounds do not keep), computed under the current token and not
        stored. With ``min_generation``, the answer holds every write answered with a
        generation up to it (computed from the database when no entry is that new)."""
        kind = key.partition(":")[0]
        # While tracing, a miss's computation (its SQL) shows inside the lookup's span.
        with span("cache.lookup", {"cache.kind": kind}) as traced:
            if keep:
                entry, hit = await self._get_or_compute(
                    key, field, sliding, compute, min_generation
                )
            else:
                entry, hit = await compute(await self._current_token()), False
            traced.set("cache.hit", hit)
        self.lookups[kind, hit] += 1
        return entry, hit

    async def _get_or_compute(
        self, key: str, field: str, sliding: bool, compute: Compute, at_least: int | None
    ) -> tuple[Entry, bool]:
        if self.store is None:
            return await compute(self._local_token), False
        copied = self.local_copy.get(key, field)
        if copied is not None and self._young(copied, sliding) and _reaches(copied, at_least):
            return copied, True
        try:
            entry, token = await self.lookup(key, field, sliding=sliding)
        except StoreUnavailable:
            # From the database, under a label nothing older than the generation asked for
            # was computed under.
            fresh = at_least is None or at_least <= self.generation
            return await compute(self._local_token if fresh else _unshared()), False
        if at_least is not None and int(token) < at_least:
            # A generation the store never issued (it lost its counter, or the client made it
            # up): the database holds every write answered with one, so it answers, unshared.
            return await compute(_unshared()), False
        if entry is not None:
            return entry, True
        return await self._single_flight(key, field, token, sliding, compute), False

    async def _single_flight(
        self, key: str, field: str, token: str, sliding: bool, compute: Compute
    ) -> Entry:
        """Compute the entry, or join the computation of it under the same token (a reader
        that goes away cancels only its own wait; see :class:`SingleFlight`)."""
        return await self._inflight.run(
            (key, field, token),
            lambda: self._compute_once(key, field, token, sliding, compute),
            alone=lambda: compute(token),
        )

    async def drain(self, seconds: float) -> None:
        """At shutdown, before the database they use is closed: the computations still running
        (their readers may have gone) finish, or are cancelled after ``seconds``."""
        await self._inflight.drain(seconds)

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
        budget = self.bounds.budget
        await self._quietly(lambda s: s.write(entries, TTL_SECONDS, budget=budget))

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


def _number(raw: bytes | None) -> int | None:
    """A generation from its decimal bytes; None when absent or not a number."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _reaches(entry: Entry, at_least: int | None) -> bool:
    """Whether ``entry`` was computed under a generation of at least ``at_least``."""
    if at_least is None:
        return True
    generation = _number(entry.generation.encode())
    return generation is not None and generation >= at_least


def _unshared() -> str:
    """A label no other computation has: nothing computed before is reused under it."""
    return f"once:{uuid.uuid4().hex}"
