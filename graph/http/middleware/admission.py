"""Admission control: a worker serves at most MAX_INFLIGHT_REQUESTS HTTP requests at once.

Past saturation, more concurrent requests do not make more answers, only longer queues: every
request waits behind all the others until clients time out, and the worker serves requests
whose clients have already gone. So a worker admits a bounded number of requests; a request
over the bound waits up to ADMISSION_QUEUE_SECONDS for a slot (absorbing a short burst, first
come first served, at most as many waiting as may be in flight) and is otherwise answered at
once with 503 and ``Retry-After``, in the error format. A fast refusal is cheap, and a client
can retry it elsewhere or later; a timeout costs both sides the whole wait.

The health checks and ``/metrics`` are never refused: an orchestrator or a scraper must see a
busy worker as alive. WebSockets are not counted here: a subscription holds its connection for
hours, and WS_MAX_CONNECTIONS bounds those.
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from graph.observability.log import error_document, request_id_of

EXEMPT_PATHS = frozenset({"/health", "/health/ready", "/metrics"})
RETRY_AFTER_SECONDS = 1


class Admission:
    """This worker's slots: how many requests are in flight, waiting, and were refused."""

    def __init__(self, *, max_inflight: int, queue_seconds: float) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, not {max_inflight}")
        self.max_inflight = max_inflight
        self.queue_seconds = queue_seconds
        self.inflight = 0
        self.queued = 0
        self.rejected = 0
        # Waiters in arrival order; a freed slot goes to the first one still waiting.
        self._waiting: deque[asyncio.Future[bool]] = deque()

    async def acquire(self) -> bool:
        """Take a slot, waiting up to ``queue_seconds`` for one; False when none came."""
        if self.inflight < self.max_inflight:
            self.inflight += 1
            return True
        if await self._wait():
            return True
        self.rejected += 1
        return False

    async def _wait(self) -> bool:
        if self.queue_seconds <= 0 or self.queued >= self.max_inflight:
            return False
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(slot)
        self.queued += 1
        expiry = loop.call_later(self.queue_seconds, _settle, slot, False)
        try:
            return await slot
        except asyncio.CancelledError:
            # The client went away. A slot handed over just before must not be lost.
            if slot.done() and not slot.cancelled() and slot.result():
                self.release()
            raise
        finally:
            expiry.cancel()
            self.queued -= 1

    def release(self) -> None:
        """Hand the slot to the first request still waiting, or free it."""
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(True)
                return
        self.inflight -= 1


class AdmissionMiddleware:
    """Bounds the HTTP requests in flight in this worker; the excess gets a fast 503."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if not await self.admission.acquire():
            await _refuse(scope, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.release()


def _settle(slot: asyncio.Future[bool], admitted: bool) -> None:
    if not slot.done():
        slot.set_result(admitted)


async def _refuse(scope: Scope, send: Send) -> None:
    body = error_document(
        "overloaded",
        f"the server is at capacity; retry in {RETRY_AFTER_SECONDS} s",
        request_id_of(scope),
    )
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
