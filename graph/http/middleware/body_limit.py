"""BodyLimitMiddleware: a request body over MAX_BODY_BYTES is refused with 413 before the app
reads it whole, and one that has not arrived within HTTP_BODY_TIMEOUT_SECONDS of the request's
headers with 408."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.core.errors import PayloadTooLarge
from graph.http.body import body_deadline, receive_by
from graph.http.errors import RequestTimeout, send_error


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: by Content-Length at once, or while it streams in
    (a chunk that declares more than it sends is counted by what it sends). 408 for a body
    not complete ``timeout_seconds`` after the headers, whatever it declared."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_seconds: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # The body is never read: the answer closes the connection (graph.http.errors).
            await send_error(scope, send, self._too_large())
            return
        if (declared is None or declared == b"0") and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body to wait for
            return
        deadline = body_deadline(scope, self.timeout_seconds)
        seen = 0
        complete = False

        async def counted() -> Message:
            nonlocal seen, complete
            if complete:  # only the disconnect is left to wait for: no deadline on that
                return await receive()
            try:
                message = await receive_by(receive, deadline)
            except TimeoutError:
                # Raised into the endpoint reading the body: the app's handler answers it, and
                # closes the connection (the rest of the body may still be on its way).
                raise self._timed_out() from None
            if message["type"] != "http.request":
                complete = True
                return message
            complete = not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the body is larger than MAX_BODY_BYTES ({self.max_bytes} bytes)")

    def _timed_out(self) -> RequestTimeout:
        return RequestTimeout(
            f"the body did not arrive within HTTP_BODY_TIMEOUT_SECONDS ({self.timeout_seconds:g} s)"
        )
