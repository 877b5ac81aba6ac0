"""The GraphQL endpoint over HTTP and WebSocket: Strawberry's ASGI view with our context,
connection_init check, JSON codec and error format."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import orjson
from cross_web import AsyncHTTPRequestAdapter
from cross_web import HTTPException as GraphQLHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions.protocols.graphql_transport_ws import types as transport_ws
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage, StartMessage
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType

from graph.core.errors import TrendmapError
from graph.graphql.context import Context, context_for
from graph.graphql.errors import is_request_error, log_errors
from graph.graphql.fanout import GRAPHQL_TRANSPORT_WS, GRAPHQL_WS, Operation, current_operation
from graph.graphql.identity_memo import IdentityMemo
from graph.graphql.init_deadline import InitDeadline
from graph.graphql.limits import CACHED_DOCUMENT_CHARS
from graph.graphql.persisted import PersistedQueries, PersistedQueryError
from graph.graphql.prepared import PreparedOperation
from graph.graphql.response_cache import (
    Lookup,
    OperationRecord,
    cacheable_fields,
    document_hash,
)
from graph.graphql.schema import TrendmapSchema
from graph.http.errors import error_for_status
from graph.http.graphiql import page as graphiql_page
from graph.http.prebuilt import mark_graphql
from graph.observability.log import log_fields, logger
from graph.observability.metrics import OPERATION_KEY
from graph.wiring import app_state

_MESSAGE_KEYS = {"id", "type", "payload"}
JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
# The protocol's own refusals that have a code of their own rather than their status's.
_REFUSAL_CODES = {406: "not_acceptable", 415: "unsupported_media_type"}
# What GraphQLApp read of a request before handing it to Strawberry, which asks for it again
# through parse_http_body: the body is read and decoded once.
_prepared: ContextVar[GraphQLRequestData | list[GraphQLRequestData] | None] = ContextVar(
    "graphql_prepared", default=None
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A request's data, persisted queries found, and the hash of its one document (None for
    a batch, or a request without a document, which Strawberry refuses)."""

    data: GraphQLRequestData | list[GraphQLRequestData]
    document_hash: str | None


# Strawberry's parser of a Content-Type value (the email package's: slow), for the few values
# clients send, each parsed once.
_content_type = functools.lru_cache(maxsize=64)(parse_content_type)


def _encode(value: object) -> str:
    return orjson.dumps(value).decode()


def _shared_payload(data: object) -> tuple[dict[str, Any], object] | None:
    """A live `next` (graphql-transport-ws) or `data` (graphql-ws) message without errors, and
    its result (the object shared by every member of a subscription group)."""
    if not isinstance(data, dict) or data.get("type") not in ("next", "data"):
        return None
    payload = data.get("payload")
    if not isinstance(payload, dict) or set(payload) != {"data"} or set(data) != _MESSAGE_KEYS:
        return None
    return data, payload["data"]


def _media_ranges(accept: str) -> Iterator[tuple[str, str, float]]:
    """An Accept header's media ranges: (type, subtype, quality); malformed ones are left out."""
    for part in accept.split(","):
        media, _, parameters = part.partition(";")
        kind, slash, subtype = media.strip().lower().partition("/")
        if not slash or not kind or not subtype or (kind == "*" and subtype != "*"):
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        yield kind, subtype, quality


def _preference(offered: str, ranges: list[tuple[str, str, float]]) -> tuple[float, int]:
    """How much the client wants ``offered``: the quality of the most specific range that
    matches it (RFC 9110), and that specificity (2 named, 1 ``type/*``, 0 ``*/*``)."""
    kind, _, subtype = offered.partition("/")
    best = (0.0, -1)
    for range_kind, range_subtype, quality in ranges:
        if range_kind not in ("*", kind) or range_subtype not in ("*", subtype):
            continue
        specificity = (range_kind != "*") + (range_subtype != "*")
        if specificity > best[1] or (specificity == best[1] and quality > best[0]):
            best = (quality, specificity)
    return best


def negotiate(accept: str | None) -> str | None:
    """The media type of the answer to a request with this Accept header (GraphQL over HTTP):
    ``application/graphql-response+json`` when the client names it at least as gladly as
    ``application/json``; JSON when there is no Accept or only a wildcard allows a type (what
    every client reads, graphql-http's audit 47DE); None when neither is acceptable."""
    if accept is None or not accept.strip():
        return JSON
    ranges = list(_media_ranges(accept))
    graphql_quality, graphql_specificity = _preference(GRAPHQL_RESPONSE, ranges)
    json_quality, _ = _preference(JSON, ranges)
    if graphql_quality <= 0 and json_quality <= 0:
        return None
    if (graphql_quality, graphql_specificity == 2) > (json_quality, False):
        return GRAPHQL_RESPONSE
    return JSON


class _AnyOperation:
    """The schema as the legacy handler sees it: its ``subscribe`` runs any operation (queries
    and mutations answer once, then ``complete``), as graphql-transport-ws does through
    ``stream``. Everything else is the schema's."""

    def __init__(self, schema: BaseSchema) -> None:
        self._schema = schema

    async def subscribe(self, **kwargs: Any) -> Any:
        return await self._schema.stream(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._schema, name)


def client_left(error: BaseException, websocket: object) -> bool:
    """Whether ``error`` only says that the peer of ``websocket`` went away: its socket was
    closed or reset under a send, or the send came after the close."""
    if isinstance(error, WebSocketDisconnected | WebSocketDisconnect | OSError):
        return True
    ws = getattr(websocket, "ws", websocket)
    states = (getattr(ws, "client_state", None), getattr(ws, "application_state", None))
    return isinstance(error, RuntimeError) and WebSocketState.DISCONNECTED in states


@contextlib.contextmanager
def _operation(protocol: str, operation_id: object, payload: Mapping[str, Any]) -> Iterator[None]:
    """While a subscribe message is handled: the operation, for the task Strawberry makes for it
    (tasks copy the context they are made in). Only a well-formed one: anything else goes
    Strawberry's way, which answers it as ever."""
    query, variables, name = (payload.get(k) for k in ("query", "variables", "operationName"))
    if (
        not isinstance(operation_id, str)
        or not isinstance(query, str)
        or not isinstance(variables, dict | None)
        or not isinstance(name, str | None)
    ):
        yield
        return
    token = current_operation.set(Operation(protocol, operation_id, query, variables, name))
    try:
        yield
    finally:
        current_operation.reset(token)


class _GraphQLTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, its connection_init deadline kept by an InitDeadline (on time
    under a burst of handshakes) instead of Strawberry's sleeping task."""

    def on_request_accepted(self) -> None:
        seconds = self.connection_init_wait_timeout.total_seconds()
        self.init_deadline = InitDeadline(self.websocket, seconds)

    async def handle_connection_init(self, message: transport_ws.ConnectionInitMessage) -> None:
        self.init_deadline.cancel()
        if not self.init_deadline.expired:
            await super().handle_connection_init(message)

    async def shutdown(self) -> None:
        self.init_deadline.cancel()
        await super().shutdown()

    async def handle_subscribe(self, message: transport_ws.SubscribeMessage) -> None:
        """Strawberry's, with the operation known to its task (graph.graphql.fanout)."""
        payload = message.get("payload")
        if not isinstance(payload, dict):
            await super().handle_subscribe(message)
            return
        with _operation(GRAPHQL_TRANSPORT_WS, message.get("id"), payload):
            await super().handle_subscribe(message)

    async def handle_task_exception(self, error: Exception) -> None:
        """A subscriber that left while a result was on its way is no server error: one
        debug line. Anything else is Strawberry's "Exception in worker task" (a JSON line
        with its traceback)."""
        if client_left(error, self.websocket):
            logger.debug("subscriber left during a delivery", reason=type(error).__name__)
            return
        await super().handle_task_exception(error)


class _GraphQLWSHandler(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws, carrying queries and mutations as well as subscriptions (clients such
    as Apollo's legacy link and gql send every operation over the socket), and closing a
    refused connection with 4403 as graphql-transport-ws does.

    Strawberry's own handler runs subscriptions only, sends ``connection_error`` and closes
    with 1011 (what subscriptions-transport-ws servers did); the error is kept, the close code
    is ours. It has no connection_init deadline either: the one graphql-transport-ws has
    applies here too (4408).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = cast(BaseSchema, _AnyOperation(self.schema))

    async def handle(self) -> None:
        seconds = self.view.connection_init_wait_timeout.total_seconds()
        self.init_deadline = InitDeadline(self.websocket, seconds)
        try:
            await super().handle()
        finally:
            self.init_deadline.cancel()

    async def handle_start(self, message: StartMessage) -> None:
        """Strawberry's, with the operation known to its task (graph.graphql.fanout)."""
        payload = message.get("payload")
        if not isinstance(payload, dict):
            await super().handle_start(message)
            return
        with _operation(GRAPHQL_WS, message.get("id"), payload):
            await super().handle_start(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        self.init_deadline.cancel()
        if self.init_deadline.expired:
            return
        payload = message.get("payload")
        if payload is None or isinstance(payload, dict):
            self.context.connection_params = payload
            try:
                await self.view.on_ws_connect(self.context)
            except ConnectionRejectionError as exc:
                await self.send_message({"type": "connection_error", "payload": exc.payload})
                await self.websocket.close(code=4403, reason="Forbidden")
                return
        # Admitted (Strawberry checks once more, cheaply) or a malformed payload it refuses.
        await super().handle_connection_init(message)


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry over Starlette, with our context on HTTP and WebSocket alike."""

    graphql_transport_ws_handler_class = _GraphQLTransportWSHandler
    graphql_ws_handler_class = _GraphQLWSHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A live result shared by a group's members (see SharedEventExecution): encoded once.
        self._encodings = IdentityMemo(_encode, 512)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return context_for(request, response if isinstance(response, Response) else None)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from this server's own files, never from another site (graph.http.graphiql)."""
        return await graphiql_page(request)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Check the socket's credential at connection_init; refused, the socket closes 4403."""
        try:
            context.authorise_connection()
        except TrendmapError as exc:
            raise ConnectionRejectionError({"message": exc.detail, "code": exc.code}) from exc
        return UnsetType()  # a plain connection_ack (UnsetType is a singleton: UNSET)

    async def run(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """An HTTP request answered in the media type its Accept asks for (406 when it allows
        neither JSON type); Strawberry's own refusals (no query, unreadable body, batching off,
        an unknown operation name, ...) as GraphQL responses: ``{"errors": [{"message",
        "extensions": {"code", "status"}}]}`` with the refusal's status."""
        if not isinstance(request, Request):  # a WebSocket
            return await super().run(request, *args, **kwargs)
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            if not self.should_render_graphql_ide(self.request_adapter_class(request)):
                reason = f"Not acceptable: accept {JSON} or {GRAPHQL_RESPONSE}"
                return _protocol_error(GraphQLHTTPException(406, reason), JSON)
            media_type = JSON
        request.state.graphql_media_type = media_type
        try:
            response = await self._answer(request, *args, **kwargs)
        except GraphQLHTTPException as exc:
            return _protocol_error(exc, media_type)
        except PersistedQueryError as exc:
            return _persisted_error(exc, media_type)
        if response.media_type == JSON:  # not GraphiQL's page
            response.headers["content-type"] = media_type
            if getattr(request.state, "graphql_request_error", False):
                response.status_code = 400
        return response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """A request error answered as ``application/graphql-response+json`` has no ``data``
        (and is a 400, see ``run``); with ``application/json`` it stays a 200 with data null."""
        processed = await super().process_result(request, result)
        if getattr(request.state, "graphql_media_type", JSON) != GRAPHQL_RESPONSE:
            return processed
        if result.data is None and any(is_request_error(error) for error in result.errors or ()):
            request.state.graphql_request_error = True
            return cast(GraphQLHTTPResponse, {k: v for k, v in processed.items() if k != "data"})
        return processed

    async def _answer(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Strawberry's answer, or a kept one. A persisted query's document is found first
        (graph.graphql.persisted); then a query asked again the same way is answered with the
        bytes of its last answer (graph.graphql.response_cache), never parsed, validated nor
        executed; a new answer is kept when it may be."""
        schema = self.schema
        if not isinstance(schema, TrendmapSchema):
            response: Response = await super().run(request, *args, **kwargs)
            return response
        state = app_state(request)
        prepared = await self._prepare(request, schema.persisted)
        lookup: Lookup | None = None
        if prepared is not None and isinstance(prepared.data, GraphQLRequestData):
            if prepared.document_hash is not None:
                data = prepared.data
                lookup = await schema.operations.lookup(
                    request, state, prepared.document_hash, data.operation_name, data.variables
                )
            if lookup is not None and lookup.body is not None:
                log_fields(request.scope).update(cache_hit=True)
                if lookup.label is not None:  # the operation, for the request histogram
                    request.scope.setdefault("state", {})[OPERATION_KEY] = lookup.label
                mark_graphql(request.scope, lookup.generation, lookup.oldest_sliding, lookup.label)
                return Response(lookup.body, media_type=JSON)
        reading = _prepared.set(prepared.data if prepared is not None else None)
        try:
            with schema.operations.recording() as record:
                response = await self._execute(request, schema, prepared, record, *args, **kwargs)
        finally:
            _prepared.reset(reading)
        body = getattr(response, "body", None)
        if lookup is not None and response.status_code == 200 and isinstance(body, bytes):
            label = request.scope.get("state", {}).get(OPERATION_KEY)
            if schema.operations.keep(lookup.key, body, record, label):
                mark_graphql(request.scope, lookup.generation, record.oldest_sliding, label)
        return response

    async def _execute(
        self,
        request: Request,
        schema: TrendmapSchema,
        prepared: _Prepared | None,
        record: OperationRecord,
        *args: Any,
        **kwargs: Any,
    ) -> Response:
        """Strawberry's answer; for a query this worker has run before, a prepared run's
        (graph.graphql.prepared) when it meets no error. A query that reached execution in
        Strawberry's pipeline is prepared for the next request."""
        data = prepared.data if prepared is not None else None
        digest = prepared.document_hash if prepared is not None else None
        if (
            not isinstance(data, GraphQLRequestData)
            or digest is None
            or not isinstance(data.operation_name, str | None)  # the pipeline refuses it
        ):
            response: Response = await super().run(request, *args, **kwargs)
            return response
        operation = schema.prepared.get(digest, data.operation_name)
        if operation is not None:
            answered = await self._run_prepared(request, schema, operation, data, record)
            if answered is not None:
                return answered
        response = await super().run(request, *args, **kwargs)
        document = record.query_document
        if document is not None and record.operations == 1 and operation is None:
            if len(data.query or "") <= CACHED_DOCUMENT_CHARS:
                label = request.scope.get("state", {}).get(OPERATION_KEY)
                cacheable = cacheable_fields(document, data.operation_name)
                schema.prepared.remember(
                    digest, data.operation_name, PreparedOperation(document, label, cacheable)
                )
        return response

    async def _run_prepared(
        self,
        request: Request,
        schema: TrendmapSchema,
        operation: PreparedOperation,
        data: GraphQLRequestData,
        record: OperationRecord,
    ) -> Response | None:
        """The answer of a prepared run, built as Strawberry's view builds one, with what
        OperationLabel and OperationRecorder would have noted; None when it met an error."""
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, sub_response)
        with schema.operations.recording() as attempt:
            result = await schema.prepared.run(schema, operation, data, context)
        if result is None:
            return None
        record.operations, record.cacheable = 1, operation.cacheable
        record.oldest_sliding = attempt.oldest_sliding
        if operation.label is not None:
            request.scope.setdefault("state", {})[OPERATION_KEY] = operation.label
        return self.create_response(await self.process_result(request, result), sub_response)

    async def _prepare(self, request: Request, persisted: PersistedQueries) -> _Prepared | None:
        """The request's data with the documents of persisted queries found; None when
        Strawberry is to read it itself (GraphiQL's page, a method it refuses, a body it
        cannot read: it answers those as ever). PersistedQueryError when one is refused."""
        adapter = self.request_adapter_class(request)
        if not self.is_request_allowed(adapter) or self.should_render_graphql_ide(adapter):
            return None
        try:
            data = await self._read_body(adapter)
        except (json.JSONDecodeError, KeyError):
            return None
        cache = app_state(request).cache
        items = data if isinstance(data, list) else [data]
        for item in items:
            resolved = await persisted.resolve(item.query, item.extensions, cache)
            item.query = resolved.query
        if isinstance(data, list) or data.query is None:
            return _Prepared(data, None)
        return _Prepared(data, resolved.hash or document_hash(data.query))

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's GET without a query; a GET naming a persisted query (its
        document by hash, in ``extensions``) is an operation."""
        return super().should_render_graphql_ide(request) and (
            "extensions" not in request.query_params
        )

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> Any:
        """What ``_prepare`` read, else the request's data (``_read_body``)."""
        prepared = _prepared.get()
        if prepared is not None:
            return prepared
        return await self._read_body(request)

    async def _read_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """A POST body must be JSON (or multipart, when uploads are on): else 415."""
        if request.method == "POST":
            media, _ = _content_type(request.content_type or "")
            multipart = self.multipart_uploads_enabled and media == "multipart/form-data"
            if "application/json" not in media and not multipart:
                named = repr(media[:80]) if media else "none"
                raise GraphQLHTTPException(
                    415, f"Unsupported content type {named}: send application/json"
                )
        return await super().parse_http_body(request)

    def encode_json(self, data: object) -> str:
        # orjson is several times faster than the stdlib; a str keeps WebSocket frames text.
        shared = _shared_payload(data)
        if shared is None:
            return orjson.dumps(data).decode()
        message, result = shared
        return '{"id":%s,"type":%s,"payload":{"data":%s}}' % (  # noqa: UP031
            orjson.dumps(message["id"]).decode(),
            orjson.dumps(message["type"]).decode(),
            self.encode_result(result),
        )

    def encode_result(self, result: object) -> str:
        """The JSON of a live result; the same text for the same (shared) result object."""
        return self._encodings(result)

    def decode_json(self, data: str | bytes) -> object:
        # Bodies, socket messages and `variables` are objects (arrays for batches); a bare
        # scalar would crash Strawberry further in, so it is refused here as unreadable.
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict | list):
            text = data if isinstance(data, str) else data.decode(errors="replace")
            raise json.JSONDecodeError("expected a JSON object", text, 0)
        return decoded


def _persisted_error(exc: PersistedQueryError, media_type: str) -> Response:
    """A persisted query refused or not found, as a GraphQL response with no ``data``.

    Not found (or APQ off) is a 200 that no cache may keep, as Apollo Server answers: the
    client sends the document next. Anything else is the client's mistake: a 400, logged as
    one line.
    """
    error = exc.as_graphql_error()
    headers = {}
    if exc.status == 200:
        headers["cache-control"] = "private, no-cache, must-revalidate"
    else:
        log_errors([error])
    body = {"errors": [error.formatted]}
    return Response(
        orjson.dumps(body), status_code=exc.status, media_type=media_type, headers=headers
    )


def _protocol_error(exc: GraphQLHTTPException, media_type: str) -> Response:
    """A refusal of the request as a whole, as a GraphQL response with no ``data``. A mutation
    over GET is 405 with ``Allow: POST`` (GraphQL over HTTP)."""
    status, headers = exc.status_code, {}
    cause = exc.__cause__
    if isinstance(cause, InvalidOperationTypeError) and cause.operation_type in (
        OperationType.MUTATION,
        OperationType.QUERY,  # queries over GET, were they turned off
    ):
        status, headers = 405, {"allow": "POST"}
    error = error_for_status(status, exc.reason)
    extensions = {"code": _REFUSAL_CODES.get(status, error.code), "status": status}
    body = {"errors": [{"message": exc.reason, "extensions": extensions}]}
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)
