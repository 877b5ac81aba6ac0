"""InitDeadline: a WebSocket that has not sent ``connection_init`` within WS_INIT_TIMEOUT_SECONDS
of its acceptance is closed with 4408, on time however many sockets open at once.

Strawberry starts a task at acceptance that sleeps for the timeout, then closes. Under a burst of
handshakes a new task first runs only after everything queued before it, so its sleep began up
to seconds late, and thousands of sleeping tasks were held meanwhile (3,000 sockets: closed
after 5-9 s instead of 5). The deadline here is a timer on the event loop, set at acceptance
itself; only an expired socket gets a task, the one that sends its close.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from strawberry.http.async_base_view import AsyncWebSocketAdapter

CLOSE_CODE = 4408
CLOSE_REASON = "Connection initialisation timeout"


class InitDeadline:
    """The deadline of one socket's ``connection_init``; ``cancel`` it when the message comes
    and when the socket ends."""

    def __init__(self, websocket: AsyncWebSocketAdapter, seconds: float) -> None:
        self.websocket = websocket
        self.expired = False
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)
        self._closing: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        # The peer may have gone in the meantime: then there is nothing left to close.
        with suppress(Exception):
            await self.websocket.close(CLOSE_CODE, CLOSE_REASON)
