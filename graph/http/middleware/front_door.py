"""FrontDoor: a repeated cacheable request (a REST read, a kept GraphQL operation) whose
prebuilt answer is current is answered here, in one step, before any other layer runs.

Such a request is most of a busy map's traffic, and every layer below (metrics, request log,
admission, rate limits, fast path) would each cost it a coroutine, a ``send`` wrapper and a
pass over its headers: more, together, than the answer itself. The front door does what each
of them would do for it, with their own objects and functions, in one pass over the headers:

- admission: a slot taken if one is free now, given back after;
- rate limits: the read spent from units this worker already holds, with the ``RateLimit``
  headers;
- the fast path's rules (graph.http.middleware.fast_path): the answer is current, meets any
  ``X-Trendmap-Min-Generation``, was built under the feeds' health of now; an
  ``If-None-Match`` naming its ETag gets the 304;
- the request log: the request id in and out, the log line with the route's fields;
- metrics: the request timed under its route.

Whenever one of them would have to wait, ask a store or refuse (no slot free, units to
reserve or a budget spent, the generation to read, a CORS request), the request goes down
the usual way, untouched, and the layers below decide as ever.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from graph.http.middleware.admission import Admission
from graph.http.middleware.fast_path import (
    MIN_GENERATION,
    applies,
    asks_no_newer,
    current_now,
    key_of,
    names,
    note_hit,
    request_of,
)
from graph.http.middleware.request_log import (
    info_enabled,
    log_request,
    request_id_for,
)
from graph.http.prebuilt import Prebuilt, PrebuiltResponses
from graph.http.ratelimit.cost import ONE_READ
from graph.http.ratelimit.limiter import RateLimiter, client_for
from graph.http.ratelimit.usage import Usage, ratelimit_headers
from graph.observability.metrics import Metrics
from graph.service.trend_service import partial_data_warnings
from graph.wiring import AppState


class FrontDoor:
    """Answer a request whose prebuilt answer is current at once; pass the others on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        responses: PrebuiltResponses,
        admission: Admission,
        limiter: RateLimiter,
        metrics: Metrics | None,
    ) -> None:
        self.app = app
        self.responses = responses
        self.admission = admission
        self.limiter = limiter
        self.metrics = metrics
        # Requests answered here (the layers below count them as prebuilt answers too).
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = (scope.get("state") or {}).get("trendmap")
            if isinstance(state, AppState) and applies(state):
                timeout = state.settings.http_body_timeout_seconds
                request, _, receive = await request_of(scope, receive, timeout)
                found = self._ready(scope, state, request) if request is not None else None
                if found is not None:
                    await self._answer(scope, send, state, *found)
                    return
        await self.app(scope, receive, send)

    def _ready(
        self, scope: Scope, state: AppState, request: bytes
    ) -> tuple[Prebuilt, str | None, str | None, list[Usage] | None] | None:
        """The prebuilt answer, the client's request id, its If-None-Match and the rate-limit
        usage spent for it, a slot taken; None (nothing taken) when the request must go the
        usual way."""
        authorization = given = if_none_match = None
        tokens: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = authorization or value.decode("latin-1")
            elif name == b"x-request-id":
                given = given or value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = if_none_match or value.decode("latin-1")
            elif name == MIN_GENERATION:
                tokens.append(value)
            elif name == b"origin" and state.settings.cors_origins:
                return None  # CORS adds its headers below
        key = key_of(scope["path"], request, authorization, state)
        prebuilt = self.responses.get(key) if key is not None else None
        if (
            prebuilt is None
            or current_now(state, prebuilt) is not True
            or not asks_no_newer(tokens, prebuilt)
        ):
            return None
        failing = state.feeds.board.failing_now()
        if failing is None or (
            (failing or prebuilt.failing) and partial_data_warnings(failing) != prebuilt.failing
        ):
            return None
        if not self.admission.try_acquire():
            return None
        usages = None
        settings = state.settings
        if settings.rate_limit_enabled:
            client = client_for(authorization, scope, settings)
            usages = self.limiter.spend_now(state.store, settings, client, ONE_READ)
            if usages is None:
                self.admission.release()
                return None
        return prebuilt, given, if_none_match, usages

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        state: AppState,
        prebuilt: Prebuilt,
        given: str | None,
        if_none_match: str | None,
        usages: list[Usage] | None,
    ) -> None:
        started = time.perf_counter()
        self.answered += 1
        request_id = request_id_for(given)
        scope.setdefault("state", {})["request_id"] = request_id
        note_hit(scope, state, self.responses, prebuilt)
        status, headers, body = prebuilt.response(request_id, names(if_none_match, prebuilt.etag))
        if usages is not None:
            headers.extend(ratelimit_headers(usages))
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.admission.release()
            if self.metrics is not None:
                operation = prebuilt.mark.operation or scope["method"]
                elapsed = time.perf_counter() - started
                self.metrics.observe(scope["path"], operation, status, elapsed)
            if info_enabled():
                log_request(scope, request_id, status, started, scope["state"]["log"])
