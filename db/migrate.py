"""Schema migrations through alembic, safe to start from many workers at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command

# Any fixed 64-bit number: every trendmap process asks PostgreSQL for this same lock.
MIGRATION_LOCK_ID = 0x7472656E646D6170  # "trendmap"


def script_location() -> Path:
    """The alembic scripts: inside the wheel when installed, at the top level in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_alembic"
    return packaged if packaged.is_dir() else here.parent / "alembic"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision the scripts know."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    return ScriptDirectory.from_config(config).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; concurrent callers on PostgreSQL run one at a time."""
    await _migrate(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the schema back to ``revision`` (``base`` drops everything trendmap made)."""
    await _migrate(engine, lambda config: command.downgrade(config, revision))


async def _migrate(engine: AsyncEngine, step: Callable[[Config], None]) -> None:
    def run(connection: Connection) -> None:
        step(_config(connection))

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Migrations (and waiting for another worker's) may take longer than any request:
            # no statement timeout in this transaction, whatever the engine sets.
            await conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            # Held until this transaction ends; PostgreSQL's DDL is transactional, so a second
            # worker waits here and then finds the schema already at head.
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
            )
        await conn.run_sync(run)
