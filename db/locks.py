"""PostgreSQL session advisory locks: :class:`AdvisoryLock`, held by one pooled connection.

A session lock lives as long as the session holding it, so the lock keeps that connection out
of the pool while held: when the process dies, the server ends the session and frees the lock.
Every database failure comes out as :class:`~db.errors.StorageUnavailable`.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.errors import StorageUnavailable, translated

__all__ = ["AdvisoryLock", "advisory_lock"]

_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:id)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:id)")
_ALIVE = sa.text("SELECT 1")


class AdvisoryLock:
    """``pg_try_advisory_lock(lock_id)`` on a connection of ``engine``, kept while held."""

    def __init__(self, engine: AsyncEngine, lock_id: int) -> None:
        self.engine = engine
        self.lock_id = lock_id
        self._conn: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lock (:meth:`still_held` checks)."""
        return self._conn is not None

    async def try_acquire(self) -> bool:
        """Take the lock if no session holds it; True when it is ours (already, or now)."""
        if self._conn is not None:
            return await self.still_held()
        async with translated("taking an advisory lock"):
            conn = await self.engine.connect()
        try:
            async with translated("taking an advisory lock"):
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                got = bool(await conn.scalar(_TRY_LOCK, {"id": self.lock_id}))
        except BaseException:
            await _close(conn)
            raise
        if got:
            self._conn = conn
        else:
            await _close(conn)
        return got

    async def still_held(self) -> bool:
        """True while our session answers (its lock lives with it); False when not held.

        A session that died (killed, the server restarted) is dropped and StorageUnavailable
        raised: the lock is gone, and whether another session took it is unknown.
        """
        if self._conn is None:
            return False
        try:
            async with translated("checking an advisory lock"):
                await self._conn.execute(_ALIVE)
        except BaseException:
            conn, self._conn = self._conn, None
            await _discard(conn)
            raise
        return True

    async def release(self) -> None:
        """Unlock and give the connection back; a no-op when not held."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            async with translated("releasing an advisory lock"):
                await conn.execute(_UNLOCK, {"id": self.lock_id})
        except BaseException:
            # The session may still hold the lock: it must not go back to the pool.
            await _discard(conn)
            raise
        await _close(conn)


def advisory_lock(engine: AsyncEngine, lock_id: int) -> AdvisoryLock | None:
    """An :class:`AdvisoryLock` when ``engine`` is PostgreSQL's; None for SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    return AdvisoryLock(engine, lock_id)


async def _close(conn: AsyncConnection) -> None:
    # Closing a connection whose server went away is not worth reporting.
    with contextlib.suppress(StorageUnavailable):
        async with translated("closing a connection"):
            await conn.close()


async def _discard(conn: AsyncConnection) -> None:
    with contextlib.suppress(StorageUnavailable):
        async with translated("closing a connection"):
            await conn.invalidate()
            await conn.close()
