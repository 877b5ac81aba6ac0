"""RateLimitMiddleware: spends each request's cost before the app sees it, refuses it with
429 "rate_limited" (and Retry-After) over a budget, and adds RateLimit headers to the rest."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import RateLimited
from graph.http.body import peek_body
from graph.http.errors import send_error
from graph.http.ratelimit.cost import Cost, request_cost
from graph.http.ratelimit.limiter import RateLimiter, client_of
from graph.http.ratelimit.usage import WRITES, Usage, ratelimit_headers
from graph.observability.log import log_fields
from graph.wiring import AppState

UNCOUNTED_PATHS = frozenset({"/health", "/health/ready", "/openapi.json"})


class RateLimitMiddleware:
    """Spend each request's cost before the app sees it; refuse it over a budget."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter if limiter is not None else RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Built before the lifespan runs: the settings and store are the request's, not ours.
        state = (scope.get("state") or {}).get("trendmap")
        if (
            scope["type"] not in ("http", "websocket")
            or not isinstance(state, AppState)
            or not state.settings.rate_limit_enabled
            or scope["path"] in UNCOUNTED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        settings = state.settings
        if scope["type"] == "websocket":
            cost = Cost(reads=1)
        else:
            body = None
            if scope["method"] == "POST" and scope["path"] == "/graphql":
                body, receive = await peek_body(
                    scope, receive, settings.max_body_bytes, settings.http_body_timeout_seconds
                )
            cost = request_cost(scope["method"], scope["path"], scope["query_string"], body)
        usages = await self.limiter.spend(state.store, settings, client_of(scope, settings), cost)
        headers = ratelimit_headers(usages)
        exceeded = [usage for usage in usages if usage.exceeded]
        if exceeded:
            await self._refuse(scope, receive, send, exceeded, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        exceeded: list[Usage],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        retry = max(usage.reset for usage in exceeded)
        over = exceeded[0]
        units = "writes" if over.policy == WRITES else "requests"
        detail = (
            f"this client is over its budget of {over.quota} {units} a minute;"
            f" retry after {retry} s"
        )
        log_fields(scope)["rate_limited"] = ",".join(usage.policy for usage in exceeded)
        if scope["type"] == "websocket":
            # Refused before the handshake completes; without the HTTP response extension the
            # server turns the close into an HTTP 403.
            await receive()  # websocket.connect
        await send_error(scope, send, RateLimited(detail, retry_after=retry), headers)
