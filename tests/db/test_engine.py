"""Database URLs: every accepted form gets its async driver; others are refused clearly."""

from __future__ import annotations

import pytest

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
