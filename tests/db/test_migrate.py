"""Migrations: reversible on PostgreSQL and SQLite, safe with concurrent migrators."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.engine import make_engine
from db.tables import POSTGRESQL_ONLY_TABLES as ROLLUP
from db.tables import metadata


async def _tables(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    async with engine.connect() as conn:

        def inspect(sync: sa.Connection) -> tuple[set[str], set[str]]:
            inspector = sa.inspect(sync)
            tables = set(inspector.get_table_names())
            indexes = (
                {i["name"] for i in inspector.get_indexes("trends_archive")}  # type: ignore[misc]
                if "trends_archive" in tables
                else set()
            )
            return tables, indexes

        return await conn.run_sync(inspect)


async def _up_down_up(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        tables, indexes = await _tables(engine)
        assert "trends_archive" in tables
        assert {"idx_trends_country_timestamp", "idx_trends_timestamp"} <= indexes
        assert await migrate.current_revision(engine) == migrate.head_revision()
        await migrate.downgrade(engine, "base")
        tables, _ = await _tables(engine)
        assert "trends_archive" not in tables
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


def test_up_down_up_on_postgresql(schemaless_postgres_url: str) -> None:
    asyncio.run(_up_down_up(schemaless_postgres_url))


def test_up_down_up_on_sqlite(tmp_path: Path) -> None:
    asyncio.run(_up_down_up(f"sqlite:///{tmp_path / 'm.db'}"))


async def _concurrent(url: str, n: int) -> None:
    engines = [make_engine(url) for _ in range(n)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        assert await migrate.current_revision(engines[0]) == migrate.head_revision()
    finally:
        for e in engines:
            await e.dispose()


def test_workers_starting_together_migrate_once(schemaless_postgres_url: str) -> None:
    """Without the advisory lock, concurrent CREATE TABLEs would fail all but one worker."""
    asyncio.run(_concurrent(schemaless_postgres_url, 4))


async def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        if engine.dialect.name == "sqlite":  # no rollup there: the archive is aggregated
            diff = [d for d in diff if not (d[0] == "add_table" and d[1].name in ROLLUP)]
        return diff
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_model_matches_the_migrations(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'd.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("schemaless_postgres_url")
    )
    assert asyncio.run(_diff(url)) == []


def test_scripts_are_found() -> None:
    assert (migrate.script_location() / "env.py").is_file()
    assert migrate.head_revision() == "0004"
