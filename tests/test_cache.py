"""The response cache: generations, sliding windows, single flight, and surviving Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio
from conftest import TEST_REDIS_URL, RedisServer

from graph.backends import Store, open_store
from graph.breaker import CircuitBreaker
from graph.cache import (
    GENERATION_KEY,
    TTL_SECONDS,
    Entry,
    ResponseCache,
    countries_hash,
    flows_key,
)

AS_OF = datetime(2026, 11, 20, 12, tzinfo=UTC)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = AS_OF

    def __call__(self) -> datetime:
        return self.now


class Computer:
    """Counts computations; each returns a payload naming its call number."""

    def __init__(self, clock: Clock, delay: float = 0.0) -> None:
        self.calls = 0
        self.clock = clock
        self.delay = delay

    async def __call__(self, token: str) -> Entry:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return Entry(token, AS_OF, self.clock(), f"[{self.calls}]".encode(), count=1)


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "memory":
        yield None
        return
    asyncio.run(_flush(TEST_REDIS_URL))
    yield TEST_REDIS_URL


async def _flush(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


def run_with(url: str | None, test: object) -> None:
    async def main() -> None:
        store = open_store(url)
        try:
            await test(store)  # type: ignore[operator]
        finally:
            await store.close()

    asyncio.run(main())


def test_countries_hash_is_canonical() -> None:
    assert countries_hash(None) == countries_hash([]) == "all"
    assert countries_hash(["us", "BR", "US"]) == countries_hash(["BR", "US"])
    assert countries_hash(["BR"]) != countries_hash(["US"])
    assert flows_key("24h", ["co"]) == f"flows:24h:{countries_hash(['CO'])}"


def test_hit_miss_and_generation(store_url: str | None) -> None:
    async def test(store: Store) -> None:
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        compute = Computer(clock)
        first, hit = await cache.get_or_compute(
            "flows:24h:all", "a", sliding=False, compute=compute
        )
        assert (first.payload, hit) == (b"[1]", False)
        again, hit = await cache.get_or_compute(
            "flows:24h:all", "a", sliding=False, compute=compute
        )
        assert (again.payload, hit) == (b"[1]", True)
        await cache.bump()
        fresh, hit = await cache.get_or_compute(
            "flows:24h:all", "a", sliding=False, compute=compute
        )
        assert (fresh.payload, hit) == (b"[2]", False)
        assert compute.calls == 2

    run_with(store_url, test)


def test_sliding_windows_expire_after_the_refresh_period(store_url: str | None) -> None:
    async def test(store: Store) -> None:
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        compute = Computer(clock)
        await cache.get_or_compute("k", "now", sliding=True, compute=compute)
        clock.now += timedelta(seconds=29)
        _, hit = await cache.get_or_compute("k", "now", sliding=True, compute=compute)
        assert hit
        clock.now += timedelta(seconds=2)
        _, hit = await cache.get_or_compute("k", "now", sliding=True, compute=compute)
        assert not hit
        # Historical entries do not slide.
        await cache.get_or_compute("k", "then", sliding=False, compute=compute)
        clock.now += timedelta(hours=5)
        _, hit = await cache.get_or_compute("k", "then", sliding=False, compute=compute)
        assert hit

    run_with(store_url, test)


def test_concurrent_misses_compute_once(store_url: str | None) -> None:
    async def test(store: Store) -> None:
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        compute = Computer(clock, delay=0.2)
        results = await asyncio.gather(
            *(cache.get_or_compute("k", "f", sliding=False, compute=compute) for _ in range(20))
        )
        assert compute.calls == 1
        assert {entry.payload for entry, _ in results} == {b"[1]"}

    run_with(store_url, test)


def test_two_workers_compute_once_through_the_lock() -> None:
    """Two caches on one Redis (two workers): the second waits for the first's entry."""

    async def main() -> None:
        await _flush(TEST_REDIS_URL)
        stores = [open_store(TEST_REDIS_URL), open_store(TEST_REDIS_URL)]
        clock = Clock()
        computers = [Computer(clock, delay=0.3), Computer(clock, delay=0.3)]
        caches = [ResponseCache(s, refresh_seconds=30, clock=clock) for s in stores]
        try:
            results = await asyncio.gather(
                *(
                    c.get_or_compute("k", "f", sliding=False, compute=p)
                    for c, p in zip(caches, computers, strict=True)
                )
            )
            assert computers[0].calls + computers[1].calls == 1
            assert results[0][0].payload == results[1][0].payload
        finally:
            for s in stores:
                await s.close()

    asyncio.run(main())


def test_entries_and_the_generation_live_24_hours() -> None:
    async def main() -> None:
        await _flush(TEST_REDIS_URL)
        store = open_store(TEST_REDIS_URL)
        client = redis.asyncio.Redis.from_url(TEST_REDIS_URL)
        try:
            clock = Clock()
            cache = ResponseCache(store, refresh_seconds=30, clock=clock)
            await cache.get_or_compute("flows:24h:all", "f", sliding=False, compute=Computer(clock))
            await cache.bump()
            for key in ("flows:24h:all", GENERATION_KEY):
                ttl = await client.ttl(key)
                assert TTL_SECONDS - 60 < ttl <= TTL_SECONDS, key
        finally:
            await client.aclose()
            await store.close()

    asyncio.run(main())


def test_without_a_store_everything_is_computed() -> None:
    async def main() -> None:
        clock = Clock()
        cache = ResponseCache(None, refresh_seconds=30, clock=clock)
        compute = Computer(clock)
        for _ in range(2):
            _, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert not hit
        assert compute.calls == 2
        assert cache.status() == "disabled"

    asyncio.run(main())


def test_redis_down_never_fails_a_read_and_caching_resumes(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        store = open_store(throwaway_redis.url)
        clock = Clock()
        cache = ResponseCache(
            store,
            refresh_seconds=30,
            clock=clock,
            breaker=CircuitBreaker(failures=2, reset_seconds=0.2),
        )
        compute = Computer(clock)
        try:
            await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            throwaway_redis.stop()
            for _ in range(4):
                entry, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
                assert not hit and entry.payload
            assert cache.status() == "degraded"
            # An ingest while Redis is down cannot replace the token...
            await cache.bump()
            throwaway_redis.start()
            await asyncio.sleep(0.3)
            # ...so the first call after the outage replaces it before trusting any entry.
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                entry, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
                if hit:
                    break
                assert asyncio.get_running_loop().time() < deadline, "caching did not resume"
                await asyncio.sleep(0.1)
            assert cache.status() == "ok"
        finally:
            await store.close()

    asyncio.run(main())


def test_a_missed_bump_is_replayed_before_entries_are_trusted(
    throwaway_redis: RedisServer,
) -> None:
    """Entries computed before an ingest that Redis did not hear about are never served."""

    async def main() -> None:
        store = open_store(throwaway_redis.url)
        clock = Clock()
        cache = ResponseCache(
            store,
            refresh_seconds=30,
            clock=clock,
            breaker=CircuitBreaker(failures=1, reset_seconds=0.1),
        )
        compute = Computer(clock)
        try:
            await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            throwaway_redis.pause()
            await cache.bump()  # the ingest's bump fails: Redis does not answer
            throwaway_redis.resume()
            await asyncio.sleep(0.2)
            entry, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert entry.payload != b"[1]"
            assert not hit
        finally:
            await store.close()

    asyncio.run(main())
