"""BlockBuilder: a server's background round that builds the rollup's settled six-hour blocks
(PostgreSQL; db.blocks). Windows answer the same with or without them: building only makes a
large window cheaper to read. A database outage is one warning line, and the next round tries
again."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from db.blocks import BuildRound, build_settled
from db.errors import StorageUnavailable
from graph.observability.log import logger
from graph.observability.tracing import span

__all__ = ["BlockBuilder"]

# Blocks built per round at most: a round's work stays short next to its interval.
_PER_ROUND = 8


class BlockBuilder:
    """Builds, every ``interval_seconds``, the blocks no write has touched for
    ``quiet_seconds`` (a block still being written would be built again at once)."""

    def __init__(
        self, engine: AsyncEngine, *, interval_seconds: float, quiet_seconds: float
    ) -> None:
        self.engine = engine
        self.interval_seconds = interval_seconds
        self.quiet_seconds = quiet_seconds
        self._failing = False

    async def run(self) -> None:
        """A round every ``interval_seconds``, the first one interval after the start, until
        cancelled."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            await self.round()

    async def round(self) -> BuildRound | None:
        """One round: what it did, or None when the database could not answer (or has no
        blocks: a schema behind head, with AUTO_MIGRATE off)."""
        started = time.perf_counter()
        try:
            with span("rollup.blocks") as traced:
                done = await build_settled(
                    self.engine, quiet_seconds=self.quiet_seconds, limit=_PER_ROUND
                )
                traced.set("blocks.built", done.built)
        except (StorageUnavailable, sa.exc.ProgrammingError) as exc:
            if not self._failing:
                error = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc)
                logger.warning("rollup blocks not built", error=error.splitlines()[0])
            self._failing = True
            return None
        if self._failing:
            logger.info("rollup blocks built again")
        self._failing = False
        if done.built or done.overtaken:
            logger.info(
                "rollup blocks built",
                built=done.built,
                overtaken=done.overtaken,
                seconds=round(time.perf_counter() - started, 3),
            )
        return done
