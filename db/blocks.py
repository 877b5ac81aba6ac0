"""Builds the rollup's six-hour blocks (PostgreSQL, migration 0004) once their writes settle.

A block's rows are the hourly rollup's six hours summed per series. Windows read a block only
while the writes it was built from are all the writes noted in it (``built = changes``),
so building is never urgent and never changes an answer, only how many rows a window costs:
until a block is built, windows read its hours.

Each block is built in a transaction of its own (:func:`build_block`): its rows cleared, its
count of writes read, then its rows summed from the hourly rollup in a later snapshot, and
the block marked built at that count only if no write was noted meanwhile. A write that
lands between the two (its trigger bumps the count in its own transaction) leaves the block
unbuilt until the next round, never marked built over rows that miss it. One builder at a
time across workers and hosts (a transaction advisory lock); the others skip the round.

Locks: a builder takes the blocks' table, then the state's (read to its commit), then reads
the hourly rollup, then marks the block's state row; a writer's triggers mark state rows
only; a TRUNCATE of the archive takes the blocks, their state, then the hourly rollup. No two
of them wait on each other in a cycle, and a TRUNCATE (which starts every count again) waits
for a build under way to commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.errors import translated

__all__ = [
    "BLOCK_HOURS",
    "BuildRound",
    "build_block",
    "build_settled",
    "finish_build",
    "start_build",
    "unbuilt_blocks",
]

BLOCK_HOURS = 6
BLOCKS_LOCK_ID = 0x74726E64626C6B73  # "trndblks"

_TRY_LOCK = sa.text(f"SELECT pg_try_advisory_xact_lock({BLOCKS_LOCK_ID})")
_SETUP = sa.text(
    "SELECT set_config('jit', 'off', true),"
    " set_config('max_parallel_workers_per_gather', '0', true),"
    " set_config('work_mem', '256MB', true)"
)
# Blocks not built at their latest write, newest first (windows mostly ask for recent hours),
# once no write has been noted in them for ``quiet`` seconds.
_UNBUILT = sa.text(
    """
    SELECT block, changes FROM trends_rollup_block_state
    WHERE built <> changes AND changed_at <= now() - make_interval(secs => :quiet)
    ORDER BY block DESC LIMIT :limit
    """
)
_CLEAR = sa.text("DELETE FROM trends_rollup_blocks WHERE block = :block")
_CHANGES = sa.text("SELECT changes FROM trends_rollup_block_state WHERE block = :block")
# The block's earliest record is the smallest [microseconds, label id] over its hours: one
# hour holds it (timestamps are unique within a series), so the label never decides.
_SUM = sa.text(
    """
    INSERT INTO trends_rollup_blocks
        (block, series_id, count_sum, weighted_sum, first_us, first_label_id)
    SELECT CAST(:block AS timestamptz), g.series_id, g.count_sum, g.weighted_sum,
           g.first[1], g.first[2]
    FROM (
        SELECT r.series_id, sum(r.count_sum) AS count_sum, sum(r.weighted_sum) AS weighted_sum,
               min(ARRAY[r.first_us, r.first_label_id::bigint]) AS first
        FROM trends_rollup_hourly AS r
        WHERE r.hour > CAST(:block AS timestamptz) - make_interval(hours => :hours)
          AND r.hour <= CAST(:block AS timestamptz)
        GROUP BY r.series_id
    ) AS g
    """
)
_MARK = sa.text(
    "UPDATE trends_rollup_block_state SET built = :changes"
    " WHERE block = :block AND changes = :changes"
)


@dataclass(frozen=True)
class BuildRound:
    """What one round did: blocks built, blocks a write overtook (left for the next round),
    and whether another builder held the lock (nothing done)."""

    built: int
    overtaken: int
    busy: bool


async def unbuilt_blocks(
    engine: AsyncEngine, *, quiet_seconds: float, limit: int
) -> list[tuple[datetime, int]]:
    """Up to ``limit`` blocks not built at their latest write, with their count of writes."""
    async with translated("listing rollup blocks"), engine.connect() as conn:
        rows = await conn.execute(_UNBUILT, {"quiet": quiet_seconds, "limit": limit})
        return [(block, int(changes)) for block, changes in rows]


async def start_build(conn: AsyncConnection, block: datetime) -> int | None:
    """The first step of building ``block`` in ``conn``'s open transaction: its rows
    cleared, then its count of writes read (None: no write noted, the archive emptied).

    From here to the commit the builder holds the blocks' table, then the state's, in the
    order a TRUNCATE of the archive takes them: a TRUNCATE waits, so the count read here
    cannot restart under the build and be matched again by a later write."""
    await conn.execute(_SETUP)
    await conn.execute(_CLEAR, {"block": block})
    changes = await conn.scalar(_CHANGES, {"block": block})
    return None if changes is None else int(changes)


async def finish_build(conn: AsyncConnection, block: datetime, changes: int) -> bool:
    """The second step: the block's rows summed from the hourly rollup (a later snapshot
    than the count), and the block marked built at ``changes`` if that is still its count.
    True when marked; False when a write noted since overtook it."""
    await conn.execute(_SUM, {"block": block, "hours": BLOCK_HOURS})
    marked = await conn.execute(_MARK, {"block": block, "changes": changes})
    return bool(marked.rowcount)


async def build_block(conn: AsyncConnection, block: datetime) -> bool | None:
    """Build ``block`` in ``conn``'s open transaction: True when marked built, False when a
    write overtook it (or none is noted), None when another builder holds the lock (nothing
    done)."""
    if not await conn.scalar(_TRY_LOCK):
        return None
    changes = await start_build(conn, block)
    return False if changes is None else await finish_build(conn, block, changes)


async def build_settled(engine: AsyncEngine, *, quiet_seconds: float, limit: int) -> BuildRound:
    """Build up to ``limit`` blocks whose writes have settled for ``quiet_seconds``, newest
    first, each in its own transaction."""
    built = overtaken = 0
    for block, _ in await unbuilt_blocks(engine, quiet_seconds=quiet_seconds, limit=limit):
        async with translated("building a rollup block"), engine.begin() as conn:
            done = await build_block(conn, block)
        if done is None:
            return BuildRound(built, overtaken, busy=True)
        built += done
        overtaken += not done
    return BuildRound(built, overtaken, busy=False)
