"""One poll round: :class:`Poller` calls every (source, country) and stores what they bring.

Each :class:`Feed` has its own circuit breaker (``BREAKER_FAILURES`` failures in a row open it;
after ``BREAKER_RESET_SECONDS`` one probe goes). A failed call or unreadable document counts as
a failure; single bad items are skipped and counted, the rest kept. :class:`RoundSummary` says
what the round did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from graph.breaker import BreakerState, CircuitBreaker
from graph.core.errors import TrendmapError
from graph.core.records import DEFAULT_TIMESTAMP_BOUNDS, Record, TimestampBounds, validate_each
from graph.feeds.dry_run import FEED_EXTENSION
from graph.feeds.sources import FeedError, Source
from graph.observability.log import logger
from graph.observability.sentry import report_exception
from graph.service.trend_service import TrendService

__all__ = ["Feed", "FeedResult", "Fetch", "Poller", "RoundSummary"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Feed:
    """One (source, country): its breaker and what its last call did."""

    source: Source
    country: str
    breaker: CircuitBreaker
    last_error: str | None = None
    last_attempt: datetime | None = None

    def snapshot(self) -> dict[str, object]:
        return self.breaker.snapshot() | {
            "last_error": self.last_error,
            "last_attempt": self.last_attempt.isoformat() if self.last_attempt else None,
        }

    @property
    def failing(self) -> bool:
        return (
            self.breaker.consecutive_failures > 0 or self.breaker.state is not BreakerState.CLOSED
        )


@dataclass
class FeedResult:
    source: str
    country: str
    outcome: str  # "ok", "failed" or "breaker open"
    items: int = 0
    valid: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        where = f"{self.source} {self.country}"
        if self.outcome == "ok":
            return f"{where}: {self.items} items, {self.valid} valid, {len(self.skipped)} skipped"
        if self.outcome == "failed":
            return f"{where}: failed: {self.error}"
        return f"{where}: not called, its breaker is open"


@dataclass
class RoundSummary:
    started: datetime
    finished: datetime | None = None
    feeds: list[FeedResult] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    store_error: str | None = None

    @property
    def failed(self) -> list[FeedResult]:
        return [f for f in self.feeds if f.outcome != "ok"]

    @property
    def records(self) -> int:
        return sum(f.valid for f in self.feeds)

    def line(self) -> str:
        answered = len(self.feeds) - len(self.failed)
        skipped = sum(len(f.skipped) for f in self.feeds)
        stored = (
            f"not stored: {self.store_error}"
            if self.store_error
            else f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"
        )
        return (
            f"round: {answered} of {len(self.feeds)} feeds answered, {self.records} records"
            f" ({stored}), {skipped} bad items skipped"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "feeds": len(self.feeds),
            "failed": len(self.failed),
            "records": self.records,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped_items": sum(len(f.skipped) for f in self.feeds),
            "store_error": self.store_error,
        }


class Fetch(Protocol):
    async def get(self, url: str, *, extensions: dict[str, object] | None = None) -> bytes: ...


class Poller:
    """Runs rounds over every (source, country) and stores what they bring."""

    def __init__(
        self,
        service: TrendService,
        sources: Sequence[Source],
        fetcher: Fetch,
        countries: Sequence[str],
        *,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 30.0,
        concurrency: int = 4,
        clock: Callable[[], float] = time.monotonic,
        bounds: TimestampBounds = DEFAULT_TIMESTAMP_BOUNDS,
    ) -> None:
        self.service = service
        self.bounds = bounds
        self.fetcher = fetcher
        self.feeds = [
            Feed(
                source,
                country,
                CircuitBreaker(
                    failures=breaker_failures, reset_seconds=breaker_reset_seconds, clock=clock
                ),
            )
            for source in sources
            for country in countries
        ]
        self.concurrency = concurrency
        self.last_round: RoundSummary | None = None

    async def run_round(self) -> RoundSummary:
        """Call every feed whose breaker lets it, then store the valid records in one go."""
        summary = RoundSummary(started=_now())
        gate = asyncio.Semaphore(self.concurrency)
        pulled = await asyncio.gather(*(self._pull(feed, gate) for feed in self.feeds))
        rows: list[Record] = []
        for result, feed_rows in pulled:
            summary.feeds.append(result)
            rows.extend(feed_rows)
        await self._store(rows, summary)
        summary.finished = _now()
        self.last_round = summary
        logger.info("poll round", **summary.as_json())
        return summary

    async def _pull(self, feed: Feed, gate: asyncio.Semaphore) -> tuple[FeedResult, list[Record]]:
        name, country = feed.source.name, feed.country
        if not feed.breaker.allow():
            return FeedResult(name, country, "breaker open"), []
        async with gate:
            feed.last_attempt = _now()
            try:
                body = await self.fetcher.get(
                    feed.source.url(country), extensions={FEED_EXTENSION: (name, country)}
                )
                items = feed.source.parse(body, country)
                rows, problems = validate_each(items.records, where="item", bounds=self.bounds)
            except FeedError as exc:
                return self._failed(feed, str(exc)), []
            except Exception as exc:  # a bug must cost one feed, not the poller
                logger.exception("feed crashed", source=name, country=country)
                report_exception(exc, task="poller", source=name, country=country)
                return self._failed(feed, f"internal error: {type(exc).__name__}"), []
        feed.breaker.record_success()
        feed.last_error = None
        skipped = items.skipped + [
            f"record {p.index + 1}: {p.field}: {p.message}" for p in problems
        ]
        if skipped:
            logger.info("feed items skipped", source=name, country=country, skipped=skipped[:10])
        result = FeedResult(name, country, "ok", len(items.records) + len(items.skipped))
        result.valid, result.skipped = len(rows), skipped
        return result, rows

    @staticmethod
    def _failed(feed: Feed, error: str) -> FeedResult:
        feed.breaker.record_failure()
        feed.last_error = error
        logger.warning(
            "feed failed",
            source=feed.source.name,
            country=feed.country,
            error=error,
            breaker=feed.breaker.state.value,
            consecutive_failures=feed.breaker.consecutive_failures,
        )
        return FeedResult(feed.source.name, feed.country, "failed", error=error)

    async def _store(self, rows: list[Record], summary: RoundSummary) -> None:
        step = self.service.max_batch_records
        try:
            for start in range(0, len(rows), step):
                result = await self.service.ingest(rows[start : start + step])
                summary.inserted += result.inserted
                summary.updated += result.updated
                summary.unchanged += result.unchanged
        except TrendmapError as exc:
            summary.store_error = exc.detail
            logger.warning("poll round not stored", error=exc.detail)

    def failing_countries(self) -> frozenset[str]:
        return frozenset(f.country for f in self.feeds if f.failing)

    def status(self) -> dict[str, dict[str, dict[str, object]]]:
        """Each feed's snapshot, by source, then country."""
        feeds: dict[str, dict[str, dict[str, object]]] = {}
        for feed in self.feeds:
            feeds.setdefault(feed.source.name, {})[feed.country] = feed.snapshot()
        return feeds
