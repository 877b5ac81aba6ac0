"""Pulling records from the feeds: rounds, breakers, one poller per cluster, and what it reports.

A **round** (:meth:`Poller.run_round`) calls every source for every country in
``POLL_COUNTRIES``, a few at a time (``SOURCE_CONCURRENCY``). Each (source, country) has its own
:class:`~graph.breaker.CircuitBreaker`: ``BREAKER_FAILURES`` failed calls in a row open it, and
while it is open no request goes to that feed; after ``BREAKER_RESET_SECONDS`` one probe goes,
and its success closes the breaker. A call that fails (see :mod:`graph.feeds.fetch`) or a
document that cannot be read counts as a failure; single bad items are skipped and counted, and
the rest of the feed is kept. The round's valid records are stored like any ingest, so the
cache is refreshed and subscribers hear about new hot flows.

**One poller at a time.** Every server worker runs a :class:`PollScheduler`, but only the one
holding the poller lease polls: a Redis lock renewed while held (``REDIS_URL`` set), else a
PostgreSQL session advisory lock (held by one pooled connection), else an in-process lock (the
embedded default: one process). A leader that dies stops renewing; another worker takes over
within ``POLL_LOCK_TTL_SECONDS``.

**What it reports.** The leader publishes each feed's breaker state, consecutive failures,
last success and last error to the store (``trendmap:sources``), where every worker reads it:
``/health/ready`` shows it under ``sources``, and answers about countries whose feed is failing
carry the warning ``"Partial data: XX unavailable"``. Without Redis, only the polling process
knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.repository import RecordRow
from graph.breaker import BreakerState, CircuitBreaker
from graph.core.errors import TrendmapError
from graph.core.records import validate_each
from graph.feeds.dry_run import FEED_EXTENSION, dry_run_transport
from graph.feeds.fetch import Fetcher, make_client
from graph.feeds.sources import FeedError, Source, build_sources
from graph.observability.log import logger
from graph.service.trend_service import TrendService
from graph.settings import Settings
from graph.stores import Store, StoreUnavailable

LEASE_KEY = "trendmap:poller"
STATUS_KEY = "trendmap:sources"
# pg_try_advisory_lock's key for the poller lease ("trendmap" + 2 in ASCII), distinct from the
# migrations' lock.
ADVISORY_LOCK_ID = 0x7472656E646D02
# How long /health and the warnings trust what they last read from the store.
STATUS_READ_SECONDS = 1.0


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
    ) -> None:
        self.service = service
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
        rows: list[RecordRow] = []
        for result, feed_rows in pulled:
            summary.feeds.append(result)
            rows.extend(feed_rows)
        await self._store(rows, summary)
        summary.finished = _now()
        self.last_round = summary
        logger.info("poll round", **summary.as_json())
        return summary

    async def _pull(
        self, feed: Feed, gate: asyncio.Semaphore
    ) -> tuple[FeedResult, list[RecordRow]]:
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
                rows, problems = validate_each(items.records, where="item")
            except FeedError as exc:
                return self._failed(feed, str(exc)), []
            except Exception as exc:  # a bug must cost one feed, not the poller
                logger.exception("feed crashed", source=name, country=country)
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

    async def _store(self, rows: list[RecordRow], summary: RoundSummary) -> None:
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


class Lease(Protocol):
    """The right to be the one poller: ``hold`` takes or renews it, True while ours."""

    kind: str

    async def hold(self) -> bool: ...

    async def release(self) -> None: ...


class StoreLease:
    """A lock in the store (Redis, or in-process), renewed by each ``hold`` while held."""

    def __init__(self, store: Store, ttl_seconds: float, key: str = LEASE_KEY) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.key = key
        self.kind = "redis" if store.kind == "redis" else "in-process"
        self._token: str | None = None

    async def hold(self) -> bool:
        try:
            if self._token is not None and await self.store.extend(
                self.key, self._token, self.ttl_seconds
            ):
                return True
            self._token = await self.store.acquire(self.key, self.ttl_seconds)
        except StoreUnavailable:
            # Unable to prove we still hold it: stop polling until the store answers.
            self._token = None
        return self._token is not None

    async def release(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(self.key, token)


class AdvisoryLease:
    """A PostgreSQL session advisory lock, held by one connection kept for as long as we lead:
    if this process dies, the server ends its session and the lock with it."""

    kind = "postgres"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None

    async def hold(self) -> bool:
        try:
            if self._conn is not None:
                await self._conn.execute(sa.text("SELECT 1"))
                return True
            conn = await self.engine.connect()
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                got = await conn.scalar(
                    sa.text("SELECT pg_try_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID}
                )
            except BaseException:
                await conn.close()
                raise
            if got:
                self._conn = conn
                return True
            await conn.close()
        except (SQLAlchemyError, OSError):
            await self._drop()
        return False

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID}
                )
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.close()


def make_lease(store: Store, engine: AsyncEngine, ttl_seconds: float) -> Lease:
    """Redis when configured, else PostgreSQL's advisory lock, else in-process."""
    if store.kind != "memory" or engine.dialect.name != "postgresql":
        return StoreLease(store, ttl_seconds)
    return AdvisoryLease(engine)


class SourceBoard:
    """What the poller last published about the feeds, for every worker to read.

    ``read`` asks the store at most once per STATUS_READ_SECONDS; the local poller's own view
    wins while this process leads (it is live, and works with the store down). Answers ask
    ``failing_countries`` each time, so it reads the leading poller's breakers directly rather
    than building the whole status document.
    """

    def __init__(self, store: Store, *, ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = max(1.0, ttl_seconds)
        # This process's scheduler, while it holds the lease.
        self.leading: PollScheduler | None = None
        self._read: dict[str, Any] | None = None
        self._read_at = -float("inf")

    async def publish(self, document: dict[str, Any]) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.store.set(STATUS_KEY, orjson.dumps(document), self.ttl_seconds)

    async def read(self) -> dict[str, Any] | None:
        if self.leading is not None:
            return self.leading.document()
        now = time.monotonic()
        if now - self._read_at >= STATUS_READ_SECONDS:
            self._read_at = now
            try:
                (raw,) = await self.store.read([(STATUS_KEY, None)])
            except StoreUnavailable:
                raw = None
            self._read = orjson.loads(raw) if raw is not None else None
        return self._read

    async def failing_countries(self) -> frozenset[str]:
        if self.leading is not None:
            return self.leading.poller.failing_countries()
        document = await self.read()
        if document is None:
            return frozenset()
        return frozenset(document.get("failing", ()))


class PollScheduler:
    """A worker's poller loop: try for the lease, and while held, poll every interval."""

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
        last = self.poller.last_round
        return {
            "leader": self.identity,
            "lock": self.lease.kind,
            "interval_seconds": self.interval_seconds,
            "last_round": last.as_json() if last else None,
            "failing": sorted(self.poller.failing_countries()),
            "feeds": self.poller.status(),
            "published": _now().isoformat(),
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
            self.board.leading = None
            await asyncio.shield(self.lease.release())

    async def _hold(self) -> None:
        was = self.leader
        self.leader = await self.lease.hold()
        self.board.leading = self if self.leader else None
        if self.leader != was:
            logger.info(
                "poller lease " + ("taken" if self.leader else "lost"), lock=self.lease.kind
            )

    async def _lead_round(self) -> None:
        """One round, renewing the lease while it runs; losing it cancels the round.

        The round is awaited through ``asyncio.wait``, never ``await task``: a cancelled round
        must not be mistaken for, and swallow, the cancellation of this loop at shutdown.
        """
        task = asyncio.create_task(self.poller.run_round(), name="poll round")
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.tick_seconds)
                if task.done():
                    break
                await self._hold()
                if not self.leader:
                    task.cancel()
                    await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                logger.error("poll round crashed", exc_info=task.exception())
        finally:
            if not task.done():
                task.cancel()


@dataclass
class Feeds:
    """One process's feed machinery: built for every process, polling only in servers."""

    settings: Settings
    board: SourceBoard
    poller: Poller | None = None
    scheduler: PollScheduler | None = None

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
    settings: Settings, service: TrendService, store: Store, engine: AsyncEngine
) -> AsyncIterator[Feeds]:
    """The sources SOURCES names, their client, poller and lease; the client closes after."""
    lease_ttl = settings.poll_lock_ttl_seconds
    board = SourceBoard(store, ttl_seconds=3 * max(settings.poll_interval_seconds, lease_ttl))
    feeds = Feeds(settings, board)
    sources = build_sources(settings)
    if not sources:  # nothing is polled anywhere: no answer can be partial
        yield feeds
        return
    service.unavailable = board.failing_countries
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
        )
        feeds.scheduler = PollScheduler(
            feeds.poller,
            make_lease(store, engine, lease_ttl),
            board,
            interval_seconds=settings.poll_interval_seconds,
            lease_ttl_seconds=lease_ttl,
        )
        yield feeds
