"""The ASGI application: ``create_app(settings)`` puts the routes, the middleware (in order)
and the lifespan together."""

from __future__ import annotations

from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route, WebSocketRoute
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from graph.auth import credentials_for
from graph.graphql.schema import make_schema
from graph.graphql.transport import GraphQLApp
from graph.http import exploring, graphiql, health, rest, web
from graph.http.errors import EXCEPTION_HANDLERS
from graph.http.lifespan import make_lifespan
from graph.http.middleware.admission import Admission, AdmissionMiddleware
from graph.http.middleware.body_limit import BodyLimitMiddleware
from graph.http.middleware.fast_path import FastPathMiddleware
from graph.http.middleware.front_door import FrontDoor
from graph.http.middleware.metrics import MetricsMiddleware
from graph.http.middleware.ratelimit import RateLimitMiddleware
from graph.http.middleware.request_log import RequestLogMiddleware
from graph.http.middleware.websocket_limits import WebSocketLimitsMiddleware
from graph.http.openapi import openapi_route
from graph.http.prebuilt import PrebuiltResponses
from graph.http.ratelimit.limiter import RateLimiter
from graph.observability.log import configure_logging
from graph.observability.metrics import Metrics
from graph.observability.sentry import setup_sentry
from graph.observability.tracing import asgi_middleware, setup_tracing
from graph.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    """The trendmap application; settings come from the environment when not given."""
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level)
    setup_sentry(settings)
    setup_tracing(settings)
    credentials_for(settings)  # an unusable JWT configuration fails here, not on a request
    admission = Admission(
        max_inflight=settings.max_inflight_requests, queue_seconds=settings.admission_queue_seconds
    )
    metrics = Metrics(admission=admission) if settings.metrics_enabled else None
    limiter = RateLimiter()
    responses = PrebuiltResponses(
        max_entries=settings.fast_path_max_entries, max_bytes=settings.fast_path_max_bytes
    )
    routes = _routes(settings)
    paths = [route.path for route in routes if isinstance(route, Route)]
    return Starlette(
        routes=routes,
        middleware=[
            # With tracing on, its span holds every other layer (and the request's log line).
            *asgi_middleware(),
            # A request answered from a current prebuilt answer, limited, logged and timed in
            # one step; every other request goes through the layers below.
            Middleware(
                FrontDoor,
                responses=responses,
                admission=admission,
                limiter=limiter,
                metrics=metrics,
            ),
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
            Middleware(RateLimitMiddleware, limiter=limiter),
            # Inside the limits and the request log: a prebuilt answer is limited and logged too.
            Middleware(FastPathMiddleware, responses=responses),
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.max_body_bytes,
                timeout_seconds=settings.http_body_timeout_seconds,
            ),
            Middleware(
                WebSocketLimitsMiddleware,
                max_connections=settings.ws_max_connections,
                max_bytes=settings.ws_max_message_bytes,
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=make_lifespan(settings, metrics),
    )


def _routes(settings: Settings) -> list[BaseRoute]:
    graphql = GraphQLApp(
        make_schema(settings),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        # GraphiQL goes with introspection: without it the IDE could not work anyway.
        graphql_ide="graphiql" if settings.graphql_introspection else None,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
    )
    return [
        Route("/", web.map_page, methods=["GET"]),
        *rest.routes,
        *exploring.routes,
        *health.routes,
        openapi_route(settings),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        *(graphiql.routes if settings.graphql_introspection else []),
        WebSocketRoute("/graphql", graphql),
    ]


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
