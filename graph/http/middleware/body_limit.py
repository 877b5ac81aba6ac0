"""BodyLimitMiddleware: a request body over MAX_BODY_BYTES is refused with 413 before the app
reads it whole."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import PayloadTooLarge
from graph.http.errors import send_error


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
            # The body is never read: the connection cannot be reused for another request.
            await send_error(scope, send, self._error(), [(b"connection", b"close")])
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised into the endpoint reading the body: the app's handler answers it.
                    raise self._error()
            return message

        await self.app(scope, counted, send)

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the body is larger than MAX_BODY_BYTES ({self.max_bytes} bytes)")
