"""Reading a request's body ahead of the app, and handing it on unread.

Every layer that reads a body early keeps to one deadline per request
(``HTTP_BODY_TIMEOUT_SECONDS`` from the first layer that waited for it, see
:func:`body_deadline`), so a body that never comes is answered 408 on time by
graph.http.middleware.body_limit, however many layers looked at it first.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope

_DEADLINE = "body_deadline"


def body_deadline(scope: Scope, timeout: float) -> float:
    """The loop time by which the request's body must have come: ``timeout`` from the first
    call for this request."""
    state = scope.setdefault("state", {})
    deadline = state.get(_DEADLINE)
    if not isinstance(deadline, float):
        deadline = state[_DEADLINE] = asyncio.get_running_loop().time() + timeout
    return deadline


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it sends one that is a number."""
    declared = dict(scope["headers"]).get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _replaying(read: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return read.pop(0) if read else await receive()

    return replay


async def peek_body(
    scope: Scope, receive: Receive, limit: int, timeout: float
) -> tuple[bytes | None, Receive]:
    """The body (None past ``limit`` bytes, on a disconnect, or when it has not come by the
    request's deadline), and a receive that gives the app every message read here first."""
    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        return None, receive
    read: list[Message] = []
    size = 0
    complete = False
    try:
        async with asyncio.timeout_at(body_deadline(scope, timeout)):
            while True:
                message = await receive()
                read.append(message)
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > limit:
                    break
                if not message.get("more_body", False):
                    complete = True
                    break
    except TimeoutError:
        pass  # the body-limit layer answers it, by the same deadline
    body = b"".join(m.get("body", b"") for m in read) if complete else None
    return body, _replaying(read, receive)


async def peek_whole_first(
    scope: Scope, receive: Receive, limit: int, timeout: float
) -> tuple[bytes | None, Receive]:
    """:func:`peek_body` for a body that comes whole in its first part (else None, and that
    part handed on): never reads more than one part of a body."""
    declared = _declared_length(scope)
    if declared is None or declared > limit:
        return None, receive
    try:
        async with asyncio.timeout_at(body_deadline(scope, timeout)):
            message = await receive()
    except TimeoutError:
        return None, receive  # nothing was read
    whole = message["type"] == "http.request" and not message.get("more_body", False)
    return (message.get("body", b"") if whole else None), _replaying([message], receive)
