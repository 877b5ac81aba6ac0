"""The generation: a monotonic counter in the store, and reads that ask for one (min_generation).

Every cache here runs on a throwaway Redis of its own (or the in-process store), so the tests
may run in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import redis.asyncio

from graph.breaker import CircuitBreaker
from graph.cache.entry import Entry
from graph.cache.keys import GENERATION_CHANNEL, GENERATION_KEY
from graph.cache.response_cache import ResponseCache
from graph.stores import Store, StoreUnavailable, open_store
from tests.support.servers import RedisServer

AS_OF = datetime(2026, 11, 20, 12, tzinfo=UTC)


class Computer:
    """Counts computations and remembers the label each was asked to compute under."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    async def __call__(self, token: str) -> Entry:
        self.labels.append(token)
        return Entry(token, AS_OF, datetime.now(UTC), f"[{len(self.labels)}]".encode(), count=1)


def _cache(store: Store | None, **options: object) -> ResponseCache:
    breaker = CircuitBreaker(failures=1, reset_seconds=60)
    return ResponseCache(store, refresh_seconds=30, breaker=breaker, **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _listening(cache: ResponseCache, url: str, seconds: float = 5.0) -> AsyncIterator[None]:
    """The cache keeps a local copy and follows the channel (as a server worker does)."""
    task = asyncio.get_running_loop().create_task(cache.listen(seconds))
    try:
        epoch = cache.local_copy.epoch
        probe = open_store(url)
        try:
            while cache.local_copy.epoch == epoch:  # subscribed once a message arrives
                await probe.publish(GENERATION_CHANNEL, b"probe")
                await asyncio.sleep(0.01)
        finally:
            await probe.close()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _redis(url: str, socket_timeout: float = 0.25) -> Store:
    return open_store(url, socket_timeout=socket_timeout)


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_incr_counts_from_zero_and_never_expires(
    backend: str, throwaway_redis: RedisServer
) -> None:
    async def main() -> None:
        store = open_store(None if backend == "memory" else throwaway_redis.url)
        try:
            assert [await store.incr("n") for _ in range(3)] == [1, 2, 3]
            assert await store.incr("n", 10) == 13
            assert await store.read([("n", None)]) == [b"13"]
            with pytest.raises(ValueError):
                await store.incr("n", 0)
            await store.write([("h", "f", b"x")], 60)
            with pytest.raises(StoreUnavailable):
                await store.incr("h")  # a hash is not a counter
        finally:
            await store.close()
        if backend == "redis":
            client = redis.asyncio.Redis.from_url(throwaway_redis.url)
            try:
                assert await client.ttl("n") == -1
            finally:
                await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["none", "memory", "redis"])
def test_every_bump_answers_the_next_generation(backend: str, throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        store = {"none": None, "memory": open_store(None), "redis": _redis(throwaway_redis.url)}
        cache = _cache(store[backend])
        try:
            assert cache.generation == 0
            assert [await cache.bump() for _ in range(3)] == [1, 2, 3]
            assert cache.generation == 3
            # A batch that changed nothing answers the next one: a concurrent ingest may have
            # committed what it matched without having raised the generation yet.
            assert await cache.next_generation() == 4
            assert cache.generation == 3
        finally:
            if store[backend] is not None:
                await store[backend].close()  # type: ignore[union-attr]

    asyncio.run(main())


def test_generations_are_one_sequence_across_workers(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        # 50 connections opened at once: a loaded machine must not turn them into timeouts.
        a, b = (_cache(_redis(throwaway_redis.url, socket_timeout=10)) for _ in range(2))
        try:
            got = await asyncio.gather(*(w.bump() for w in (a, b) for _ in range(25)))
            assert sorted(got) == list(range(1, 51))  # type: ignore[type-var]
        finally:
            for w in (a, b):
                assert w.store is not None
                await w.store.close()

    asyncio.run(main())


def test_an_announced_generation_raises_the_workers(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        a, b = _cache(_redis(throwaway_redis.url)), _cache(_redis(throwaway_redis.url))
        try:
            async with _listening(a, throwaway_redis.url):
                generation = await b.bump()
                await _until(lambda: a.generation == generation)
        finally:
            for w in (a, b):
                assert w.store is not None
                await w.store.close()

    asyncio.run(main())


def test_min_generation_never_takes_an_older_local_copy(throwaway_redis: RedisServer) -> None:
    """B copied an entry; A raises the generation and its message has not reached B: a read
    without the token may be served from B's copy, one with it never is."""

    async def main() -> None:
        a, b = _cache(_redis(throwaway_redis.url)), _cache(_redis(throwaway_redis.url))
        compute = Computer()
        client = redis.asyncio.Redis.from_url(throwaway_redis.url)
        try:
            async with _listening(b, throwaway_redis.url, seconds=30):
                await b.get_or_compute("k", "f", sliding=False, compute=compute)
                copied, hit = await b.get_or_compute("k", "f", sliding=False, compute=compute)
                assert (copied.payload, hit) == (b"[1]", True)
                # A's ingest, its announcement lost: only the store knows.
                generation = await client.incr(GENERATION_KEY)
                stale, hit = await b.get_or_compute("k", "f", sliding=False, compute=compute)
                assert (stale.payload, hit) == (b"[1]", True)  # within CACHE_LOCAL_SECONDS
                fresh, hit = await b.get_or_compute(
                    "k", "f", sliding=False, compute=compute, min_generation=generation
                )
                assert (fresh.payload, hit, fresh.generation) == (b"[2]", False, "1")
                # And once seen, the newer entry is what everyone gets.
                again, hit = await b.get_or_compute("k", "f", sliding=False, compute=compute)
                assert (again.payload, hit) == (b"[2]", True)
                assert a.generation == 0  # A did nothing here: the counter is shared
        finally:
            await client.aclose()
            for w in (a, b):
                assert w.store is not None
                await w.store.close()

    asyncio.run(main())


def test_an_entry_as_new_as_asked_is_a_hit(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        cache = _cache(_redis(throwaway_redis.url))
        compute = Computer()
        try:
            generation = await cache.bump()
            await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            for asked in (0, 1, generation):
                entry, hit = await cache.get_or_compute(
                    "k", "f", sliding=False, compute=compute, min_generation=asked
                )
                assert hit and entry.payload == b"[1]"
        finally:
            assert cache.store is not None
            await cache.store.close()

    asyncio.run(main())


def test_a_generation_the_store_never_issued_is_computed_unshared(
    throwaway_redis: RedisServer,
) -> None:
    """The client's token survives a store that lost count (or was made up): the database
    answers, under a label nothing else was computed under, and nothing is stored."""

    async def main() -> None:
        cache = _cache(_redis(throwaway_redis.url))
        compute = Computer()
        try:
            await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            entry, hit = await cache.get_or_compute(
                "k", "f", sliding=False, compute=compute, min_generation=7
            )
            assert not hit and entry.payload == b"[2]"
            assert compute.labels[-1].startswith("once:")
            # The shared entry is untouched: a read without the token still hits it.
            entry, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert (entry.payload, hit) == (b"[1]", True)
        finally:
            assert cache.store is not None
            await cache.store.close()

    asyncio.run(main())


def test_a_store_that_lost_its_counter_is_raised_past_what_was_seen(
    throwaway_redis: RedisServer,
) -> None:
    """An entry labelled with a generation from before the loss must never be a hit again."""

    async def main() -> None:
        cache = _cache(_redis(throwaway_redis.url))
        compute = Computer()
        client = redis.asyncio.Redis.from_url(throwaway_redis.url)
        try:
            for _ in range(3):
                await cache.bump()
            await cache.get_or_compute("k", "f", sliding=False, compute=compute)  # labelled 3
            await client.delete(GENERATION_KEY)
            await client.incr(GENERATION_KEY, 2)  # counting again from scratch: 2, then 3
            entry, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert not hit and entry.payload == b"[2]"
            raised = await client.get(GENERATION_KEY)
            assert raised is not None and int(raised) > 3
            assert await cache.bump() == cache.generation > 4
        finally:
            await client.aclose()
            assert cache.store is not None
            await cache.store.close()

    asyncio.run(main())


def test_with_the_store_down_writes_answer_no_generation_and_reads_still_hold_them(
    throwaway_redis: RedisServer,
) -> None:
    async def main() -> None:
        cache = _cache(_redis(throwaway_redis.url))
        compute = Computer()
        try:
            generation = await cache.bump()
            assert generation is not None
            throwaway_redis.pause()
            assert await cache.bump() is None  # not counted: no generation to hand out
            assert await cache.next_generation() is None
            # A read asking for a generation this worker has seen: the database, under the
            # worker's label (renewed whenever it sees a newer generation).
            await cache.get_or_compute(
                "k", "f", sliding=False, compute=compute, min_generation=generation
            )
            assert not compute.labels[-1].startswith("once:")
            # One it has not seen: under a label no earlier computation had.
            await cache.get_or_compute(
                "k", "f", sliding=False, compute=compute, min_generation=generation + 5
            )
            assert compute.labels[-1].startswith("once:")
        finally:
            throwaway_redis.resume()
        try:
            # Back: the missed bump is counted before anything is trusted.
            await cache.store.ping()  # type: ignore[union-attr]
            before = cache.generation
            cache.breaker.record_success()
            await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert cache.generation > before
        finally:
            assert cache.store is not None
            await cache.store.close()

    asyncio.run(main())


def test_a_write_is_counted_even_while_the_breaker_is_open(throwaway_redis: RedisServer) -> None:
    """The breaker spares reads a dead store's latency; a write's generation is worth a try."""

    async def main() -> None:
        cache = _cache(_redis(throwaway_redis.url))
        try:
            cache.breaker.record_failure()  # open (failures=1), for 60 s
            assert not cache.breaker.allow()
            assert await cache.bump() == 1
            assert cache.status() == "ok"
        finally:
            assert cache.store is not None
            await cache.store.close()

    asyncio.run(main())
