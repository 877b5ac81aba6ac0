"""The service: ingest, hotspots, flows and trend pages over the repository, core and cache.

REST, GraphQL, the CLI and the live publisher call these methods and nothing below them, so
every door answers the same. Storage failures become :class:`DependencyUnavailable` here.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy.exc

from db.repository import Page, RecordFilter, RecordRow, TrendRepository, UpsertResult
from graph.cache.response_cache import (
    Entry,
    ResponseCache,
    flows_key,
    hotspots_key,
    trends_key,
    trends_roster_key,
)
from graph.core.analytics import TopicAggregate, compute_flows, compute_hotspots
from graph.core.errors import DependencyUnavailable, InvalidParameter, PayloadTooLarge
from graph.service.params import Span, TimeWindow
from graph.service.payloads import flow_json, hotspot_json

Clock = Callable[[], datetime]


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
class Answer:
    """A computed (or cached) answer: a JSON array in the REST shape, and how it was made."""

    payload: bytes
    count: int
    span: Span
    computed_at: datetime
    cache_hit: bool
    warnings: tuple[str, ...]

    def items(self) -> list[dict[str, Any]]:
        """The payload's items as dicts (snake_case keys)."""
        items: list[dict[str, Any]] = orjson.loads(self.payload)
        return items


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
    except sqlalchemy.exc.DBAPIError as exc:
        # A connection that died mid-statement (the server went away) is an outage too.
        if not exc.connection_invalidated:
            raise
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


def _encode_rows(rows: Sequence[TopicAggregate]) -> bytes:
    return orjson.dumps(
        [
            [r.topic_key, r.label, r.count, r.weighted_confidence, r.first_seen, r.recent_count]
            for r in rows
        ]
    )


def _decode_rows(country: str, payload: bytes) -> list[TopicAggregate]:
    return [
        TopicAggregate(country, key, label, n, w, datetime.fromisoformat(first), recent)
        for key, label, n, w, first, recent in orjson.loads(payload)
    ]


@dataclass(slots=True)
class _Snapshot:
    """The aggregates of a sliding window, computed at ``span.as_of`` under ``token``."""

    token: str
    span: Span
    made: float
    aggregates: Sequence[TopicAggregate]


class TrendService:
    """What trendmap does, independent of how it is asked."""

    def __init__(
        self,
        repository: TrendRepository,
        *,
        cache: ResponseCache,
        halflife_hours: float,
        max_flows: int,
        max_batch_records: int,
        clock: Clock = utcnow,
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.halflife_hours = halflife_hours
        self.max_flows = max_flows
        self.max_batch_records = max_batch_records
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._sliding: dict[TimeWindow, _Snapshot] = {}
        # Countries whose feed is failing (graph.feeds.poller's SourceBoard), for "partial data".
        self.unavailable: Callable[[], Awaitable[frozenset[str]]] | None = None
        # Records stored through ingest, by outcome (graph.observability.metrics reads it).
        self.ingested = {"inserted": 0, "updated": 0, "unchanged": 0}

    async def partial_warnings(self, countries: Collection[str] | None) -> tuple[str, ...]:
        """``"Partial data: XX unavailable"`` for each country asked about (every country, with
        no filter) whose feed is failing right now."""
        if self.unavailable is None:
            return ()
        failing = await self.unavailable()
        if countries is not None:
            failing &= frozenset(countries)
        return tuple(f"Partial data: {code} unavailable" for code in sorted(failing))

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed ingest that changed data."""
        self._listeners.append(listener)

    async def ingest(self, rows: Sequence[RecordRow]) -> UpsertResult:
        """Store a validated batch, all or nothing."""
        if len(rows) > self.max_batch_records:
            raise PayloadTooLarge(
                f"a batch holds at most {self.max_batch_records} records, this one {len(rows)}:"
                " split it"
            )
        async with _storage("ingest"):
            result = await self.repository.upsert(rows)
        self.ingested["inserted"] += result.inserted
        self.ingested["updated"] += result.updated
        self.ingested["unchanged"] += result.unchanged
        if result.inserted or result.updated:
            # Committed: retire every cached answer before the client hears back, so its next
            # read (on any worker) sees what it wrote.
            await self.cache.bump()
            for listener in self._listeners:
                listener()
        return result

    def span(self, window: TimeWindow, as_of: datetime | None) -> Span:
        return Span(window, as_of if as_of is not None else self.clock())

    async def _from_database(self, span: Span) -> Sequence[TopicAggregate]:
        async with _storage("aggregate"):
            return await self.repository.aggregate_window(span.start, span.as_of, span.recent_after)

    async def aggregates(self, span: Span, token: str | None = None) -> Sequence[TopicAggregate]:
        """The window's per-country topic sums: from the cache's ``trends:`` entries when they
        were computed under the current token, else from the database (and stored)."""
        if token is None or not self.cache.enabled:
            return await self._from_database(span)
        window, roster = span.window.value, trends_roster_key(span.as_of)
        found = await self.cache.read_many([(roster, window)])
        if found is not None and found[0] is not None:
            header = Entry.decode(found[0])
            if header.generation == token:
                countries: list[str] = orjson.loads(header.payload)
                keys = [(trends_key(c, span.as_of), window) for c in countries]
                values = await self.cache.read_many(keys)
                if values is not None and all(v is not None for v in values):
                    entries = [Entry.decode(v) for v in values if v is not None]
                    if all(e.generation == token for e in entries):
                        return [
                            row
                            for country, e in zip(countries, entries, strict=True)
                            for row in _decode_rows(country, e.payload)
                        ]
        aggregates = await self._from_database(span)
        by_country: dict[str, list[TopicAggregate]] = {}
        for a in aggregates:
            by_country.setdefault(a.country, []).append(a)
        now = self.clock()
        writes = [
            (trends_key(c, span.as_of), window, Entry(token, span.as_of, now, _encode_rows(rows)))
            for c, rows in by_country.items()
        ]
        writes.append(
            (roster, window, Entry(token, span.as_of, now, orjson.dumps(sorted(by_country))))
        )
        await self.cache.write_many([(k, f, e.encode()) for k, f, e in writes])
        return aggregates

    async def _window(
        self, window: TimeWindow, as_of: datetime | None, token: str
    ) -> tuple[Span, Sequence[TopicAggregate]]:
        """A historical window's aggregates, or the current snapshot of a sliding one.

        A sliding window's aggregates are shared in-process by every answer computed under the
        same token within FLOWS_REFRESH_SECONDS (flows, hotspots, any threshold or filter).
        """
        if as_of is not None:
            span = Span(window, as_of)
            return span, await self.aggregates(span, token)
        snap = self._sliding.get(window)
        fresh = time.monotonic() - self.cache.refresh_seconds
        if self.cache.enabled and snap is not None and snap.token == token and snap.made > fresh:
            return snap.span, snap.aggregates
        span = self.span(window, None)
        aggregates = await self._from_database(span)
        self._sliding[window] = _Snapshot(token, span, time.monotonic(), aggregates)
        return span, aggregates

    async def hotspots(self, query: HotspotQuery) -> Answer:
        async def compute(token: str) -> Entry:
            span, aggregates = await self._window(query.window, query.as_of, token)
            items = compute_hotspots(aggregates)
            if query.countries is not None:
                wanted = set(query.countries)
                items = [h for h in items if h.country in wanted]
            if query.limit is not None:
                items = items[: query.limit]
            payload = orjson.dumps([hotspot_json(h) for h in items])
            return Entry(token, span.as_of, self.clock(), payload, count=len(items))

        field = f"{_as_of_field(query.as_of)}|{query.limit}"
        key = hotspots_key(query.window.value, query.countries)
        return await self._answer(key, field, query, compute)

    async def flows(self, query: FlowQuery) -> Answer:
        async def compute(token: str) -> Entry:
            span, aggregates = await self._window(query.window, query.as_of, token)
            items = compute_flows(
                aggregates,
                threshold=query.threshold,
                halflife_hours=self.halflife_hours,
                countries=query.countries,
            )
            warnings: tuple[str, ...] = ()
            cap = query.limit if query.limit is not None else self.max_flows
            if len(items) > cap and query.limit is None:
                warnings = (
                    f"truncated: {len(items)} flows reach the threshold, the first {cap} are"
                    " shown; raise the threshold, filter countries or pass a limit",
                )
            items = items[:cap]
            payload = orjson.dumps([flow_json(f) for f in items])
            return Entry(token, span.as_of, self.clock(), payload, warnings, count=len(items))

        field = f"{_as_of_field(query.as_of)}|{query.threshold!r}|{query.limit}"
        key = flows_key(query.window.value, query.countries)
        return await self._answer(key, field, query, compute)

    async def _answer(
        self,
        key: str,
        field: str,
        query: FlowQuery | HotspotQuery,
        compute: Callable[[str], Any],
    ) -> Answer:
        entry, hit = await self.cache.get_or_compute(
            key, field, sliding=query.as_of is None, compute=compute
        )
        return Answer(
            payload=entry.payload,
            count=entry.count,
            span=Span(query.window, entry.as_of),
            computed_at=entry.computed_at,
            cache_hit=hit,
            warnings=entry.warnings + await self.partial_warnings(query.countries),
        )

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


def _as_of_field(as_of: datetime | None) -> str:
    return "now" if as_of is None else as_of.isoformat()
