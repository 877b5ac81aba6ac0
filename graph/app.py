"""The ASGI application: ``create_app(settings)`` builds it; the lifespan opens its resources."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from cross_web import HTTPException as GraphQLHTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from graph import rest
from graph.errors import TrendmapError
from graph.limits import BodyLimitMiddleware
from graph.log import (
    RequestLogMiddleware,
    configure_logging,
    error_document,
    logger,
    request_id_of,
)
from graph.schema import Context, context_for, make_schema
from graph.settings import Settings
from graph.state import open_state

_GRAPHQL_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry over Starlette, with our context on HTTP and WebSocket alike."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return context_for(request)

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
        return orjson.dumps(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        # Bodies, socket messages and `variables` are objects (arrays for batches); a bare
        # scalar would crash Strawberry further in, so it is refused here as unreadable.
        decoded = orjson.loads(data)
        if not isinstance(decoded, dict | list):
            text = data if isinstance(data, str) else data.decode(errors="replace")
            raise json.JSONDecodeError("expected a JSON object", text, 0)
        return decoded


def create_app(settings: Settings | None = None) -> Starlette:
    """The trendmap application; settings come from the environment when not given."""
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_state(settings) as state, asyncio.TaskGroup() as tasks:
            publishing = tasks.create_task(state.publisher.run(), name="publisher")
            listening = tasks.create_task(state.broadcaster.run(), name="broadcaster")
            logger.info(
                "started",
                database=state.engine.url.render_as_string(hide_password=True),
                store=state.store.kind,
                cache=state.cache.status(),
            )
            try:
                yield {"trendmap": state}
            finally:
                state.broadcaster.close()
                publishing.cancel()
                listening.cancel()

    graphql = GraphQLApp(
        make_schema(),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
    )
    return Starlette(
        routes=[
            *rest.routes,
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
        ],
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers={TrendmapError: rest.domain_error, HTTPException: rest.http_error},
        lifespan=lifespan,
    )
