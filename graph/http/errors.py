"""Every refusal on the wire: the error document, the status → code table for the frameworks'
own refusals, and the one writer for Starlette handlers and raw ASGI (HTTP and WebSocket);
and the report of what no refusal covers (a bug, answered with a 500).

A refusal is a domain error (graph.core.errors): it carries its status and code, and this
module adds the headers that go with them (``Retry-After``, ``WWW-Authenticate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from graph.core.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    TrendmapError,
)
from graph.observability.log import request_id_of
from graph.observability.sentry import report_exception


class RequestTimeout(TrendmapError):
    """The request's headers or body did not arrive in time (HTTP_HEADER_TIMEOUT_SECONDS,
    HTTP_BODY_TIMEOUT_SECONDS): the connection is closed after the answer."""

    status = 408
    code = "request_timeout"


# The statuses Starlette's router and Strawberry's view refuse with, as our errors.
_BY_STATUS: dict[int, type[TrendmapError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    413: PayloadTooLarge,
}
# A WebSocket refused before its handshake where the server cannot send an HTTP response.
_WEBSOCKET_CLOSE = {429: (1008, "rate limited"), 503: (1013, "try again later")}


class HTTPError(TrendmapError):
    """A framework refusal whose status no domain error has."""

    code = "http_error"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def error_for_status(status: int, detail: str) -> TrendmapError:
    """A framework's refusal (an HTTP status and its reason) as the domain error of its status."""
    kind = _BY_STATUS.get(status)
    return kind(detail) if kind is not None else HTTPError(status, detail)


def error_document(code: str, detail: str, request_id: str | None, **extra: Any) -> bytes:
    """The body of every error response: ``{error, detail, request_id, timestamp, ...}``."""
    return orjson.dumps(
        {
            "error": code,
            "detail": detail,
            "request_id": request_id,
            "timestamp": datetime.now(UTC).isoformat(),
            **extra,
        }
    )


def _headers(exc: TrendmapError) -> dict[str, str]:
    headers = {}
    if isinstance(exc, RateLimited | Overloaded):
        headers["retry-after"] = str(exc.retry_after)
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    if isinstance(exc, RequestTimeout | PayloadTooLarge):
        # The rest of the body may still be on its way: no reading it as the next request.
        headers["connection"] = "close"
    return headers


def _body(exc: TrendmapError, request_id: str | None) -> bytes:
    return error_document(exc.code, exc.detail, request_id, **exc.extra())


def error_response(
    exc: TrendmapError, request_id: str | None, headers: Mapping[str, str] | None = None
) -> Response:
    """The error as a Starlette response, with the headers its kind calls for."""
    return Response(
        _body(exc, request_id),
        status_code=exc.status,
        media_type="application/json",
        headers=_headers(exc) | dict(headers or {}),
    )


async def send_error(
    scope: Scope, send: Send, exc: TrendmapError, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Write the error from raw ASGI middleware. A WebSocket must not be accepted yet: it gets
    the HTTP response where the server supports that, else a close code (1013 or 1008)."""
    if scope["type"] == "http":
        prefix = "http.response"
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        prefix = "websocket.http.response"
    else:
        code, reason = _WEBSOCKET_CLOSE.get(exc.status, (1008, exc.code))
        await send({"type": "websocket.close", "code": code, "reason": reason})
        return
    body = _body(exc, request_id_of(scope))
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in _headers(exc).items()),
        *headers,
    ]
    await send({"type": f"{prefix}.start", "status": exc.status, "headers": raw})
    await send({"type": f"{prefix}.body", "body": body})


def error_bytes(
    exc: TrendmapError, request_id: str | None, headers: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """The error as a whole HTTP/1.1 response that closes its connection, for the protocol
    layer (graph.http.protocol), where a request never reached the application."""
    body = _body(exc, request_id)
    closing = _headers(exc) | {"connection": "close"}
    lines = [
        f"HTTP/1.1 {exc.status} {HTTPStatus(exc.status).phrase}".encode(),
        *(name + b": " + value for name, value in headers),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        *(f"{name}: {value}".encode() for name, value in closing.items()),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def report_unexpected(scope: Scope, exc: BaseException) -> None:
    """An exception that escaped a request (answered with a 500) is a bug: to Sentry, tagged
    with the request id and the route template (the path when no route matched)."""
    route = getattr(scope.get("route"), "path", None) or scope.get("path")
    report_exception(exc, request_id=request_id_of(scope), route=route)


async def domain_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for a domain error raised by an endpoint (or a body it reads)."""
    assert isinstance(exc, TrendmapError)
    return error_response(exc, request_id_of(request.scope))


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for its own refusals: no such route, a method the route lacks."""
    assert isinstance(exc, HTTPException)
    error = error_for_status(exc.status_code, str(exc.detail))
    return error_response(error, request_id_of(request.scope), exc.headers)


EXCEPTION_HANDLERS = {TrendmapError: domain_error, HTTPException: http_error}
