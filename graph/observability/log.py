"""Structured JSON logs: their configuration, the ``trendmap`` logger, request ids and each
request's extra log fields (graph.http.middleware.request_log writes the line)."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
import structlog
from starlette.types import Scope

logger = structlog.get_logger("trendmap")

# The level configure_logging last set (structlog's default, before it runs, writes every
# level). Read on every request: structlog.get_config() builds a dict each time it is asked.
_level = [logging.NOTSET]


def level_enabled(level: int) -> bool:
    """Whether a line at ``level`` would be written."""
    return level >= _level[0]


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


# Libraries that log through the stdlib on their own (Strawberry: a failed WebSocket task, a
# refused origin; uvicorn: starting, stopping, WebSockets opened and closed). Their records
# become our JSON lines, a traceback inside the line.
_LIBRARY_LOGGERS = ("strawberry", "uvicorn")


class _ToStructlog(logging.Handler):
    """A stdlib record as one of our JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name, exc_info=record.exc_info
            )
        except Exception:  # noqa: BLE001 - a handler must never raise
            self.handleError(record)


def _bridge_libraries(level: int) -> None:
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for handler in [h for h in library.handlers if isinstance(h, _ToStructlog)]:
            library.removeHandler(handler)
        library.addHandler(_ToStructlog())
        library.setLevel(level)
        library.propagate = False  # one line, not one more from a root handler


# Set by graph.observability.tracing while tracing is on: the current (trace id, span id).
trace_ids: Callable[[], tuple[str, str] | None] | None = None


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The current trace and span ids beside the request id, while tracing is on."""
    if trace_ids is not None and (ids := trace_ids()) is not None:
        event["trace_id"], event["span_id"] = ids
    return event


def configure_logging(level: str = "INFO", *, stderr: bool = False) -> None:
    """JSON lines on stdout (stderr for commands whose stdout is their report), through
    structlog, for us and the libraries we use."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    _bridge_libraries(numeric)
    _level[0] = numeric
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_trace_ids,
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


def request_id_of(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    rid = state.get("request_id")
    return rid if isinstance(rid, str) else None


def log_fields(scope: Scope) -> dict[str, Any]:
    """The request's extra log fields; handlers add to it (cache_hit, flow_count, ...)."""
    state = scope.setdefault("state", {})
    fields: dict[str, Any] = state.setdefault("log", {})
    return fields
