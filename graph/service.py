"""The service: ingest, hotspots, flows and trend pages over the repository and the core.

REST, GraphQL and the CLI call these methods and nothing below them, so every door answers
the same. Storage failures become :class:`DependencyUnavailable` here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

import sqlalchemy.exc

from db.repository import Page, RecordFilter, RecordRow, TrendRepository, UpsertResult
from graph.analytics import Flow, Hotspot, TopicAggregate, compute_flows, compute_hotspots
from graph.errors import DependencyUnavailable, InvalidParameter, PayloadTooLarge
from graph.params import Span, TimeWindow

Clock = Callable[[], datetime]
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FlowQuery:
    window: TimeWindow
    countries: tuple[str, ...] | None
    threshold: float
    as_of: datetime | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class HotspotQuery:
    window: TimeWindow
    countries: tuple[str, ...] | None
    as_of: datetime | None
    limit: int | None


@dataclass(frozen=True, slots=True)
class Report(Generic[T]):
    """A computed answer and how it was made."""

    items: list[T]
    span: Span
    computed_at: datetime
    cache_hit: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TrendQuery:
    where: RecordFilter
    first: int
    after: str | None


@asynccontextmanager
async def _storage(action: str) -> AsyncIterator[None]:
    """Translate the database being unreachable into a 503 for the client."""
    try:
        yield
    except (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,
        OSError,
        TimeoutError,
    ) as exc:
        raise DependencyUnavailable(f"the database is unavailable ({action}); retry later") from exc


def encode_cursor(timestamp: datetime, ident: int) -> str:
    raw = json.dumps([timestamp.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, field: str = "after") -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, ident = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None or not isinstance(ident, int):
            raise ValueError("bad cursor")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidParameter(field, "not a cursor this service issued") from None
    return moment, ident


class TrendService:
    """What trendmap does, independent of how it is asked."""

    def __init__(
        self,
        repository: TrendRepository,
        *,
        halflife_hours: float,
        max_flows: int,
        max_batch_records: int,
        clock: Clock = utcnow,
    ) -> None:
        self.repository = repository
        self.halflife_hours = halflife_hours
        self.max_flows = max_flows
        self.max_batch_records = max_batch_records
        self.clock = clock

    async def ingest(self, rows: Sequence[RecordRow]) -> UpsertResult:
        """Store a validated batch, all or nothing."""
        if len(rows) > self.max_batch_records:
            raise PayloadTooLarge(
                f"a batch holds at most {self.max_batch_records} records, this one {len(rows)}:"
                " split it"
            )
        async with _storage("ingest"):
            return await self.repository.upsert(rows)

    async def aggregates(self, span: Span) -> list[TopicAggregate]:
        """The window's per-country topic sums, as the core takes them."""
        async with _storage("aggregate"):
            rows = await self.repository.aggregate_window(span.start, span.as_of, span.recent_after)
        return [
            TopicAggregate(
                r.country,
                r.topic_key,
                r.label,
                r.count,
                r.weighted_confidence,
                r.first_seen,
                r.recent_count,
            )
            for r in rows
        ]

    def span(self, window: TimeWindow, as_of: datetime | None) -> Span:
        return Span(window, as_of if as_of is not None else self.clock())

    async def hotspots(self, query: HotspotQuery) -> Report[Hotspot]:
        span = self.span(query.window, query.as_of)
        items = compute_hotspots(await self.aggregates(span))
        if query.countries is not None:
            wanted = set(query.countries)
            items = [h for h in items if h.country in wanted]
        if query.limit is not None:
            items = items[: query.limit]
        return Report(items, span, self.clock())

    async def flows(self, query: FlowQuery) -> Report[Flow]:
        span = self.span(query.window, query.as_of)
        items = compute_flows(
            await self.aggregates(span),
            threshold=query.threshold,
            halflife_hours=self.halflife_hours,
            countries=query.countries,
        )
        warnings = []
        cap = query.limit if query.limit is not None else self.max_flows
        if len(items) > cap and query.limit is None:
            warnings.append(
                f"truncated: {len(items)} flows reach the threshold, the first {cap} are shown;"
                " raise the threshold, filter countries or pass a limit"
            )
        return Report(items[:cap], span, self.clock(), warnings=warnings)

    async def trends(self, query: TrendQuery) -> Page:
        after = decode_cursor(query.after) if query.after is not None else None
        async with _storage("list trends"):
            return await self.repository.page(query.where, first=query.first, after=after)

    async def database_ready(self) -> bool:
        try:
            async with _storage("ping"):
                await self.repository.ping()
        except DependencyUnavailable:
            return False
        return True
