"""PostgreSQL session advisory locks against a real server: one holder, release, dead sessions."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import make_engine
from db.errors import StorageUnavailable
from db.locks import AdvisoryLock, advisory_lock
from tests.support.servers import free_port

LOCK_ID = 0x7472656E646D7E  # only these tests use it


async def holders(engine: AsyncEngine) -> list[int]:
    """The backend pids holding LOCK_ID."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :high AND objid = :low"
            ),
            {"high": LOCK_ID >> 32, "low": LOCK_ID & 0xFFFFFFFF},
        )
        return [pid for (pid,) in rows]


def test_two_locks_on_one_id_have_one_holder_until_it_releases(postgres_url: str) -> None:
    async def main() -> None:
        one, two = make_engine(postgres_url), make_engine(postgres_url)
        first, second = AdvisoryLock(one, LOCK_ID), AdvisoryLock(two, LOCK_ID)
        try:
            assert not first.held and not await first.still_held()
            assert await first.try_acquire() and first.held
            assert await first.try_acquire(), "the holder asking again is still the holder"
            assert not await second.try_acquire() and not second.held
            assert len(await holders(one)) == 1
            await first.release()
            assert not first.held and await holders(one) == []
            assert await second.try_acquire() and not await first.try_acquire()
            await second.release()
            await second.release()  # releasing what is not held does nothing
        finally:
            await one.dispose()
            await two.dispose()

    asyncio.run(main())


def test_a_killed_session_frees_the_lock(postgres_url: str) -> None:
    async def main() -> None:
        one, two = make_engine(postgres_url), make_engine(postgres_url)
        first, second = AdvisoryLock(one, LOCK_ID), AdvisoryLock(two, LOCK_ID)
        try:
            assert await first.try_acquire()
            (pid,) = await holders(two)
            async with two.connect() as conn:  # the holder's process is killed
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert await second.try_acquire(), "the lock outlived its session"
            with pytest.raises(StorageUnavailable):
                await first.still_held()
            assert not first.held
            assert not await first.try_acquire()
            await second.release()
            assert await first.try_acquire()
            await first.release()
        finally:
            await one.dispose()
            await two.dispose()

    asyncio.run(main())


def test_an_unreachable_database_is_storage_unavailable() -> None:
    async def main() -> None:
        engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=1)
        lock = AdvisoryLock(engine, LOCK_ID)
        try:
            with pytest.raises(StorageUnavailable):
                await lock.try_acquire()
            assert not lock.held
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_only_postgresql_has_advisory_locks(postgres_url: str) -> None:
    async def main() -> None:
        pg, lite = make_engine(postgres_url), make_engine("sqlite:///:memory:")
        try:
            lock = advisory_lock(pg, LOCK_ID)
            assert lock is not None and lock.lock_id == LOCK_ID
            assert advisory_lock(lite, LOCK_ID) is None
        finally:
            await pg.dispose()
            await lite.dispose()

    asyncio.run(main())
