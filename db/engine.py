"""Async engines and sessions, from a URL.

Accepted URLs: ``postgresql://``, ``postgres://`` and ``postgresql+asyncpg://`` (asyncpg
underneath), ``sqlite:///path`` and ``sqlite+aiosqlite:///path`` (aiosqlite underneath).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


class UnsupportedDatabaseURL(ValueError):
    """The URL names a database or driver trendmap does not run on."""


def async_url(url: str | URL) -> URL:
    """The URL with its async driver: ``postgresql://`` becomes ``postgresql+asyncpg://``."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnsupportedDatabaseURL(f"not a database URL: {url!s}") from exc
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UnsupportedDatabaseURL(
            f"unsupported database {parsed.drivername!r}: use postgresql:// or sqlite:///path"
        )
    return parsed.set(drivername=driver)


def make_engine(
    url: str | URL,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 5.0,
    connect_timeout: float = 5.0,
    statement_timeout_ms: int = 0,
) -> AsyncEngine:
    """An async engine with pre-ping and a bounded pool (SQLite gets its own pool rules).

    ``statement_timeout_ms`` (0: none) bounds every statement on PostgreSQL, lock waits
    included; PostgreSQL cancels a statement past it (SQLSTATE 57014), which `db.errors`
    turns into StorageUnavailable. SQLite ignores it: its busy timeout bounds lock waits.
    """
    if statement_timeout_ms < 0:
        raise ValueError("statement_timeout_ms must be 0 (none) or more")
    target = async_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if target.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {"timeout": connect_timeout}
        if statement_timeout_ms:
            connect_args["server_settings"] = {"statement_timeout": str(statement_timeout_ms)}
        kwargs.update(
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            connect_args=connect_args,
        )
        return create_async_engine(target, **kwargs)
    kwargs["connect_args"] = {"timeout": connect_timeout}
    engine = create_async_engine(target, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while a batch is being written; the busy timeout makes concurrent
    # writers (several CLI ingests, a server and a CLI) wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
