"""The GraphQL schema (camelCase): hotspots, flows, trends and ingestTrends.

Resolvers parse their arguments with the same functions as REST and call the same service.
Errors that are not domain errors are masked; domain errors carry ``extensions.code`` and
``extensions.status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import operator
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import strawberry
from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLString,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.schema.config import BatchingConfig, StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info

from graph.auth import (
    connection_authorization,
    credentials_for,
    require_connection,
    require_read,
    require_write,
)
from graph.core.errors import LimitExceeded, TrendmapError
from graph.core.records import validate_batch
from graph.graphql.limits import limit_extensions
from graph.graphql.types import (
    Flow,
    Hotspot,
    IngestResult,
    PageInfo,
    Trend,
    TrendConnection,
    TrendEdge,
    TrendInput,
)
from graph.observability.metrics import OperationLabel
from graph.service.params import (
    MAX_HOTSPOTS,
    parse_as_of,
    parse_count,
    parse_countries,
    parse_record_filter,
    parse_threshold,
    parse_time_window,
)
from graph.service.trend_service import FlowQuery, HotspotQuery, TrendQuery, encode_cursor
from graph.settings import Settings
from graph.wiring import AppState, app_state


@dataclass(slots=True)
class Context:
    """What every resolver gets: the connection (HTTP or WebSocket) and the app state."""

    connection: HTTPConnection
    state: AppState
    warnings: list[str] = field(default_factory=list)
    subscriptions: int = 0  # live on this connection (one context per WebSocket)

    # A WebSocket's connection_init payload; Strawberry sets it before on_ws_connect.
    connection_params: dict[str, object] | None = None

    @property
    def authorization(self) -> str | None:
        """The Authorization header, else (WebSocket) the connection_init payload's credential."""
        header = self.connection.headers.get("authorization")
        return header or connection_authorization(self.connection_params)

    def authorise_read(self) -> None:
        require_read(self.authorization, credentials_for(self.state.settings))

    def authorise_connection(self) -> None:
        """At connection_init: a present credential must be valid, and one is needed to read."""
        require_connection(self.authorization, credentials_for(self.state.settings))


def _context(info: Info[Context, None]) -> Context:
    return info.context


_flows_memo: OrderedDict[int, tuple[bytes, list[Flow]]] = OrderedDict()


def _flows_of(payload: bytes) -> list[Flow]:
    """The Flow objects of a cached answer's payload, made once per payload object (a hit on
    the cache's local copy hands out the same bytes) and shared: nothing mutates them."""
    found = _flows_memo.get(id(payload))
    if found is not None and found[0] is payload:
        return found[1]
    flows = [Flow.of(item) for item in orjson.loads(payload)]
    _flows_memo[id(payload)] = (payload, flows)  # the payload is kept: its id stays its own
    if len(_flows_memo) > 64:
        _flows_memo.popitem(last=False)
    return flows


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
        answer = await ctx.state.service.hotspots(query)
        ctx.warnings.extend(answer.warnings)
        return [Hotspot.of(item) for item in answer.items()]

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
        answer = await ctx.state.service.flows(query)
        ctx.warnings.extend(answer.warnings)
        return _flows_of(answer.payload)

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
        where = parse_record_filter(countries, topic, since, until)
        size = parse_count(
            first, maximum=settings.max_page_size, field="first", default=settings.default_page_size
        )
        assert size is not None
        page = await ctx.state.service.trends(TrendQuery(where, size, after))
        ctx.warnings.extend(await ctx.state.service.partial_warnings(where.countries))
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
        require_write(ctx.authorization, credentials_for(settings))
        rows = validate_batch([_record(t) for t in trends], where="trends")
        result = await ctx.state.service.ingest(rows)
        return IngestResult(
            received=len(rows),
            inserted=result.inserted,
            updated=result.updated,
            unchanged=result.unchanged,
        )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Each flow that newly reaches the threshold, once per crossing, as it happens."
    )
    async def hot_flows(
        self,
        info: Info[Context, None],
        time_window: str = "24h",
        countries: list[str] | None = None,
        threshold: float | None = None,
        include_current: bool = False,
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

        ctx.subscriptions += 1
        try:
            async with ctx.state.broadcaster.subscribe(window, wanted, level, on_drop=too_slow) as (
                subscriber,
                current,
            ):
                if include_current:
                    for item in current:
                        yield Flow.of(item)
                async for flow in subscriber:
                    yield flow
        finally:
            ctx.subscriptions -= 1


_closing: set[asyncio.Task[None]] = set()


async def _close_slow(connection: HTTPConnection) -> None:
    """Close a dropped subscriber's socket; the frame goes out once its peer reads again."""
    if isinstance(connection, WebSocket):
        with contextlib.suppress(Exception):
            await connection.close(code=1008, reason="subscriber too slow: dropped")


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


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """Execute a live flow once per distinct operation, whoever subscribed to it.

    Every member of a subscription group receives the same ``Flow`` object for an event
    (graph.live.broadcaster builds it once per group); graphql-core then executes each
    member's selection set on it. Members with the same operation text and variables would
    compute the very same result, so it is computed once and shared (and encoded once, see
    GraphQLApp.encode_json).
    The memo lives as long as the event object does.
    """

    executed = 0  # events executed (per distinct operation), across the process
    shared = 0  # results reused for another subscriber
    plain_lists = 0  # lists completed in one pass (see complete_list_value)

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        event = self.root_value
        if not isinstance(event, Flow) or self.operation.loc is None:
            return super().execute_operation(*args, **kwargs)
        variables = self.variable_values.coerced
        key = (self.operation.loc.source.body, repr(sorted(variables.items())))
        # Kept on the event itself: it goes when the event does (Flow is not hashable).
        results: dict[tuple[str, str], Any] = event.__dict__.setdefault("_executions", {})
        if key in results:
            SharedEventExecution.shared += 1
        else:
            SharedEventExecution.executed += 1
            results[key] = super().execute_operation(*args, **kwargs)
        return results[key]

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """A list of plain objects (such as ``flows``) completed in one pass.

        graphql-core completes a list item by item and field by field, each through its
        resolver, a path and a completion step: most of a 20-flow query's time. When every
        selected field is a plain attribute with a scalar (or list of scalars) value, the result
        is the same when each item's attributes are read and serialised directly. Anything
        else (a resolver, arguments, directives, nested objects, a null where none is allowed)
        goes the usual way, which also reports the errors.
        """
        shaped = _plain_list(self, return_type, field_details_list, result)
        if shaped is not None:
            SharedEventExecution.plain_lists += 1
            return shaped
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )


_PASSIVE_DIRECTIVES = frozenset({"include", "skip"})  # already applied when fields are collected
# (response key, read the value off an item (None: __typename), serialise one scalar,
# nullable, a list of scalars)
_Leaf = tuple[str, Callable[[Any], Any] | None, Callable[[Any], Any], bool, bool]


def _serializer(scalar: GraphQLScalarType) -> Callable[[Any], Any]:
    """``scalar.serialize``, skipped for values that are already what it would return."""

    def serialize(value: Any) -> Any:
        result = scalar.serialize(value)
        if result is None:
            raise TypeError(f"{scalar.name} cannot represent {value!r}")
        return result

    if scalar is GraphQLFloat:
        return lambda v: v if type(v) is float and math.isfinite(v) else serialize(v)
    if scalar is GraphQLString:
        return lambda v: v if type(v) is str else serialize(v)
    if scalar is GraphQLInt:
        return lambda v: v if type(v) is int and -(2**31) <= v < 2**31 else serialize(v)
    if scalar is GraphQLBoolean:
        return lambda v: v if type(v) is bool else serialize(v)
    return serialize


def _leaf_of(field_type: GraphQLOutputType) -> tuple[GraphQLScalarType, bool, bool] | None:
    """(scalar, nullable, is a list of non-null scalars) for ``S``/``S!``/``[S!]``/``[S!]!``."""
    nullable = not isinstance(field_type, GraphQLNonNull)
    inner = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    if isinstance(inner, GraphQLScalarType):
        return inner, nullable, False
    if isinstance(inner, GraphQLList) and isinstance(inner.of_type, GraphQLNonNull):
        item = inner.of_type.of_type
        if isinstance(item, GraphQLScalarType):
            return item, nullable, True
    return None


# What _plain_fields found, by list type, selection (the parsed document is cached, so its nodes
# are the same objects for a repeated operation; they are kept, so their ids stay theirs) and
# variables (@include/@skip may use them).
_PlainKey = tuple[str, tuple[int, ...], str]
_plain_memo: OrderedDict[_PlainKey, tuple[object, list[_Leaf] | None]] = OrderedDict()
_PLAIN_MEMO_SIZE = 256


def _plain_fields(
    execution: SharedEventExecution, item_type: GraphQLObjectType, details: FieldDetailsList
) -> list[_Leaf] | None:
    """Each selected field as (response key, reader, serialiser, nullable, is list), or None
    when one of them is not a plain attribute with a scalar value."""
    variables = execution.variable_values.coerced
    key = (item_type.name, tuple(id(d.node) for d in details), repr(sorted(variables.items())))
    found = _plain_memo.get(key)
    if found is not None:
        return found[1]
    fields = _find_plain_fields(execution, item_type, details)
    _plain_memo[key] = ([d.node for d in details], fields)
    if len(_plain_memo) > _PLAIN_MEMO_SIZE:
        _plain_memo.popitem(last=False)
    return fields


def _find_plain_fields(
    execution: SharedEventExecution, item_type: GraphQLObjectType, details: FieldDetailsList
) -> list[_Leaf] | None:
    if details and any(
        d.defer_usage is not None
        or any(x.name.value not in _PASSIVE_DIRECTIVES for x in d.node.directives or ())
        for d in details
    ):
        return None
    grouped, deferred, forbidden = execution.collect_subfields(item_type, details)
    if deferred or forbidden:
        return None
    fields: list[_Leaf] = []
    for response_key, group in grouped.items():
        node = group[0].node
        name = node.name.value
        if any(
            d.defer_usage is not None or d.node.arguments or d.node.selection_set for d in group
        ) or any(
            x.name.value not in _PASSIVE_DIRECTIVES for d in group for x in d.node.directives or ()
        ):
            return None
        if name == "__typename":
            fields.append((response_key, None, _serializer(GraphQLString), False, False))
            continue
        definition = item_type.fields.get(name)
        if definition is None or definition.args:
            return None
        backref: Any = (definition.extensions or {}).get("strawberry-definition")
        resolve = definition.resolve
        if getattr(backref, "is_basic_field", False) is not True or resolve is None:
            return None
        leaf = _leaf_of(definition.type)
        if leaf is None:
            return None
        scalar, nullable, many = leaf
        # What the resolver does for a basic field: the default resolver on the attribute.
        read = (
            operator.attrgetter(backref.python_name)
            if backref.default_resolver is getattr
            else functools.partial(_resolve_plainly, resolve)
        )
        fields.append((response_key, read, _serializer(scalar), nullable, many))
    return fields


def _resolve_plainly(resolve: Callable[..., Any], item: Any) -> Any:
    return resolve(item, None)


def _plain_list(
    execution: SharedEventExecution,
    return_type: GraphQLList[GraphQLOutputType],
    details: FieldDetailsList,
    items: Any,
) -> list[dict[str, Any]] | None:
    """The completed list, or None when it must be completed the usual way."""
    item_type = return_type.of_type
    if not isinstance(item_type, GraphQLNonNull):
        return None
    list_type = item_type.of_type
    if not isinstance(list_type, GraphQLObjectType):
        return None
    if not isinstance(items, list) or list_type.is_type_of is not None:
        return None
    if getattr(execution.middleware_manager, "middlewares", None):
        return None  # an extension wraps every resolver: it must see every field
    fields = _plain_fields(execution, list_type, details)
    if fields is None:
        return None
    typename = list_type.name
    shaped: list[dict[str, Any]] = []
    try:
        for item in items:
            if item is None:
                return None
            row: dict[str, Any] = {}
            for key, read, serialize, nullable, many in fields:
                if read is None:
                    row[key] = typename
                    continue
                value = read(item)
                if value is None:
                    if not nullable:
                        return None
                    row[key] = None
                elif many:
                    row[key] = [serialize(v) for v in value]
                else:
                    row[key] = serialize(value)
            shaped.append(row)
    except Exception:  # the usual way reports it, as a field error at its path
        return None
    return shaped


def make_schema(settings: Settings) -> strawberry.Schema:
    """The schema, with the configured limits (graph.graphql.limits) and error masking."""
    batching = (
        BatchingConfig(max_operations=settings.graphql_max_batch)
        if settings.graphql_max_batch > 0
        else None
    )
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        execution_context_class=SharedEventExecution,
        extensions=[
            *limit_extensions(settings),
            functools.partial(MaskErrors, should_mask_error=_mask),
            Warnings,
            *([OperationLabel] if settings.metrics_enabled else []),
        ],
        config=StrawberryConfig(
            disable_field_suggestions=not settings.graphql_introspection,
            batching_config=batching,
        ),
    )


def context_for(connection: HTTPConnection) -> Context:
    return Context(connection=connection, state=app_state(connection))
