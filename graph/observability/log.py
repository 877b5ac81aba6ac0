"""Structured JSON logs, and the middleware that writes one line per request.

The middleware also gives each request its id (``X-Request-ID`` when the client sends a sane
one), echoes it, and turns any exception that escapes the app into a 500 in the error format:
the stack trace goes to the log, never to the client.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

logger = structlog.get_logger("trendmap")


class _RequestIds:
    """Request ids unique across processes without a random draw per request (uuid4 reads
    the kernel's random source each time: about 5% of a cached read). 32 hex digits: 20 drawn
    once per process (again after a fork), then a counter."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(10)
        self.counter = itertools.count()

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


new_request_id = _RequestIds().new


def _to_stderr(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "INFO", *, stderr: bool = False) -> None:
    """JSON lines on stdout (stderr for commands whose stdout is their report), through
    structlog, for us and the libraries we use."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # No stream bound: each logger writes to sys.stdout (or sys.stderr) as it is when it
        # logs, so a stream swapped since (a test capturing output) is never written closed.
        logger_factory=_to_stderr if stderr else structlog.PrintLoggerFactory(),
        # Not cached, so a reconfiguration (log level, tests capturing logs) reaches every logger.
        cache_logger_on_first_use=False,
    )


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


def request_id_of(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    rid = state.get("request_id")
    return rid if isinstance(rid, str) else None


def log_fields(scope: Scope) -> dict[str, Any]:
    """The request's extra log fields; handlers add to it (cache_hit, flow_count, ...)."""
    state = scope.setdefault("state", {})
    fields: dict[str, Any] = state.setdefault("log", {})
    return fields


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
        except Exception:
            logger.exception("unhandled error", request_id=request_id, path=scope.get("path"))
            if scope["type"] == "http" and not response_started:
                body = error_document(
                    "internal_error", "an unexpected error occurred; it has been logged", request_id
                )
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
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
