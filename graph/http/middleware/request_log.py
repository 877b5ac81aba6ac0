"""RequestLogMiddleware: each request's id in and out, one log line per request, and a 500 in
the error format for any exception that escapes the app (the stack trace goes to the log)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import TrendmapError
from graph.http.errors import report_unexpected, send_error
from graph.observability.log import level_enabled, log_fields, logger, new_request_id

REQUEST_ID_HEADER = "x-request-id"
# A client's id is echoed and logged: only a short, plain one is taken, else ours is drawn.
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestLogMiddleware:
    """Request id in, request id out, one log line per request, 500s in the error format."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_for(_header(scope, REQUEST_ID_HEADER))
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
                message["headers"] = _with_request_id(message.get("headers", ()), request_id)
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
            if info_enabled():
                log_request(scope, request_id, status, started, fields)


def request_id_for(given: str | None) -> str:
    """The client's ``X-Request-ID`` when it is short and plain, else a new one."""
    return given if given and _SANE_REQUEST_ID.match(given) else new_request_id()


def log_request(
    scope: Scope, request_id: str, status: int, started: float, fields: dict[str, Any]
) -> None:
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


def info_enabled() -> bool:
    """Whether an INFO line would be written. The logger binds itself on every call, even to
    a level that is filtered out; asking the configured level first skips that (a sizeable
    part of a cached answer at LOG_LEVEL=WARNING)."""
    return level_enabled(logging.INFO)


def _with_request_id(
    headers: Iterable[tuple[bytes, bytes]], request_id: str
) -> list[tuple[bytes, bytes]]:
    """The headers with ``X-Request-ID`` set to ours (in place of one the app sent)."""
    value = request_id.encode("latin-1")
    return [*(h for h in headers if h[0].lower() != _REQUEST_ID_BYTES), (_REQUEST_ID_BYTES, value)]


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None
