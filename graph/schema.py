"""The GraphQL schema (camelCase): hotspots, flows, trends and ingestTrends.

Resolvers parse their arguments with the same functions as REST and call the same service.
Errors that are not domain errors are masked; domain errors carry ``extensions.code`` and
``extensions.status``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.requests import HTTPConnection
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types import Info

from db.repository import RecordFilter
from graph import analytics
from graph.auth import require_read, require_write
from graph.errors import TrendmapError
from graph.params import (
    parse_as_of,
    parse_count,
    parse_countries,
    parse_threshold,
    parse_time_window,
)
from graph.records import topic_key, validate_batch
from graph.service import FlowQuery, HotspotQuery, TrendQuery, encode_cursor
from graph.state import AppState, app_state

MAX_HOTSPOTS = 1_000


@dataclass(slots=True)
class Context:
    """What every resolver gets: the connection (HTTP or WebSocket) and the app state."""

    connection: HTTPConnection
    state: AppState
    warnings: list[str] = field(default_factory=list)

    @property
    def authorization(self) -> str | None:
        return self.connection.headers.get("authorization")

    def authorise_read(self) -> None:
        s = self.state.settings
        require_read(self.authorization, s.read_api_keys, s.api_keys)


@strawberry.type(description="A topic that makes a country hot.")
class TopTopic:
    label: str
    count: int
    confidence: float


@strawberry.type(description="Where it is hot in the window, and why.")
class Hotspot:
    country: str
    intensity: float
    topic_count: int
    volume: int
    velocity: float
    avg_confidence: float
    top_topics: list[TopTopic]

    @classmethod
    def of(cls, h: analytics.Hotspot) -> Hotspot:
        return cls(
            country=h.country,
            intensity=h.intensity,
            topic_count=h.topic_count,
            volume=h.volume,
            velocity=h.velocity,
            avg_confidence=h.avg_confidence,
            top_topics=[
                TopTopic(label=t.label, count=t.count, confidence=t.confidence)
                for t in h.top_topics
            ],
        )


@strawberry.type(description="Topics spreading from one country to another.")
class Flow:
    from_country: str
    to_country: str
    heat: float
    shared_topics: list[str]
    time_delta_hours: float
    similarity_score: float

    @classmethod
    def of(cls, f: analytics.Flow) -> Flow:
        return cls(
            from_country=f.from_country,
            to_country=f.to_country,
            heat=f.heat,
            shared_topics=list(f.shared_topics),
            time_delta_hours=f.time_delta_hours,
            similarity_score=f.similarity_score,
        )


@strawberry.type(description="One stored trend record.")
class Trend:
    id: strawberry.ID
    timestamp: datetime
    country: str
    topic_label: str
    count: int
    confidence: float
    sources: list[str] | None


@strawberry.type
class TrendEdge:
    cursor: str
    node: Trend


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type(description="A page of trend records, newest first.")
class TrendConnection:
    edges: list[TrendEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input(description="A trend record to ingest.")
class TrendInput:
    timestamp: datetime
    country: str
    topic_label: str
    count: int
    confidence: float
    sources: list[str] | None = None


@strawberry.type(description="What an ingest did.")
class IngestResult:
    received: int
    inserted: int
    updated: int
    unchanged: int


def _context(info: Info[Context, None]) -> Context:
    return info.context


@strawberry.type
class Query:
    @strawberry.field(description="Countries by intensity (hottest first) in the window.")
    async def hotspots(
        self,
        info: Info[Context, None],
        time_window: str = "24h",
        countries: list[str] | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
    ) -> list[Hotspot]:
        ctx = _context(info)
        ctx.authorise_read()
        query = HotspotQuery(
            window=parse_time_window(time_window, field="timeWindow"),
            countries=parse_countries(countries),
            as_of=parse_as_of(as_of, field="asOf"),
            limit=parse_count(limit, maximum=MAX_HOTSPOTS, field="limit"),
        )
        report = await ctx.state.service.hotspots(query)
        ctx.warnings.extend(report.warnings)
        return [Hotspot.of(h) for h in report.items]

    @strawberry.field(description="Hot flows between countries, hottest first.")
    async def flows(
        self,
        info: Info[Context, None],
        time_window: str = "24h",
        countries: list[str] | None = None,
        threshold: float | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
    ) -> list[Flow]:
        ctx = _context(info)
        ctx.authorise_read()
        settings = ctx.state.settings
        query = FlowQuery(
            window=parse_time_window(time_window, field="timeWindow"),
            countries=parse_countries(countries),
            threshold=parse_threshold(threshold, settings.flow_threshold),
            as_of=parse_as_of(as_of, field="asOf"),
            limit=parse_count(limit, maximum=settings.max_flows, field="limit"),
        )
        report = await ctx.state.service.flows(query)
        ctx.warnings.extend(report.warnings)
        return [Flow.of(f) for f in report.items]

    @strawberry.field(description="Stored records, newest first, in cursor pages.")
    async def trends(
        self,
        info: Info[Context, None],
        countries: list[str] | None = None,
        topic: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> TrendConnection:
        ctx = _context(info)
        ctx.authorise_read()
        settings = ctx.state.settings
        where = RecordFilter(
            countries=parse_countries(countries),
            topic_key=topic_key(topic) if topic and topic.strip() else None,
            since=parse_as_of(since, field="since"),
            until=parse_as_of(until, field="until"),
        )
        size = parse_count(
            first, maximum=settings.max_page_size, field="first", default=settings.default_page_size
        )
        assert size is not None
        page = await ctx.state.service.trends(TrendQuery(where, size, after))
        edges = [
            TrendEdge(
                cursor=encode_cursor(r.timestamp, r.id),
                node=Trend(
                    id=strawberry.ID(str(r.id)),
                    timestamp=r.timestamp,
                    country=r.country,
                    topic_label=r.topic_label,
                    count=r.count,
                    confidence=r.confidence,
                    sources=r.sources,
                ),
            )
            for r in page.records
        ]
        return TrendConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next,
                has_previous_page=after is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=page.total_count,
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Store records (upsert by country, topic and timestamp).")
    async def ingest_trends(
        self, info: Info[Context, None], trends: list[TrendInput]
    ) -> IngestResult:
        ctx = _context(info)
        settings = ctx.state.settings
        require_write(ctx.authorization, settings.api_keys, settings.read_api_keys)
        rows = validate_batch([_record(t) for t in trends], where="trends")
        result = await ctx.state.service.ingest(rows)
        return IngestResult(
            received=len(rows),
            inserted=result.inserted,
            updated=result.updated,
            unchanged=result.unchanged,
        )


def _record(t: TrendInput) -> dict[str, Any]:
    return {
        "timestamp": t.timestamp,
        "country": t.country,
        "topic_label": t.topic_label,
        "count": t.count,
        "confidence": t.confidence,
        "sources": t.sources,
    }


def _mask(error: GraphQLError) -> bool:
    """Hide everything but domain errors and GraphQL's own (syntax, validation) errors."""
    original = error.original_error
    return original is not None and not isinstance(original, TrendmapError)


class Warnings(SchemaExtension):
    """Carry the service's warnings (a truncated answer, ...) in the response's extensions."""

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        warnings = context.warnings if isinstance(context, Context) else []
        return {"warnings": list(warnings)} if warnings else {}


def make_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=[functools.partial(MaskErrors, should_mask_error=_mask), Warnings],
    )


def context_for(connection: HTTPConnection) -> Context:
    return Context(connection=connection, state=app_state(connection))
