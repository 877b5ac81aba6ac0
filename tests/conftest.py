"""Fixtures: the app on SQLite and on a real PostgreSQL, and a way to make records.

PostgreSQL is ``TEST_DATABASE_URL`` (default: the local server). Each test session works in a
throwaway database it creates and drops. Tests that need PostgreSQL fail, never skip, when it
is not there."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from db.engine import make_engine
from graph.http.app import create_app
from graph.settings import Settings
from tests.support.factories import make_settings
from tests.support.servers import PostgresServer, RedisServer, empty_archive


def _admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(statement: str) -> None:
    engine = make_engine(_admin_url())
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"trendmap_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(_admin_url()).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def schemaless_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database with no trendmap schema."""
    name = f"trendmap_empty_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each app test runs once on SQLite and once on PostgreSQL, on an empty archive."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trendmap.db'}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(empty_archive(url))
    return url


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url))) as test_client:
        yield test_client


@pytest.fixture
def app_with(tmp_path: Path) -> Iterator[Any]:
    """Build running apps on SQLite with some settings overridden: ``app_with(**overrides)``."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(
            create_app(make_settings(f"sqlite:///{tmp_path / 'a.db'}", **overrides))
        )
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def redis_settings(throwaway_redis: RedisServer, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on SQLite and a redis-server of the test's own (``throwaway_redis``, which the
    test may also ask for, to pause it or to write beside the app), with some overridden:
    ``redis_settings(**overrides)``. Shutdown waits at most 1 s: the publisher sometimes
    outlives a TestClient's loop."""

    def build(**overrides: Any) -> Settings:
        return make_settings(
            f"sqlite:///{tmp_path / 'a.db'}",
            redis_url=throwaway_redis.url,
            shutdown_timeout_seconds=1,
            **overrides,
        )

    return build


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, to kill, restart, pause and resume."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def throwaway_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to stop and start again."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def feed_server() -> Iterator[Any]:
    """A real HTTP server on loopback playing upstream feeds (tests/feedserver.py)."""
    from tests.support.feedserver import serve_feeds

    yield from serve_feeds()
