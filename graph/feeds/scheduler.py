"""A worker's poller loop: :class:`PollScheduler` polls while this worker holds the lease.

Every server worker runs one; only the lease holder polls, every ``POLL_INTERVAL_SECONDS``,
renewing the lease meanwhile. A leader that dies stops renewing, and another worker takes over
within ``POLL_LOCK_TTL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from graph.feeds.board import SourceBoard
from graph.feeds.lease import Lease
from graph.feeds.poller import Poller, RoundSummary
from graph.observability.log import logger
from graph.observability.sentry import report_exception
from graph.observability.tracing import span

__all__ = ["PollScheduler"]


class PollScheduler:
    """Try for the lease every tick; while held, run a round every interval and publish."""

    def __init__(
        self,
        poller: Poller,
        lease: Lease,
        board: SourceBoard,
        *,
        interval_seconds: float,
        lease_ttl_seconds: float,
    ) -> None:
        self.poller = poller
        self.lease = lease
        self.board = board
        self.interval_seconds = interval_seconds
        self.tick_seconds = min(interval_seconds, lease_ttl_seconds / 3)
        self.leader = False
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def document(self) -> dict[str, Any]:
        """The status document the board publishes (see :mod:`graph.feeds.board`)."""
        last = self.poller.last_round
        return {
            "leader": self.identity,
            "lock": self.lease.kind,
            "interval_seconds": self.interval_seconds,
            "last_round": last.as_json() if last else None,
            "failing": sorted(self.poller.failing_countries()),
            "feeds": self.poller.status(),
            "published": datetime.now(UTC).isoformat(),
        }

    async def publish(self) -> None:
        """Tell every worker (through the store) what the feeds are doing."""
        await self.board.publish(self.document())

    async def run(self) -> None:
        """Forever, until cancelled; releases the lease on the way out."""
        due = time.monotonic()
        try:
            while True:
                await self._hold()
                if self.leader and time.monotonic() >= due:
                    due = time.monotonic() + self.interval_seconds
                    await self._lead_round()
                if self.leader:
                    await self.publish()
                wait = self.tick_seconds
                if self.leader:
                    wait = max(0.0, min(wait, due - time.monotonic()))
                await asyncio.sleep(wait)
        finally:
            self.board.follow()
            await asyncio.shield(self.lease.release())

    async def _hold(self) -> None:
        was = self.leader
        self.leader = await self.lease.hold()
        if self.leader:
            self.board.lead(self.document, self.poller.failing_countries)
        else:
            self.board.follow()
        if self.leader != was:
            logger.info(
                "poller lease " + ("taken" if self.leader else "lost"), lock=self.lease.kind
            )

    async def _lead_round(self) -> None:
        """One round, renewing the lease while it runs; losing it cancels the round.

        The round is awaited through ``asyncio.wait``, never ``await task``: a cancelled round
        must not be mistaken for, and swallow, the cancellation of this loop at shutdown.
        """
        # The round's task copies the context: its fetches and its ingest are this span's.
        with span("feeds.round", {"feeds.lock": self.lease.kind}):
            task = asyncio.create_task(self.poller.run_round(), name="poll round")
            await self._watch_round(task)

    async def _watch_round(self, task: asyncio.Task[RoundSummary]) -> None:
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.tick_seconds)
                if task.done():
                    break
                await self._hold()
                if not self.leader:
                    task.cancel()
                    await asyncio.wait({task})
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                logger.error("poll round crashed", exc_info=failure)
                report_exception(failure, task="poller")
        finally:
            if not task.done():
                # Shutdown, or an error: the round ends before this does. Its cancellation can
                # take a moment (httpx and SQLAlchemy finish closing a connection first), and
                # the feeds' client and the database close as soon as the scheduler is done.
                task.cancel()
                await asyncio.wait({task})
