"""The GraphQL schema (camelCase): hotspots, flows, trends and ingestTrends.

Resolvers parse their arguments with the same functions as REST and call the same service.
Errors that are not domain errors are masked; domain errors carry ``extensions.code`` and
``extensions.status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.extensions import MaskErrors
from strawberry.schema.config import BatchingConfig, StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.types import Info
from strawberry.types.arguments import StrawberryArgument

from graph.auth import Access, credentials_for, header_credential, require_write
from graph.core.errors import LimitExceeded, TrendmapError
from graph.core.flows import Flow as CoreFlow
from graph.core.records import TrendIn, validate_batch
from graph.core.windows import TimeWindow
from graph.graphql import exploring, fanout
from graph.graphql.context import Context
from graph.graphql.errors import Schema, SingleOperation, should_mask
from graph.graphql.exploring import ARGUMENTS, DataSpan, HotspotPoint, TopicSpread, TopicSummary
from graph.graphql.fast_path import SharedEventExecution
from graph.graphql.identified import identified, identified_flows, identified_hotspots
from graph.graphql.limits import limit_extensions
from graph.graphql.persisted import PersistedQueries, Safelist, SafelistGuard
from graph.graphql.prepared import PreparedOperations
from graph.graphql.response_cache import OperationCache, OperationRecorder, note_sliding
from graph.graphql.types import (
    Flow,
    FlowStats,
    Hotspot,
    IngestResult,
    PageInfo,
    TrendConnection,
    TrendEdge,
    TrendInput,
    argument,
)
from graph.graphql.warnings import Warnings, warn
from graph.live.broadcaster import Cohort
from graph.observability.metrics import OperationLabel
from graph.observability.tracing import graphql_extensions
from graph.service.cursor import encode_cursor
from graph.service.params import parse_countries, parse_threshold, parse_time_window
from graph.service.payloads import flow_stats_of
from graph.service.queries import FlowQuery, HotspotQuery, TrendQuery
from graph.settings import Settings


def _context(info: Info[Context, None]) -> Context:
    return info.context


def _argument(name: str) -> Any:
    return strawberry.argument(description=ARGUMENTS[name])


@strawberry.type(description="What is hot, what spreads where, and what was recorded.")
class Query:
    @strawberry.field(description="Countries by intensity (hottest first) in the window.")
    async def hotspots(
        self,
        info: Info[Context, None],
        time_window: Annotated[str, argument("time_window")] = "24h",
        countries: Annotated[list[str] | None, argument("countries")] = None,
        as_of: Annotated[datetime | None, argument("as_of")] = None,
        limit: Annotated[int | None, argument("hotspot_limit")] = None,
    ) -> list[Hotspot]:
        ctx = _context(info)
        ctx.authorise_read()
        query = HotspotQuery.parse(
            time_window=time_window,
            countries=countries,
            as_of=as_of,
            limit=limit,
            camel_case=True,
        )
        answer = await ctx.state.service.hotspots(query, min_generation=ctx.min_generation)
        warn(answer.warnings)
        if query.as_of is None:
            note_sliding(answer.computed_at)
        return identified_hotspots(answer)

    @strawberry.field(description="Hot flows between countries, hottest first.")
    async def flows(
        self,
        info: Info[Context, None],
        time_window: Annotated[str, argument("time_window")] = "24h",
        countries: Annotated[list[str] | None, argument("flow_countries")] = None,
        threshold: Annotated[float | None, argument("threshold")] = None,
        as_of: Annotated[datetime | None, argument("as_of")] = None,
        limit: Annotated[int | None, argument("flow_limit")] = None,
    ) -> list[Flow]:
        ctx = _context(info)
        ctx.authorise_read()
        query = FlowQuery.parse(
            time_window=time_window,
            countries=countries,
            threshold=threshold,
            as_of=as_of,
            limit=limit,
            settings=ctx.state.settings,
            camel_case=True,
        )
        answer = await ctx.state.service.flows(query, min_generation=ctx.min_generation)
        warn(answer.warnings)
        if query.as_of is None:
            note_sliding(answer.computed_at)
        return identified_flows(answer)

    @strawberry.field(
        description="Why flows holds what it holds: the hottest pair in the window whatever the"
        " threshold, and how many pairs of countries share a topic (computed and cached with"
        " the flows at the default threshold)."
    )
    async def flow_stats(
        self,
        info: Info[Context, None],
        time_window: Annotated[
            str, strawberry.argument(description="The window: 1h, 6h, 12h or 24h.")
        ] = "24h",
        as_of: Annotated[
            datetime | None,
            strawberry.argument(description="When the window ends (ISO 8601). Default: now."),
        ] = None,
        countries: Annotated[
            list[str] | None,
            strawberry.argument(
                description="Only pairs with both countries in this list (ISO 3166-1 alpha-2)."
            ),
        ] = None,
    ) -> FlowStats:
        ctx = _context(info)
        ctx.authorise_read()
        query = FlowQuery.parse(
            time_window=time_window,
            countries=countries,
            threshold=None,
            as_of=as_of,
            limit=None,
            settings=ctx.state.settings,
            camel_case=True,
        )
        answer = await ctx.state.service.flows(query, min_generation=ctx.min_generation)
        warn(await ctx.state.service.partial_warnings(query.countries))
        if query.as_of is None:
            note_sliding(answer.computed_at)
        return flow_stats_of(answer.metadata)

    @strawberry.field(description="Stored records, newest first, in cursor pages.")
    async def trends(
        self,
        info: Info[Context, None],
        countries: Annotated[list[str] | None, argument("countries")] = None,
        topic: Annotated[str | None, argument("topic")] = None,
        since: Annotated[datetime | None, argument("since")] = None,
        until: Annotated[datetime | None, argument("until")] = None,
        first: Annotated[int | None, argument("first")] = None,
        after: Annotated[str | None, argument("after")] = None,
    ) -> TrendConnection:
        ctx = _context(info)
        ctx.authorise_read()
        query = TrendQuery.parse(
            countries=countries,
            topic=topic,
            since=since,
            until=until,
            first=first,
            after=after,
            settings=ctx.state.settings,
        )
        page = await ctx.state.service.trends(query)
        warn(await ctx.state.service.partial_warnings(query.where.countries))
        edges = [TrendEdge(cursor=encode_cursor(r.timestamp, r.id), node=r) for r in page.records]
        return TrendConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next,
                has_previous_page=query.after is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=page.total_count,
        )

    @strawberry.field(description="The archive's first and last record, records and countries.")
    async def data_span(self, info: Info[Context, None]) -> DataSpan:
        return await exploring.data_span(_context(info))

    @strawberry.field(
        description="Topics in the window: seen in the most countries first, then the largest"
        " count, then by label."
    )
    async def topics(
        self,
        info: Info[Context, None],
        time_window: Annotated[str, _argument("time_window")] = "24h",
        as_of: Annotated[datetime | None, _argument("as_of")] = None,
        countries: Annotated[list[str] | None, _argument("countries")] = None,
        search: Annotated[str | None, _argument("search")] = None,
        limit: Annotated[int, _argument("limit")] = 20,
    ) -> list[TopicSummary]:
        return await exploring.topics(
            _context(info),
            time_window=time_window,
            as_of=as_of,
            countries=countries,
            search=search,
            limit=limit,
        )

    @strawberry.field(
        description="How one topic went round the world: every country that saw it between"
        " since and until, by first sighting. Null when none did."
    )
    async def topic_spread(
        self,
        info: Info[Context, None],
        topic: Annotated[str, _argument("topic")],
        since: Annotated[datetime | None, _argument("since")] = None,
        until: Annotated[datetime | None, _argument("until")] = None,
    ) -> TopicSpread | None:
        ctx = _context(info)
        return await exploring.topic_spread(ctx, topic=topic, since=since, until=until)

    @strawberry.field(
        description="How hot one country was over time: its hotspot figures in the window"
        " ending at since, since + step, ... up to until, oldest first."
    )
    async def hotspot_history(
        self,
        info: Info[Context, None],
        country: Annotated[str, _argument("country")],
        time_window: Annotated[str, _argument("time_window")] = "24h",
        since: Annotated[datetime | None, _argument("since")] = None,
        until: Annotated[datetime | None, _argument("until")] = None,
        step: Annotated[str | None, _argument("step")] = None,
    ) -> list[HotspotPoint]:
        return await exploring.hotspot_history(
            _context(info),
            country=country,
            time_window=time_window,
            since=since,
            until=until,
            step=step,
        )


@strawberry.type(description="Storing records (needs a write credential).")
class Mutation:
    @strawberry.mutation(description="Store records (upsert by country, topic and timestamp).")
    async def ingest_trends(
        self, info: Info[Context, None], trends: Annotated[list[TrendInput], argument("trends")]
    ) -> IngestResult:
        ctx = _context(info)
        settings = ctx.state.settings
        require_write(ctx.authorization, credentials_for(settings))
        rows = validate_batch(
            [_record(t) for t in trends], where="trends", bounds=settings.record_bounds()
        )
        result = await ctx.state.service.ingest(rows)
        ctx.announce_generation(result.generation)
        return IngestResult(
            received=len(rows),
            inserted=result.inserted,
            updated=result.updated,
            unchanged=result.unchanged,
            generation=result.generation,
        )


@strawberry.type(description="Live updates over WebSocket (graphql-transport-ws or graphql-ws).")
class Subscription:
    @strawberry.subscription(
        description="Each flow that newly reaches the threshold, once per crossing, as it happens."
    )
    async def hot_flows(
        self,
        info: Info[Context, None],
        time_window: Annotated[str, argument("time_window")] = "24h",
        countries: Annotated[list[str] | None, argument("flow_countries")] = None,
        threshold: Annotated[float | None, argument("threshold")] = None,
        include_current: Annotated[bool, argument("include_current")] = False,
    ) -> AsyncGenerator[Flow, None]:
        ctx = _context(info)
        ctx.authorise_read()
        window = parse_time_window(time_window, field="timeWindow")
        wanted = parse_countries(countries)
        level = parse_threshold(threshold, ctx.state.settings.flow_threshold)
        connection = ctx.connection
        most = ctx.state.settings.ws_max_subscriptions
        if ctx.subscriptions >= most:
            raise LimitExceeded(f"a connection may hold at most {most} subscriptions")

        def too_slow() -> None:
            # Closed from its own task: the broadcaster never waits on a slow socket.
            closing = asyncio.get_running_loop().create_task(_close_slow(connection))
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)

        operation = fanout.current_operation.get()
        writer = fanout.socket_writer(connection) if operation is not None else None
        ctx.subscriptions += 1
        try:
            if operation is not None and writer is not None:
                # Served with its cohort, as bytes (graph.graphql.fanout).
                member = fanout.Member(writer, operation.id, too_slow)
                served = _with_cohort(
                    info, operation, member, (window, wanted, level), include_current
                )
                # Closed here, not whenever it is collected: the member leaves its cohort as
                # soon as the operation ends, even between two current flows.
                async with contextlib.aclosing(served):
                    async for flow in served:
                        yield identified(flow)
                return
            async with ctx.state.broadcaster.subscribe(window, wanted, level, on_drop=too_slow) as (
                subscriber,
                current,
            ):
                if include_current:
                    for flow in current:
                        yield identified(flow)
                # Every member of a group receives the same core flow objects, so that
                # SharedEventExecution shares their results (and GraphQLApp the encoding).
                async for flow in subscriber:
                    yield identified(flow)
        finally:
            ctx.subscriptions -= 1


async def _with_cohort(
    info: Info[Context, None],
    operation: fanout.Operation,
    member: fanout.Member,
    group: tuple[TimeWindow, tuple[str, ...] | None, float],
    include_current: bool,
) -> AsyncGenerator[CoreFlow, None]:
    """The current flows if asked for (sent by Strawberry, to this member alone), then the
    member served with its cohort until its subscription ends."""
    ctx = _context(info)
    settings = ctx.state.settings
    joined: list[fanout.FanoutCohort] = []

    def make_cohort() -> fanout.FanoutCohort:
        schema = info._raw_info.schema
        return fanout.FanoutCohort(schema, operation, ctx, settings.ws_max_buffer_bytes)

    def enter(cohort: Cohort) -> Callable[[], None]:
        assert isinstance(cohort, fanout.FanoutCohort)
        joined.append(cohort)
        return cohort.add(member)

    window, wanted, level = group
    async with ctx.state.broadcaster.join(
        window,
        wanted,
        level,
        member=member,
        cohort_key=fanout.cohort_key(operation, _credential_class(ctx)),
        make_cohort=make_cohort,
        enter=enter,
    ) as current:
        if include_current:
            for flow in current:
                yield flow
        # Strawberry asks for the next flow once it has sent the last: every current flow is
        # out, and the flows that came meanwhile follow them.
        await fanout.serve(joined[0], member)


def _credential_class(ctx: Context) -> Access:
    """What the connection's credential may do: members of a cohort share its context."""
    try:
        found = header_credential(ctx.authorization, ctx.state.settings)
    except TrendmapError:
        return Access.NONE
    return Access.NONE if found is None else found[1]


_closing: set[asyncio.Task[None]] = set()


async def _close_slow(connection: HTTPConnection) -> None:
    """Close a dropped subscriber's socket; the frame goes out once its peer reads again."""
    if isinstance(connection, WebSocket):
        with contextlib.suppress(Exception):
            await connection.close(code=1008, reason="subscriber too slow: dropped")


class ArgumentNames(NameConverter):
    """Strawberry's names, each argument's worked out once. Strawberry asks for the GraphQL
    name of every argument of a field each time its resolver is called (to convert the
    arguments), camel-casing it anew: 4% of a GraphQL request with new variables. Arguments
    are the schema's, made once; at most ``_MAX_ARGUMENTS`` are remembered all the same."""

    _MAX_ARGUMENTS = 1024

    def __init__(self) -> None:
        super().__init__()
        self._names: dict[int, tuple[StrawberryArgument, str]] = {}

    def from_argument(self, argument: StrawberryArgument) -> str:
        found = self._names.get(id(argument))
        if found is None or found[0] is not argument:
            if len(self._names) >= self._MAX_ARGUMENTS:
                self._names.clear()
            found = self._names[id(argument)] = (argument, super().from_argument(argument))
        return found[1]


def _record(t: TrendInput) -> dict[str, Any]:
    """The input's fields, to validate as REST's are (TrendInput has TrendIn's fields)."""
    return {name: getattr(t, name) for name in TrendIn.model_fields}


def _mask(error: GraphQLError) -> bool:
    """Hide everything but domain errors and request errors (graph.graphql.errors)."""
    return should_mask(error)


class TrendmapSchema(Schema):
    """The schema, with what its HTTP transport keeps per worker: persisted documents
    (graph.graphql.persisted) and answers to repeated queries (graph.graphql.response_cache)."""

    def __init__(
        self,
        *args: Any,
        persisted: PersistedQueries,
        operations: OperationCache,
        prepared: PreparedOperations,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.persisted = persisted
        self.operations = operations
        self.prepared = prepared


def make_schema(settings: Settings) -> TrendmapSchema:
    """The schema, with the configured limits (graph.graphql.limits) and error masking.
    ValueError when GRAPHQL_SAFELIST_FILE cannot be used."""
    batching = (
        BatchingConfig(max_operations=settings.graphql_max_batch)
        if settings.graphql_max_batch > 0
        else None
    )
    safelist = (
        Safelist.load(settings.graphql_safelist_file)
        if settings.graphql_safelist_file is not None
        else None
    )
    tracing = graphql_extensions()
    return TrendmapSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        execution_context_class=SharedEventExecution,
        extensions=[
            *tracing,  # first, so the operation's span holds the other steps
            *limit_extensions(settings),
            SingleOperation,  # after the validation cache (limit_extensions)
            *([functools.partial(SafelistGuard, safelist=safelist)] if safelist else []),
            functools.partial(MaskErrors, should_mask_error=_mask),
            Warnings,
            *([OperationLabel] if settings.metrics_enabled else []),
            OperationRecorder,
        ],
        config=StrawberryConfig(
            disable_field_suggestions=not settings.graphql_introspection,
            batching_config=batching,
            name_converter=ArgumentNames(),
        ),
        persisted=PersistedQueries(
            max_documents=settings.graphql_apq_max_documents, safelist=safelist
        ),
        # Traced operations go through the pipeline: their span is an extension's.
        prepared=PreparedOperations(enabled=not tracing),
        operations=OperationCache(
            max_entries=settings.graphql_response_cache_entries,
            max_bytes=settings.graphql_response_cache_bytes,
            refresh_seconds=settings.flows_refresh_seconds,
        ),
    )
