"""The response cache: answers computed once and shared by every worker, never stale.

Freshness rests on a *generation token*: a random value stored under ``trendmap:generation``
and replaced after every ingest that changed data. Every entry records the token it was
computed under, and a lookup reads the token and the entry in one round trip: an entry is a
hit only when the tokens match. So a read never returns data older than the last committed
ingest, whichever worker ingested it. A random token cannot come back to a value an old entry
holds, as an expired counter could.

Windows that end "now" slide: their entries are hits only while younger than
``FLOWS_REFRESH_SECONDS``. Historical (``as_of``) entries live for the 24 h TTL.

Concurrent misses of one entry are computed once: in-process through single-flight futures,
across workers through a short lock in the store, while the others wait for the entry.

In front of the store, each worker may keep the entries it has read (the *local copy*), so a
hit costs a dictionary lookup instead of a round trip. It is live only while
:meth:`ResponseCache.listen` runs (the app's lifespan runs it with CACHE_LOCAL_SECONDS), and it
can never be older than the generation it was read under:
- this worker's own ingests drop it before and after replacing the token, so a client reading
  from the worker it wrote through always sees its write;
- every bump is published on ``trendmap:generation`` and each worker drops its copy when the
  message arrives (normally within a millisecond). A read on *another* worker that lands in
  between may still get the previous answer: the one deviation from read-your-writes across
  workers (docs/architecture.md, "Deviations");
- the copy is trusted only for CACHE_LOCAL_SECONDS after the token was last read from the store.
  A lost message (the subscription dropped and came back) thus costs at most that long, and
  when the store stops answering the copy lapses with it.
A read that overlapped an invalidation never fills the copy, so an answer from before a bump
cannot slip back in after it.

The store is never allowed to fail a read. Every call goes through a circuit breaker with
short socket timeouts; when the store is down, answers are computed as if there were no
cache, ``/health/ready`` says ``degraded``, and caching resumes by itself when it answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from graph.breaker import BreakerState, CircuitBreaker
from graph.observability.log import logger
from graph.stores import Store, StoreUnavailable

GENERATION_KEY = "trendmap:generation"
# Each bump's new token is published here; every worker drops its local copy on it.
GENERATION_CHANNEL = "trendmap:generation"
TTL_SECONDS = 24 * 3600
LOCK_SECONDS = 10.0
_POLL_SECONDS = 0.05


def countries_hash(countries: Sequence[str] | None) -> str:
    """``all`` without a filter, else a digest of the sorted, de-duplicated upper-case codes."""
    if not countries:
        return "all"
    canonical = ",".join(sorted({c.strip().upper() for c in countries}))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flows_key(window: str, countries: Sequence[str] | None) -> str:
    return f"flows:{window}:{countries_hash(countries)}"


def hotspots_key(window: str, countries: Sequence[str] | None) -> str:
    return f"hotspots:{window}:{countries_hash(countries)}"


def trends_key(country: str, as_of: datetime) -> str:
    """Where one country's aggregates for windows ending at ``as_of`` live (field: window)."""
    return f"trends:{country}:{as_of.isoformat()}"


def trends_roster_key(as_of: datetime) -> str:
    """Which countries had data in windows ending at ``as_of`` (field: window)."""
    return f"trends:countries:{as_of.isoformat()}"


@dataclass(frozen=True, slots=True)
class Entry:
    """A computed answer: the payload bytes and what they were computed from."""

    generation: str
    as_of: datetime
    computed_at: datetime
    payload: bytes
    warnings: tuple[str, ...] = ()
    count: int = 0

    def encode(self) -> bytes:
        header = orjson.dumps(
            {
                "generation": self.generation,
                "as_of": self.as_of.isoformat(),
                "computed_at": self.computed_at.isoformat(),
                "warnings": list(self.warnings),
                "count": self.count,
            }
        )
        return header + b"\n" + self.payload

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        header, _, payload = raw.partition(b"\n")
        meta: dict[str, Any] = orjson.loads(header)
        return cls(
            generation=meta["generation"],
            as_of=datetime.fromisoformat(meta["as_of"]),
            computed_at=datetime.fromisoformat(meta["computed_at"]),
            payload=payload,
            warnings=tuple(meta["warnings"]),
            count=meta["count"],
        )


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
        self._inflight: dict[tuple[str, str], asyncio.Future[Entry]] = {}
        # Set when an ingest could not replace the token; replaced as soon as the store answers.
        self._stale_token = False
        # The last token seen, used while the store cannot be asked: entries are then not
        # trusted at all (see lookup), but computations still need a label.
        self._local_token = uuid.uuid4().hex
        # Answers by (kind, hit): "flows"/"hotspots", served from the cache or computed.
        self.lookups: Counter[tuple[str, bool]] = Counter()
        # The local copy (see the module docstring): entries read under _copy_token, trusted
        # until _copy_until (monotonic), and only while listen() runs (_copy_seconds > 0).
        self._copy: dict[tuple[str, str], Entry] = {}
        self._copy_token: str | None = None
        self._copy_until = 0.0
        self._copy_seconds = 0.0
        # Counts invalidations: a store read that saw it change must not fill the copy.
        self._epoch = 0
        self.local_hits = 0

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
        self.invalidate()
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
            self.invalidate()
        try:
            await self._call(lambda s: s.publish(GENERATION_CHANNEL, token))
        except StoreUnavailable:
            # The others' copies lapse within CACHE_LOCAL_SECONDS (their next store read
            # sees the new token).
            logger.warning("cache generation not announced", channel=GENERATION_CHANNEL)

    def invalidate(self) -> None:
        """Drop this worker's local copy (a bump here or on another worker)."""
        self._epoch += 1
        self._copy.clear()
        self._copy_token = None

    async def listen(self, local_seconds: float) -> None:
        """Keep a local copy of entries (for ``local_seconds`` after each store read) while
        following the other workers' bumps; until cancelled. 0 keeps none (strict mode)."""
        if self.store is None or local_seconds <= 0:
            return
        try:
            self._copy_seconds = local_seconds
            async for _token in self.store.subscribe(GENERATION_CHANNEL):
                self.invalidate()
        finally:
            self._copy_seconds = 0.0
            self.invalidate()

    def _from_copy(self, key: str, field: str, sliding: bool) -> Entry | None:
        if not self._copy_seconds or time.monotonic() >= self._copy_until:
            return None
        entry = self._copy.get((key, field))
        if entry is None:
            return None
        if sliding and (self.clock() - entry.computed_at).total_seconds() >= self.refresh_seconds:
            return None
        return entry

    def _keep(self, epoch: int, token: str, key: str, field: str, entry: Entry | None) -> None:
        """Note what a store read found, unless an invalidation happened meanwhile."""
        if not self._copy_seconds or epoch != self._epoch:
            return
        if token != self._copy_token:
            self._copy.clear()
            self._copy_token = token
        self._copy_until = time.monotonic() + self._copy_seconds
        if entry is not None:
            self._copy[key, field] = entry

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
        epoch = self._epoch
        entry, token = await self._lookup(key, field, sliding=sliding)
        self._keep(epoch, token, key, field, entry)
        return entry, token

    async def _lookup(self, key: str, field: str, *, sliding: bool) -> tuple[Entry | None, str]:
        raw_token, raw_entry = await self._call(
            lambda s: s.read([(GENERATION_KEY, None), (key, field)])
        )
        token = await self._token(raw_token)
        if raw_entry is None:
            return None, token
        entry = Entry.decode(raw_entry)
        if entry.generation != token:
            return None, token
        if sliding and (self.clock() - entry.computed_at).total_seconds() >= self.refresh_seconds:
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
        copied = self._from_copy(key, field, sliding)
        if copied is not None:
            self.local_hits += 1
            return copied, True
        try:
            entry, token = await self.lookup(key, field, sliding=sliding)
        except StoreUnavailable:
            return await compute(self._local_token), False
        if entry is not None:
            return entry, True
        slot = (key, field)
        running = self._inflight.get(slot)
        if running is not None:
            return await asyncio.shield(running), False
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = future
        try:
            entry = await self._compute_once(key, field, token, sliding, compute)
            future.set_result(entry)
            return entry, False
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
        lock = f"lock:{key}:{field}"
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
