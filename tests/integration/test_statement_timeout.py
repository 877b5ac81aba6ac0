"""A request stuck behind a lock gets a 503 within DB_STATEMENT_TIMEOUT_SECONDS, not the lock's
whole duration, and its pooled connection comes back usable."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from starlette.testclient import TestClient

from db import migrate
from db.engine import make_engine
from db.migrate import MIGRATION_LOCK_ID
from graph.http.app import create_app
from graph.settings import Settings
from tests.support.factories import make_settings, record, write_headers
from tests.support.servers import empty_archive


def test_a_read_behind_a_lock_answers_503_then_200(postgres_url: str) -> None:
    asyncio.run(empty_archive(postgres_url))
    settings = make_settings(
        postgres_url, db_statement_timeout_seconds=0.5, db_pool_size=1, db_max_overflow=0
    )
    with TestClient(create_app(settings)) as client:
        stored = client.post("/v1/trends", json=[record("JP", "Quake")], headers=write_headers())
        assert stored.status_code == 200
        portal = client.portal
        assert portal is not None
        holder = make_engine(postgres_url)  # no statement timeout: it holds the lock
        locking = holder.connect()
        portal.call(locking.start)
        try:
            lock = sa.text("LOCK TABLE trends_archive IN ACCESS EXCLUSIVE MODE")
            portal.call(locking.execute, lock)
            started = time.monotonic()
            response = client.get("/v1/trends")
            assert time.monotonic() - started < 3
            assert response.status_code == 503
            assert response.json()["error"] == "dependency_unavailable"
        finally:
            portal.call(locking.close)  # rolls back: the lock is released
            portal.call(holder.dispose)
        # The pool's only connection was given back and still works.
        again = client.get("/v1/trends")
        assert again.status_code == 200 and again.json()["total_count"] == 1


def test_the_setting_defaults_to_ten_seconds_and_refuses_negatives() -> None:
    assert Settings(_env_file=None).db_statement_timeout_seconds == 10
    with pytest.raises(ValidationError, match="db_statement_timeout_seconds"):
        make_settings("sqlite:///x.db", db_statement_timeout_seconds=-1)


def test_migrations_are_not_cut_short_by_the_statement_timeout(
    schemaless_postgres_url: str,
) -> None:
    """AUTO_MIGRATE waits for another worker's migration, and migrates, past any statement
    timeout the engine sets."""
    url = schemaless_postgres_url
    holder = make_engine(url)

    async def hold_the_migration_lock() -> None:
        async with holder.begin() as conn:
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
            )
            await asyncio.sleep(1)

    async def main() -> None:
        held = asyncio.create_task(hold_the_migration_lock())
        await asyncio.sleep(0.3)
        engine = make_engine(url, statement_timeout_ms=200)
        try:
            await migrate.upgrade(engine)
            assert await migrate.current_revision(engine) == migrate.head_revision()
        finally:
            await held
            await engine.dispose()
            await holder.dispose()

    asyncio.run(main())
