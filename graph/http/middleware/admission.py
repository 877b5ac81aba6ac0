"""Admission control: Admission (this worker's MAX_INFLIGHT_REQUESTS slots and its short
queue) and AdmissionMiddleware (the excess gets a fast 503 "overloaded" with Retry-After).
The health checks and /metrics are never refused; WebSockets are bounded elsewhere.
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from graph.core.errors import Overloaded
from graph.http.errors import send_error

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

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (never waits, refuses nothing)."""
        if self.inflight < self.max_inflight:
            self.inflight += 1
            return True
        return False

    async def acquire(self) -> bool:
        """Take a slot, waiting up to ``queue_seconds`` for one; False when none came."""
        if self.try_acquire():
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
            detail = f"the server is at capacity; retry in {RETRY_AFTER_SECONDS} s"
            await send_error(scope, send, Overloaded(detail, retry_after=RETRY_AFTER_SECONDS))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.release()


def _settle(slot: asyncio.Future[bool], admitted: bool) -> None:
    if not slot.done():
        slot.set_result(admitted)
