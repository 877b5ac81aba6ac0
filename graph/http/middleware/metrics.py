"""MetricsMiddleware: times every HTTP request into Metrics' histogram and answers
``/metrics`` itself."""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import MethodNotAllowed
from graph.http.errors import send_error
from graph.observability.metrics import OPERATION_KEY, Metrics

METRICS_PATH = "/metrics"


class MetricsMiddleware:
    """Times every HTTP request, and answers ``GET /metrics`` itself.

    Outermost, so the time includes every middleware (rate limits, admission) and their
    refusals are counted too; and so ``/metrics`` is never rate-limited or refused for load
    (a scraper that gets 503s when the service is busiest would see nothing when it matters).
    A request refused before routing is labelled with its path when that is one of ``paths``
    (the app's route templates: ours have no parameters), else ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, paths: Iterable[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH:
            await self._scrape(scope, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", None)
            if path is None and scope["path"] in self.paths:
                path = scope["path"]
            if path is None:
                route_label, operation = "unmatched", scope["method"]
            else:
                route_label = path
                state = scope.get("state") or {}
                operation = state.get(OPERATION_KEY) or (
                    "not executed" if path == "/graphql" else scope["method"]
                )
            self.metrics.observe(route_label, operation, status, time.perf_counter() - started)

    async def _scrape(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            refusal = MethodNotAllowed(f"{METRICS_PATH} answers GET and HEAD only")
            await send_error(scope, send, refusal, [(b"allow", b"GET, HEAD")])
            return
        accept = None
        for key, value in scope["headers"]:
            if key == b"accept":
                accept = value.decode("latin-1")
        body, content_type = self.metrics.exposition(accept)
        if scope["method"] == "HEAD":
            body = b""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
