"""ConnectionLimits and TrendmapHTTPProtocol: uvicorn's HTTP/1.1 protocol (httptools) with the
two bounds uvicorn lacks, per worker.

- Header timeout: a request's headers must be complete within ``header_timeout`` of the
  connection opening or of the previous response ending. Past it, a connection in the middle
  of its headers (slowloris) is answered 408 and closed; one that sent nothing, or only the
  unread rest of an earlier body, is closed.
- Connection cap: a connection that opens while the worker holds more than ``max_connections``
  (WebSockets included) has its requests refused with a 503 ``too_many_connections`` and is
  closed, unless a place has come free by then. The health checks and /metrics are never
  refused, as in admission control.

Once a burst of connections has closed, their memory goes back to the system
(graph.http.reclaimer). The body's own deadline is the application's
(graph.http.middleware.body_limit). uvicorn's ``limit_concurrency`` is not used: it counts
tasks as well as connections, refuses the connection that reaches the limit rather than the
one past it, and answers in plain text.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from dataclasses import dataclass
from typing import Any, cast

import httptools
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from graph.core.errors import TooManyConnections
from graph.http.errors import RequestTimeout, error_bytes, send_error
from graph.http.middleware.admission import EXEMPT_PATHS
from graph.http.reclaimer import Reclaimer
from graph.observability.log import logger, new_request_id
from graph.settings import Settings

RETRY_AFTER_SECONDS = 1
# One per server (per worker): it watches the server's connections, WebSockets included.
_RECLAIMERS: weakref.WeakKeyDictionary[ServerState, Reclaimer] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds on one worker's connections."""

    header_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.http_header_timeout_seconds, settings.max_connections)

    def protocol(self) -> type[asyncio.Protocol]:
        """What uvicorn's ``http`` option takes: the protocol bound to these limits. A partial,
        not a class made on the fly, so that it pickles into ``--workers`` processes; uvicorn
        only ever calls it."""
        return cast(type[asyncio.Protocol], functools.partial(TrendmapHTTPProtocol, limits=self))


class TrendmapHTTPProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with a header deadline and this worker's connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.header_deadline: asyncio.TimerHandle | None = None
        self.headers_pending = False  # a request has begun and its headers are not complete
        self.admitted = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.admitted = len(self.connections) <= self.limits.max_connections
        self._arm()
        reclaimer = _RECLAIMERS.get(self.server_state)
        if reclaimer is None:
            reclaimer = _RECLAIMERS[self.server_state] = Reclaimer(self.connections)
        reclaimer.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.headers_pending = True

    def on_headers_complete(self) -> None:
        self._disarm()
        self.headers_pending = False
        if not self._refused():
            super().on_headers_complete()
            return
        # uvicorn runs whatever app this attribute holds for the request: the refusal, once.
        app, self.app = self.app, self._refuse
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def handle_websocket_upgrade(self) -> None:
        if not self._refused():
            super().handle_websocket_upgrade()
            return
        refusal, request_id = self._too_many(), new_request_id()
        self.transport.write(error_bytes(refusal, request_id))
        self.transport.close()
        _log(request_id, "WS", self._path(), refusal, self.client)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app a request past the cap gets instead of ours: a 503, then the close."""
        refusal, request_id = self._too_many(), new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        await send_error(scope, send, refusal, [(b"connection", b"close")])
        _log(request_id, scope["method"], scope["path"], refusal, self.client)

    def on_response_complete(self) -> None:
        next_is_here = bool(self.pipeline)  # its headers are complete already
        super().on_response_complete()
        if not next_is_here and not self.transport.is_closing():
            self._arm()

    def _refused(self) -> bool:
        if self.admitted or len(self.connections) <= self.limits.max_connections:
            self.admitted = True  # a place came free: this connection has it from now on
            return False
        return self._path() not in EXEMPT_PATHS

    def _path(self) -> str:
        return str(httptools.parse_url(self.url).path.decode("latin-1"))

    def _too_many(self) -> TooManyConnections:
        return TooManyConnections(
            f"this worker holds its maximum of {self.limits.max_connections} connections",
            retry_after=RETRY_AFTER_SECONDS,
        )

    def _arm(self) -> None:
        self._disarm()
        self.header_deadline = self.loop.call_later(
            self.limits.header_timeout, self._headers_timed_out
        )

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_timed_out(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing():
            return
        if self.headers_pending:
            timeout = RequestTimeout(
                "the request headers did not arrive within HTTP_HEADER_TIMEOUT_SECONDS"
                f" ({self.limits.header_timeout:g} s)"
            )
            request_id = new_request_id()
            self.transport.write(error_bytes(timeout, request_id))
            _log(request_id, None, None, timeout, self.client)
        self.transport.close()


def _log(
    request_id: str,
    method: str | None,
    path: str | None,
    refusal: TooManyConnections | RequestTimeout,
    client: tuple[str, int] | None,
) -> None:
    """The request's one log line, as graph.http.middleware.request_log writes it."""
    logger.info(
        "request",
        request_id=request_id,
        method=method,
        path=path,
        status=refusal.status,
        error=refusal.code,
        client=f"{client[0]}:{client[1]}" if client else None,
    )
