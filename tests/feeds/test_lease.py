"""The poller lease: one holder through Redis, the in-process store or PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from db.engine import make_engine
from db.locks import AdvisoryLock, advisory_lock
from graph.feeds.board import STATUS_KEY
from graph.feeds.lease import LEASE_KEY, POLLER_LOCK_ID, AdvisoryLease, StoreLease, make_lease
from graph.stores import open_store
from tests.support.factories import TEST_REDIS_URL
from tests.support.servers import RedisServer


@pytest.fixture(params=["memory", "redis"])
def lease_store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    import redis

    with redis.Redis.from_url(TEST_REDIS_URL) as client:
        client.delete(LEASE_KEY, STATUS_KEY)
    return TEST_REDIS_URL


def test_a_store_lease_has_one_holder_renews_and_passes_on_when_it_lapses(
    lease_store_url: str | None,
) -> None:
    async def main() -> None:
        store = open_store(lease_store_url)
        first, second = StoreLease(store, 0.5), StoreLease(store, 0.5)
        try:
            assert await first.hold() and not await second.hold()
            for _ in range(4):  # renewed well past the TTL
                await asyncio.sleep(0.2)
                assert await first.hold() and not await second.hold()
            await asyncio.sleep(0.7)  # the holder stops renewing (a dead worker)
            assert await second.hold()
            assert not await first.hold(), "the old holder still believes it leads"
            await second.release()
            assert await first.hold()
            await first.release()
        finally:
            await store.close()

    asyncio.run(main())


def test_a_lease_is_lost_while_redis_is_down_and_taken_again_after(
    throwaway_redis: RedisServer,
) -> None:
    async def main() -> None:
        store = open_store(throwaway_redis.url)
        lease = StoreLease(store, 5)
        try:
            assert await lease.hold()
            throwaway_redis.stop()
            assert not await lease.hold()
            throwaway_redis.start()
            assert await lease.hold()
        finally:
            await lease.release()
            await store.close()

    asyncio.run(main())


def test_an_advisory_lease_has_one_holder_until_released_or_its_session_dies(
    postgres_url: str,
) -> None:
    async def main() -> None:
        one, two = make_engine(postgres_url), make_engine(postgres_url)
        first = AdvisoryLease(AdvisoryLock(one, POLLER_LOCK_ID))
        second = AdvisoryLease(AdvisoryLock(two, POLLER_LOCK_ID))
        try:
            assert await first.hold() and await first.hold()
            assert not await second.hold()
            await first.release()
            assert await second.hold() and not await first.hold()
            async with one.connect() as conn:  # the holder's session dies (a killed worker)
                await conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND objid = :low"
                    ),
                    {"low": 0x7472656E646D02 & 0xFFFFFFFF},
                )
            assert not await second.hold(), "a lease survived its session"
            assert await first.hold()
            await first.release()
        finally:
            await one.dispose()
            await two.dispose()

    asyncio.run(main())


def test_the_lease_is_redis_then_postgres_then_in_process(postgres_url: str) -> None:
    async def main() -> None:
        pg, lite = make_engine(postgres_url), make_engine("sqlite:///:memory:")
        memory, redis_store = open_store(None), open_store(TEST_REDIS_URL)
        try:
            assert make_lease(redis_store, 5, advisory_lock(pg, POLLER_LOCK_ID)).kind == "redis"
            assert make_lease(memory, 5, advisory_lock(pg, POLLER_LOCK_ID)).kind == "postgres"
            assert make_lease(memory, 5, advisory_lock(lite, POLLER_LOCK_ID)).kind == "in-process"
        finally:
            await redis_store.close()
            await pg.dispose()
            await lite.dispose()

    asyncio.run(main())
