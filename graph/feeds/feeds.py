"""One process's feed machinery: :class:`Feeds` and :func:`open_feeds`, which builds it.

Built for every process; only servers run its scheduler (the CLI's ``poll --once`` runs one
round). With SOURCES empty nothing is polled and ``Feeds`` holds just the board.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from db.locks import AdvisoryLock
from graph.breaker import CircuitBreaker
from graph.feeds.board import SourceBoard
from graph.feeds.dry_run import dry_run_transport
from graph.feeds.fetch import Fetcher, make_client
from graph.feeds.lease import make_lease
from graph.feeds.poller import Poller
from graph.feeds.registry import build_sources
from graph.feeds.scheduler import PollScheduler
from graph.service.trend_service import TrendService
from graph.settings import Settings
from graph.stores import Store

__all__ = ["Feeds", "open_feeds"]


@dataclass
class Feeds:
    """The board every worker reads, and (when SOURCES names any) the poller and scheduler."""

    settings: Settings
    board: SourceBoard
    poller: Poller | None = None
    scheduler: PollScheduler | None = None

    def breakers(self) -> list[tuple[str, str, CircuitBreaker]]:
        """(source, country, breaker) for each polled feed; empty when nothing is polled."""
        if self.poller is None:
            return []
        return [(f.source.name, f.country, f.breaker) for f in self.poller.feeds]

    async def health(self) -> dict[str, Any]:
        """The ``sources`` object of /health/ready."""
        s = self.settings
        role = "off"
        if self.scheduler is not None and s.poller_enabled:
            role = "leader" if self.scheduler.leader else "standby"
        document = await self.board.read() or {}
        return {
            "enabled": list(s.sources),
            "dry_run": s.dry_run_apis,
            "poller": {
                "this_worker": role,
                "lock": self.scheduler.lease.kind if self.scheduler is not None else None,
                "leader": document.get("leader"),
                "interval_seconds": s.poll_interval_seconds,
                "last_round": document.get("last_round"),
            },
            "unavailable": document.get("failing", []),
            "feeds": document.get("feeds", {}),
        }


@contextlib.asynccontextmanager
async def open_feeds(
    settings: Settings,
    service: TrendService,
    store: Store,
    board: SourceBoard,
    lock: AdvisoryLock | None,
) -> AsyncIterator[Feeds]:
    """The sources SOURCES names, their client, poller and lease; the client closes after.

    ``board`` is :func:`~graph.feeds.board.make_board`'s (the service reads it too); ``lock``
    is the poller's PostgreSQL advisory lock (None on SQLite), used when there is no Redis.
    """
    feeds = Feeds(settings, board)
    sources = build_sources(settings)
    if not sources:
        yield feeds
        return
    transport = dry_run_transport(sources) if settings.dry_run_apis else None
    async with make_client(settings.source_timeout_seconds, transport) as client:
        fetcher = Fetcher(
            client,
            timeout_seconds=settings.source_timeout_seconds,
            max_attempts=settings.source_max_attempts,
            backoff_seconds=settings.source_backoff_seconds,
            retry_after_max_seconds=settings.source_retry_after_max_seconds,
            max_bytes=settings.source_max_bytes,
        )
        feeds.poller = Poller(
            service,
            sources,
            fetcher,
            settings.poll_countries,
            breaker_failures=settings.breaker_failures,
            breaker_reset_seconds=settings.breaker_reset_seconds,
            concurrency=settings.source_concurrency,
            bounds=settings.record_bounds(),
        )
        feeds.scheduler = PollScheduler(
            feeds.poller,
            make_lease(store, settings.poll_lock_ttl_seconds, lock),
            board,
            interval_seconds=settings.poll_interval_seconds,
            lease_ttl_seconds=settings.poll_lock_ttl_seconds,
        )
        yield feeds
