"""RequestLogMiddleware: each request's id in and out, one log line per request, and a 500 in
the error format for any exception that escapes the app (the stack trace goes to the log)."""

from __future__ import annotations

import re
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import TrendmapError
from graph.http.errors import report_unexpected, send_error
from graph.observability.log import log_fields, logger, new_request_id

REQUEST_ID_HEADER = "x-request-id"
# A client's id is echoed and logged: only a short, plain one is taken, else ours is drawn.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestLogMiddleware:
    """Request id in, request id out, one log line per request, 500s in the error format."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and _SANE_REQUEST_ID.match(given) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        fields = log_fields(scope)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.exception("unhandled error", request_id=request_id, path=scope.get("path"))
            report_unexpected(scope, exc)
            if scope["type"] == "http" and not response_started:
                failure = TrendmapError("an unexpected error occurred; it has been logged")
                await send_error(scope, send_with_id, failure)
        finally:
            logger.info(
                "request",
                request_id=request_id,
                method=scope.get("method", "WS"),
                path=scope.get("path"),
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                cache_hit=fields.pop("cache_hit", False),
                **fields,
            )


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None
