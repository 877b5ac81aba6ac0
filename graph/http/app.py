"""The ASGI application: ``create_app(settings)`` builds it; the lifespan opens its resources."""

from __future__ import annotations

import asyncio
import gc
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException as GraphQLHTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage
from strawberry.types.unset import UnsetType

from graph.auth import credentials_for
from graph.core.errors import TrendmapError
from graph.graphql.schema import Context, context_for, make_schema
from graph.http import rest
from graph.http.middleware.admission import Admission, AdmissionMiddleware
from graph.http.middleware.limits import BodyLimitMiddleware, WebSocketLimitsMiddleware
from graph.http.middleware.ratelimit import RateLimiter, RateLimitMiddleware
from graph.observability.log import (
    RequestLogMiddleware,
    configure_logging,
    error_document,
    logger,
    request_id_of,
)
from graph.observability.metrics import Metrics, MetricsMiddleware
from graph.settings import Settings
from graph.wiring import open_state

_GRAPHQL_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class _PayloadEncodings:
    """The JSON of recent live payloads, by identity: a payload shared by a group's members
    (see schema.SharedEventExecution) is encoded once, not once per subscriber."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self.encoded = 0
        self.reused = 0
        # Keeping the payload itself in the value keeps its id from being reused.
        self._encoded: OrderedDict[int, tuple[object, str]] = OrderedDict()

    def encode(self, payload: object) -> str:
        found = self._encoded.get(id(payload))
        if found is not None and found[0] is payload:
            self.reused += 1
            return found[1]
        self.encoded += 1
        text = orjson.dumps(payload).decode()
        self._encoded[id(payload)] = (payload, text)
        if len(self._encoded) > self._size:
            self._encoded.popitem(last=False)
        return text


def _shared_payload(data: object) -> tuple[dict[str, Any], object] | None:
    """A live `next` (graphql-transport-ws) or `data` (graphql-ws) message without errors, and
    its result (the object shared by every member of a subscription group)."""
    if not isinstance(data, dict) or data.get("type") not in ("next", "data"):
        return None
    payload = data.get("payload")
    if (
        not isinstance(payload, dict)
        or set(payload) != {"data"}
        or set(data)
        != {
            "id",
            "type",
            "payload",
        }
    ):
        return None
    return data, payload["data"]


class _GraphQLWSHandler(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws, closing a refused connection with 4403 as graphql-transport-ws does.

    Strawberry's own handler sends ``connection_error`` and closes with 1011 (what
    subscriptions-transport-ws servers did); the error is kept, the close code is ours.
    """

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
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

    graphql_ws_handler_class = _GraphQLWSHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payloads = _PayloadEncodings()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return context_for(request)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Check the socket's credential at connection_init; refused, the socket closes 4403."""
        try:
            context.authorise_connection()
        except TrendmapError as exc:
            raise ConnectionRejectionError({"message": exc.detail, "code": exc.code}) from exc
        return UnsetType()  # a plain connection_ack (UnsetType is a singleton: UNSET)

    async def run(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """Strawberry's own HTTP errors (unparseable body, batching off, ...) in our format."""
        try:
            return await super().run(request, *args, **kwargs)
        except GraphQLHTTPException as exc:
            code = _GRAPHQL_HTTP_CODES.get(exc.status_code, "bad_request")
            return Response(
                error_document(code, exc.reason, request_id_of(request.scope)),
                status_code=exc.status_code,
                media_type="application/json",
            )

    def encode_json(self, data: object) -> str:
        # orjson is several times faster than the stdlib; a str keeps WebSocket frames text.
        shared = _shared_payload(data)
        if shared is None:
            return orjson.dumps(data).decode()
        message, result = shared
        return '{"id":%s,"type":%s,"payload":{"data":%s}}' % (  # noqa: UP031
            orjson.dumps(message["id"]).decode(),
            orjson.dumps(message["type"]).decode(),
            self.payloads.encode(result),
        )

    def decode_json(self, data: str | bytes) -> object:
        # Bodies, socket messages and `variables` are objects (arrays for batches); a bare
        # scalar would crash Strawberry further in, so it is refused here as unreadable.
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict | list):
            text = data if isinstance(data, str) else data.decode(errors="replace")
            raise json.JSONDecodeError("expected a JSON object", text, 0)
        return decoded


async def _stop(tasks: list[asyncio.Task[Any]], seconds: float) -> None:
    """Cancel the background tasks and wait for them, at most ``seconds``: a task that does not
    stop is logged with where it hangs, and shutdown goes on without it."""
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task failed", task=task.get_name(), exc_info=task.exception())
    for task in pending:
        where = [f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack()]
        logger.error("background task did not stop", task=task.get_name(), stack=where)


def create_app(settings: Settings | None = None) -> Starlette:
    """The trendmap application; settings come from the environment when not given."""
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level)
    credentials_for(settings)  # an unusable JWT configuration fails here, not on a request
    metrics = Metrics() if settings.metrics_enabled else None
    admission = Admission(
        max_inflight=settings.max_inflight_requests, queue_seconds=settings.admission_queue_seconds
    )
    if metrics is not None:
        metrics.admission = admission

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_state(settings) as state:
            background = [
                asyncio.create_task(state.publisher.run(), name="publisher"),
                asyncio.create_task(state.broadcaster.run(), name="broadcaster"),
                asyncio.create_task(
                    state.cache.listen(settings.cache_local_seconds), name="cache-invalidations"
                ),
            ]
            scheduler = state.feeds.scheduler if settings.poller_enabled else None
            if scheduler is not None:
                background.append(asyncio.create_task(scheduler.run(), name="poller"))
            logger.info(
                "started",
                database=state.engine.url.render_as_string(hide_password=True),
                store=state.store.kind,
                cache=state.cache.status(),
            )
            # What exists now (modules, the schema, the engine: most of the heap) stays for the
            # process's life. Frozen, it is left out of the collector's full passes, which
            # otherwise walk all of it and stall every request for 100 ms or more.
            gc.freeze()
            if metrics is not None:
                metrics.state = state
                poller = state.feeds.poller
                if poller is not None:
                    feeds = poller.feeds
                    metrics.breakers = lambda: [
                        (f.source.name, f.country, f.breaker) for f in feeds
                    ]
            try:
                yield {"trendmap": state}
            finally:
                gc.unfreeze()
                if metrics is not None:
                    metrics.state = metrics.breakers = None
                state.broadcaster.close()
                await _stop(background, settings.shutdown_timeout_seconds)

    graphql = GraphQLApp(
        make_schema(settings),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        # GraphiQL goes with introspection: without it the IDE could not work anyway.
        graphql_ide="graphiql" if settings.graphql_introspection else None,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
    )
    routes = [
        *rest.routes,
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
    ]
    paths = [route.path for route in routes if isinstance(route, Route)]
    return Starlette(
        routes=routes,
        middleware=[
            # Outermost: times everything below (refusals too) and serves /metrics unlimited.
            *(
                [Middleware(MetricsMiddleware, metrics=metrics, paths=paths)]
                if metrics is not None
                else []
            ),
            Middleware(RequestLogMiddleware),
            # CORS outside the limiters, so a browser can read their 429s, 413s and 503s too.
            *_cors(settings),
            # Before the rate limiter: a refusal for load must cost no store round trip.
            Middleware(AdmissionMiddleware, admission=admission),
            Middleware(RateLimitMiddleware, limiter=RateLimiter()),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
            Middleware(
                WebSocketLimitsMiddleware,
                max_connections=settings.ws_max_connections,
                max_bytes=settings.ws_max_message_bytes,
            ),
        ],
        exception_handlers={TrendmapError: rest.domain_error, HTTPException: rest.http_error},
        lifespan=lifespan,
    )


def _cors(settings: Settings) -> list[Middleware]:
    """CORS for the configured origins only; none configured, no CORS headers at all."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy"],
            max_age=600,
        )
    ]
