"""Outages come out of `db` as StorageUnavailable, whatever the driver raised."""

from __future__ import annotations

import asyncio
import functools
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from db import migrate
from db.engine import make_engine
from db.errors import StorageUnavailable, translated
from db.repository import RecordFilter, TrendRepository, _driver
from graph.core.records import Record

T0 = datetime(2026, 11, 20, tzinfo=UTC)
_SSL_REQUEST = 80877103


async def _login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes | None
) -> None:
    """Take a PostgreSQL login (no TLS: the client goes on with a plain startup), then send
    ``answer`` to it and hang up, or hang up without a word (None)."""
    try:
        while True:
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if struct.unpack("!i", body[:4])[0] == _SSL_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            if answer is not None:
                writer.write(answer)
                await writer.drain()
            return
    except asyncio.IncompleteReadError:
        return
    finally:
        writer.close()


def _fatal(sqlstate: bytes, message: bytes) -> bytes:
    """A FATAL ErrorResponse, as PostgreSQL refuses a login."""
    fields = b"SFATAL\0VFATAL\0C" + sqlstate + b"\0M" + message + b"\0\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


# Logins PostgreSQL refuses or drops for now, each an outage (a 503), not a bug (a 500):
_FOR_NOW = {
    # still starting: CannotConnectNowError (57P03)
    "starting up": _fatal(b"57P03", b"the database system is starting up"),
    # every connection slot taken (max_connections): TooManyConnectionsError (53300)
    "full": _fatal(b"53300", b"sorry, too many clients already"),
    # going down or coming up under `pg_ctl stop -m immediate`: it takes the connection and
    # hangs up on the login. asyncpg raises ConnectionDoesNotExistError (08003), which
    # SQLAlchemy wraps at connect time in a plain DBAPIError not marked invalidated: the
    # soak's one 500 on GET /v1/flows.
    "hanging up": None,
}


def _calls(repo: TrendRepository) -> list[Callable[[], Awaitable[object]]]:
    record = Record(T0, "US", "A", "a", 1, 0.5, None)
    return [
        repo.ping,
        lambda: repo.upsert([record]),
        lambda: repo.aggregate_window(T0, T0, T0),
        lambda: repo.page(RecordFilter(), first=1),
    ]


async def _every_call_is_unavailable(url: str) -> None:
    engine = make_engine(url, connect_timeout=2)
    try:
        for call in _calls(TrendRepository(engine)):
            with pytest.raises(StorageUnavailable):
                await call()
    finally:
        await engine.dispose()


def test_an_unreachable_server_is_storage_unavailable() -> None:
    asyncio.run(_every_call_is_unavailable("postgresql://postgres@127.0.0.1:1/none"))


@pytest.mark.parametrize("answer", list(_FOR_NOW.values()), ids=list(_FOR_NOW))
def test_a_server_refusing_logins_for_now_is_storage_unavailable(answer: bytes | None) -> None:
    """asyncpg raises these as PostgresErrors, which SQLAlchemy wraps in neither an
    OperationalError nor an InterfaceError; they are still outages, not bugs (no 500)."""

    async def main() -> None:
        server = await asyncio.start_server(
            functools.partial(_login, answer=answer), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        async with server:
            await _every_call_is_unavailable(f"postgresql://postgres@127.0.0.1:{port}/trendmap")

    asyncio.run(main())


def test_a_sqlite_file_that_cannot_be_opened_is_storage_unavailable() -> None:
    async def main() -> None:
        await _every_call_is_unavailable("sqlite:////nonexistent-dir/trendmap.db")
        # aiosqlite stops a connection that failed to open from its own thread, and reports it
        # to the loop: let those threads finish while the loop is still there to hear it.
        for thread in threading.enumerate():
            if thread.name.endswith("(_connection_worker_thread)"):
                await asyncio.to_thread(thread.join, 5)

    asyncio.run(main())


async def _cancelled_by_the_statement_timeout(url: str) -> None:
    engine = make_engine(url, statement_timeout_ms=100)
    try:
        with pytest.raises(StorageUnavailable) as raised:
            async with translated("sleeping"), engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(5)"))
        assert getattr(raised.value.__cause__, "orig", None) is not None
        assert raised.value.__cause__.orig.sqlstate == "57014"  # type: ignore[union-attr]
        # Not every database error is an outage: a bug still propagates as it is.
        with pytest.raises(sqlalchemy.exc.ProgrammingError):
            async with translated("a typo"), engine.connect() as conn:
                await conn.execute(sa.text("SELEC 1"))
    finally:
        await engine.dispose()


def test_a_statement_past_the_statement_timeout_is_storage_unavailable(postgres_url: str) -> None:
    """asyncpg's QueryCanceledError (SQLSTATE 57014) comes wrapped in a plain DBAPIError."""
    started = time.monotonic()
    asyncio.run(_cancelled_by_the_statement_timeout(postgres_url))
    assert time.monotonic() - started < 3


async def _read_behind_a_lock(url: str) -> None:
    holder = make_engine(url)
    await migrate.upgrade(holder)
    engine = make_engine(url, statement_timeout_ms=200)
    try:
        async with holder.begin() as locking:
            await locking.execute(sa.text("LOCK TABLE trends_archive IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(StorageUnavailable):
                await TrendRepository(engine).page(RecordFilter(), first=1)
        # The lock is gone: the same pool answers again.
        await TrendRepository(engine).page(RecordFilter(), first=1)
    finally:
        await engine.dispose()
        await holder.dispose()


def test_a_read_stuck_behind_a_lock_is_storage_unavailable(postgres_url: str) -> None:
    asyncio.run(_read_behind_a_lock(postgres_url))


def test_a_driver_calls_errors_come_out_as_sqlalchemy_would_raise_them(postgres_url: str) -> None:
    """What runs on the asyncpg connection itself (COPY): a driver error comes out as
    SQLAlchemy's, anything else as it is, so a timeout stays an outage (a 503), not a
    StatementError that db.errors takes for a bug (a 500)."""

    async def main() -> None:
        engine = make_engine(postgres_url)
        try:
            async with engine.connect() as conn, conn.begin():
                await conn.execute(sa.text("SELECT 1"))
                with pytest.raises(sqlalchemy.exc.DBAPIError):
                    async with _driver(conn, "SELECT 1 / 0") as driver:
                        await driver.execute("SELECT 1 / 0")
            for outage in (TimeoutError, OSError):
                with pytest.raises(StorageUnavailable):
                    async with translated("aggregate"), engine.connect() as conn, conn.begin():
                        await conn.execute(sa.text("SELECT 1"))
                        async with _driver(conn, "COPY") as driver:
                            await driver.execute("SELECT 1")
                            raise outage("the socket went away")
        finally:
            await engine.dispose()

    asyncio.run(main())
