"""The response cache: generations, sliding windows, single flight, and surviving Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio

from graph.breaker import CircuitBreaker
from graph.cache.entry import Entry
from graph.cache.keys import (
    GENERATION_CHANNEL,
    GENERATION_KEY,
    TTL_SECONDS,
    countries_hash,
    flows_key,
)
from graph.cache.response_cache import ResponseCache
from graph.stores import Store, open_store
from tests.support.factories import TEST_REDIS_URL
from tests.support.servers import RedisServer

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


def test_a_reader_that_goes_away_does_not_fail_the_others(store_url: str | None) -> None:
    """The request that started a computation is cancelled (its client left, its server is
    stopping): the readers that joined it still get the answer, computed once."""

    async def test(store: Store) -> None:
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        compute = Computer(clock, delay=0.2)
        first = asyncio.create_task(cache.get_or_compute("k", "f", sliding=False, compute=compute))
        await asyncio.sleep(0.05)  # the first reader is computing
        others = [
            asyncio.create_task(cache.get_or_compute("k", "f", sliding=False, compute=compute))
            for _ in range(5)
        ]
        await asyncio.sleep(0.05)
        first.cancel()
        results = await asyncio.gather(*others)
        assert {entry.payload for entry, _ in results} == {b"[1]"}
        assert compute.calls == 1
        with pytest.raises(asyncio.CancelledError):
            await first

    run_with(store_url, test)


def test_shutdown_waits_for_computations_whose_readers_left() -> None:
    """drain() lets a computation finish (and release its database connection) after its
    only reader was cancelled."""

    async def test(store: Store) -> None:
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        finished = asyncio.Event()

        async def compute(token: str) -> Entry:
            await asyncio.sleep(0.2)
            finished.set()
            return Entry(token, AS_OF, clock(), b"[]")

        reader = asyncio.create_task(cache.get_or_compute("k", "f", sliding=False, compute=compute))
        await asyncio.sleep(0.05)
        reader.cancel()
        assert not finished.is_set()
        await cache.drain(5.0)
        assert finished.is_set()

    run_with(None, test)


def test_a_read_after_a_bump_never_joins_a_computation_from_before_it(
    store_url: str | None,
) -> None:
    """The single flight is per token: a read that starts after an ingest's bump must not be
    handed an answer computed from the data before it."""

    async def test(store: Store) -> None:
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        compute = Computer(clock, delay=0.3)
        before = asyncio.create_task(cache.get_or_compute("k", "f", sliding=False, compute=compute))
        await _until(lambda: compute.calls == 1)
        await cache.bump()  # an ingest committed while the first answer was being computed
        after, hit = await asyncio.wait_for(
            cache.get_or_compute("k", "f", sliding=False, compute=compute), 5
        )
        old, _ = await before
        assert not hit
        assert after.generation != old.generation
        assert after.payload == b"[2]"

    run_with(store_url, test)


def test_another_worker_does_not_wait_for_a_computation_from_before_a_bump() -> None:
    """The cross-worker lock is per token too: a worker reading after a bump computes at once
    instead of waiting out the lock of an answer it could never use."""

    async def main() -> None:
        await _flush(TEST_REDIS_URL)
        stores = [open_store(TEST_REDIS_URL), open_store(TEST_REDIS_URL)]
        clock = Clock()
        slow, quick = Computer(clock, delay=1.0), Computer(clock)
        a, b = (ResponseCache(s, refresh_seconds=30, clock=clock) for s in stores)
        try:
            before = asyncio.create_task(a.get_or_compute("k", "f", sliding=False, compute=slow))
            await _until(lambda: slow.calls == 1)
            await b.bump()
            started = asyncio.get_running_loop().time()
            entry, hit = await b.get_or_compute("k", "f", sliding=False, compute=quick)
            assert asyncio.get_running_loop().time() - started < 0.5
            assert (entry.payload, hit, quick.calls) == (b"[1]", False, 1)
            await before
        finally:
            for s in stores:
                await s.close()

    asyncio.run(main())


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


def test_entries_live_24_hours_and_the_generation_outlives_them() -> None:
    """A generation counter that expired could count up to an old entry's label again."""

    async def main() -> None:
        await _flush(TEST_REDIS_URL)
        store = open_store(TEST_REDIS_URL)
        client = redis.asyncio.Redis.from_url(TEST_REDIS_URL)
        try:
            clock = Clock()
            cache = ResponseCache(store, refresh_seconds=30, clock=clock)
            await cache.get_or_compute("flows:24h:all", "f", sliding=False, compute=Computer(clock))
            await cache.bump()
            ttl = await client.ttl("flows:24h:all")
            assert TTL_SECONDS - 60 < ttl <= TTL_SECONDS
            assert await client.ttl(GENERATION_KEY) == -1  # no expiry
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


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


class Worker:
    """A cache on its own connections to a shared Redis, keeping a local copy (listening)."""

    def __init__(self, url: str, clock: Clock, local_seconds: float = 5.0) -> None:
        self.url = url
        self.store = open_store(url)
        self.cache = ResponseCache(
            self.store,
            refresh_seconds=30,
            clock=clock,
            breaker=CircuitBreaker(failures=1, reset_seconds=60),
        )
        self.compute = Computer(clock)
        self.local_seconds = local_seconds
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.cache.listen(self.local_seconds))
        # Subscribed once a bump published from elsewhere reaches it.
        epoch = self.cache.local_copy.epoch
        probe = open_store(self.url)
        try:
            while self.cache.local_copy.epoch == epoch:
                await probe.publish(GENERATION_CHANNEL, b"probe")
                await asyncio.sleep(0.02)
        finally:
            await probe.close()

    async def read(self, field: str = "f") -> tuple[bytes, bool]:
        entry, hit = await self.cache.get_or_compute(
            "k", field, sliding=False, compute=self.compute
        )
        return entry.payload, hit

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.store.close()


async def _workers(url: str, clock: Clock, count: int, **options: float) -> list[Worker]:
    workers = []
    for _ in range(count):
        worker = Worker(url, clock, **options)
        await worker.start()
        workers.append(worker)
    return workers


def test_the_local_copy_answers_without_the_store(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        clock = Clock()
        [worker] = await _workers(throwaway_redis.url, clock, 1)
        try:
            assert await worker.read() == (b"[1]", False)
            assert await worker.read() == (b"[1]", True)  # read from Redis: now copied
            throwaway_redis.pause()
            # Redis does not answer, yet within CACHE_LOCAL_SECONDS the copy does.
            assert await worker.read() == (b"[1]", True)
            assert worker.compute.calls == 1
        finally:
            throwaway_redis.resume()
            await worker.close()

    asyncio.run(main())


def test_without_listening_nothing_is_copied(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        store = open_store(throwaway_redis.url)
        clock = Clock()
        cache = ResponseCache(store, refresh_seconds=30, clock=clock)
        compute = Computer(clock)
        strict = asyncio.get_running_loop().create_task(cache.listen(0))  # strict mode
        try:
            for _ in range(3):
                await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert strict.done()
            # Only the store could answer a hit now, and it does not.
            throwaway_redis.pause()
            entry, hit = await cache.get_or_compute("k", "f", sliding=False, compute=compute)
            assert (entry.payload, hit) == (b"[2]", False)
        finally:
            throwaway_redis.resume()
            await store.close()

    asyncio.run(main())


def test_an_ingest_here_drops_the_copy_before_it_returns(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        clock = Clock()
        [worker] = await _workers(throwaway_redis.url, clock, 1)
        try:
            await worker.read()
            assert await worker.read() == (b"[1]", True)
            await worker.cache.bump()
            # No waiting for the channel: the next read on this worker sees the write.
            assert await worker.read() == (b"[2]", False)
        finally:
            await worker.close()

    asyncio.run(main())


def test_an_ingest_on_another_worker_drops_the_copy_through_the_channel(
    throwaway_redis: RedisServer,
) -> None:
    async def main() -> None:
        clock = Clock()
        a, b = await _workers(throwaway_redis.url, clock, 2)
        try:
            await a.read()
            assert await a.read() == (b"[1]", True)
            epoch = a.cache.local_copy.epoch
            await b.cache.bump()
            await _until(lambda: a.cache.local_copy.epoch != epoch)
            payload, hit = await a.read()
            assert not hit and payload == b"[2]"
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_lost_message_costs_at_most_the_local_seconds(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        clock = Clock()
        [worker] = await _workers(throwaway_redis.url, clock, 1, local_seconds=0.3)
        client = redis.asyncio.Redis.from_url(throwaway_redis.url)
        try:
            await worker.read()
            assert await worker.read() == (b"[1]", True)
            # Another worker's bump whose message never arrives.
            await client.incr(GENERATION_KEY)
            started = asyncio.get_running_loop().time()
            while (await worker.read())[1]:
                await asyncio.sleep(0.02)
            assert asyncio.get_running_loop().time() - started < 0.3 + 0.2
            assert await worker.read() == (b"[2]", True)
        finally:
            await client.aclose()
            await worker.close()

    asyncio.run(main())


def test_a_read_that_overlaps_a_bump_is_not_copied(throwaway_redis: RedisServer) -> None:
    async def main() -> None:
        clock = Clock()
        [worker] = await _workers(throwaway_redis.url, clock, 1)
        try:
            await worker.read()
            # The read's reply comes back after the bump: it must not fill the copy.
            throwaway_redis.pause()
            reading = asyncio.get_running_loop().create_task(
                worker.cache.lookup("k", "f", sliding=False)
            )
            await asyncio.sleep(0.05)
            worker.cache.local_copy.invalidate()
            throwaway_redis.resume()
            entry, _ = await reading
            assert entry is not None and entry.payload == b"[1]"
            # Not copied: with the store silent, the next read has to compute.
            throwaway_redis.pause()
            assert await worker.read() == (b"[2]", False)
        finally:
            throwaway_redis.resume()
            await worker.close()

    asyncio.run(main())
