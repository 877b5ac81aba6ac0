"""Database URLs: every accepted form gets its async driver; others are refused clearly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import UnsupportedDatabaseURL, async_url, make_engine


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h:5432/d", "postgresql+asyncpg"),
        ("postgres://u@h/d", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg"),
        ("sqlite:///./trendmap.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite"),
    ],
)
def test_async_drivers(given: str, driver: str) -> None:
    url = async_url(given)
    assert url.drivername == driver
    assert url.database == async_url(given.replace(given.split(":")[0], driver)).database


@pytest.mark.parametrize("given", ["mysql://u@h/d", "not a url", "postgresql+psycopg2://u@h/d"])
def test_unsupported(given: str) -> None:
    with pytest.raises(UnsupportedDatabaseURL):
        async_url(given)


def test_pool_settings_reach_postgresql() -> None:
    engine = make_engine("postgresql://u@h/d", pool_size=3, max_overflow=2, pool_timeout=1.5)
    pool = engine.pool
    assert pool.size() == 3  # type: ignore[attr-defined]
    assert pool._max_overflow == 2  # type: ignore[attr-defined]
    assert pool._timeout == 1.5  # type: ignore[attr-defined]
    assert engine.pool._pre_ping is True  # type: ignore[attr-defined]


def test_a_negative_statement_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="statement_timeout_ms"):
        make_engine("postgresql://u@h/d", statement_timeout_ms=-1)


async def _statement_timeout(url: str, **kwargs: int) -> str:
    engine = make_engine(url, **kwargs)
    try:
        async with engine.connect() as conn:
            return str((await conn.execute(sa.text("SHOW statement_timeout"))).scalar_one())
    finally:
        await engine.dispose()


def test_the_statement_timeout_reaches_every_postgresql_session(postgres_url: str) -> None:
    assert asyncio.run(_statement_timeout(postgres_url, statement_timeout_ms=1500)) == "1500ms"
    # 0 leaves the server's own setting (none, on a default server).
    assert asyncio.run(_statement_timeout(postgres_url)) == "0"


def test_sqlite_takes_the_statement_timeout_and_keeps_its_busy_timeout(tmp_path: Path) -> None:
    """SQLite has no statement timeout: its busy timeout already bounds lock waits."""

    async def main() -> int:
        engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", statement_timeout_ms=500)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 5000
