"""Holding a PostgreSQL archive still: another session's lock on every table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def every_table_locked(postgres_url: str) -> AsyncIterator[None]:
    """While inside, another session holds ACCESS EXCLUSIVE on every table of the schema:
    any read of the archive waits (a window read held mid-way, as a slow database would)."""
    holder = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        tables = await holder.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        names = ", ".join(f'"{t["tablename"]}"' for t in tables)
        async with holder.transaction():
            await holder.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await holder.close()
