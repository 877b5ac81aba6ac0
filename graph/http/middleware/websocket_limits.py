"""WebSocketLimitsMiddleware: at most WS_MAX_CONNECTIONS WebSockets in this worker, and
messages of at most WS_MAX_MESSAGE_BYTES."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import TooManyConnections
from graph.http.errors import send_error

RETRY_AFTER_SECONDS = 5


class WebSocketLimitsMiddleware:
    """At most ``max_connections`` WebSockets in this worker; messages of at most ``max_bytes``.

    A connection beyond the limit is refused before it is accepted (HTTP 503 with the error
    document where the server supports it, else close 1013 "try again later"); a message over
    the limit closes its socket with 1009 ("message too big").
    """

    def __init__(self, app: ASGIApp, max_connections: int, max_bytes: int) -> None:
        self.app = app
        self.max_connections = max_connections
        self.max_bytes = max_bytes
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_connections:
            await receive()  # websocket.connect
            detail = (
                f"this worker holds its maximum of {self.max_connections} WebSocket connections"
            )
            await send_error(
                scope, send, TooManyConnections(detail, retry_after=RETRY_AFTER_SECONDS)
            )
            return
        self.active += 1
        closed = False

        async def limited() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and self._too_big(message):
                closed = True
                await send({"type": "websocket.close", "code": 1009, "reason": "message too big"})
                return {"type": "websocket.disconnect", "code": 1009}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        finally:
            self.active -= 1

    def _too_big(self, message: Message) -> bool:
        text = message.get("text")
        if text is not None:
            # Characters are at most 4 bytes: only long texts need encoding to be measured.
            return len(text) * 4 > self.max_bytes and len(text.encode()) > self.max_bytes
        return len(message.get("bytes") or b"") > self.max_bytes
