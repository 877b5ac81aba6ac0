"""Request limits enforced before the app sees the request: body size, WebSocket connections
per worker and WebSocket message size."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import PayloadTooLarge
from graph.observability.log import error_document, request_id_of


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: by Content-Length at once, or while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"the body is larger than MAX_BODY_BYTES ({self.max_bytes} bytes)"

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = error_document("payload_too_large", self._detail(), request_id_of(scope))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


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
            await self._refuse(scope, send)
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

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"this worker holds its maximum of {self.max_connections} WebSocket connections"
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5")],
                }
            )
            body = error_document("too_many_connections", detail, request_id_of(scope))
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})
