"""Reading a request's body ahead of the app, and handing it on unread.

Every layer that reads a body early keeps to one deadline per request
(``HTTP_BODY_TIMEOUT_SECONDS`` from the first layer that waited for it, see
:func:`body_deadline`), so a body that never comes is answered 408 on time by
graph.http.middleware.body_limit, however many layers looked at it first.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

from starlette.types import Message, Receive, Scope

_DEADLINE = "body_deadline"


class _Deadlines:
    """The body reads waiting on one event loop, by task, and one timer for the earliest of
    their deadlines.

    A timer of its own for every read (``asyncio.timeout_at``) cost each read about 4 µs in
    process, 1 to 3 reads a POST, for reads that almost never wait: a small body comes with
    its headers (docs/benchmarks.md, "A timer per body read"). Here a read that does not wait
    costs two dict operations; the timer is armed only for a deadline earlier than the one it
    is armed for, and when it fires it cancels every read past its deadline and is armed
    again for the earliest left.
    """

    def __init__(self) -> None:
        # Neither the loop nor its timers are kept here: the loop is this object's key in
        # _LOOPS, held weakly, and a timer holds its loop. A timer armed for a later time is
        # never cancelled; when it fires with nothing past its deadline, it only re-arms.
        self.waiting: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.timer_at = math.inf  # the earliest time a timer is armed for

    def add(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.waiting[task] = deadline
        if deadline < self.timer_at:
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        asyncio.get_running_loop().call_at(at, self._expire)
        self.timer_at = at

    def _expire(self) -> None:
        self.timer_at = math.inf
        now = asyncio.get_running_loop().time()
        earliest = math.inf
        for task, deadline in list(self.waiting.items()):
            if deadline <= now:
                del self.waiting[task]
                self.expired.add(task)
                task.cancel()
            else:
                earliest = min(earliest, deadline)
        if earliest < math.inf:
            self._arm(earliest)

    def took_expiry(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s read was cancelled for its deadline (and so the deadline's to
        answer), forgetting it."""
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)


async def receive_by(receive: Receive, deadline: float) -> Message:
    """``receive()``; TimeoutError when nothing came by ``deadline`` (the loop's time), as
    ``asyncio.timeout_at`` would raise it, without a timer of its own."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # not in a task: nothing to cancel, the stdlib's way
        async with asyncio.timeout_at(deadline):
            return await receive()
    deadlines = _LOOPS.get(loop)
    if deadlines is None:
        deadlines = _LOOPS[loop] = _Deadlines()
    cancelling = task.cancelling()
    deadlines.add(task, deadline)
    try:
        message = await receive()
    except asyncio.CancelledError:
        # Ours, unless the task was also cancelled from elsewhere (that one goes on).
        if deadlines.took_expiry(task) and task.uncancel() <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        deadlines.waiting.pop(task, None)
    if deadlines.took_expiry(task):
        task.uncancel()  # came just before the deadline's cancellation reached it
    return message


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
    deadline = body_deadline(scope, timeout)
    try:
        while True:
            message = await receive_by(receive, deadline)
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
        message = await receive_by(receive, body_deadline(scope, timeout))
    except TimeoutError:
        return None, receive  # nothing was read
    whole = message["type"] == "http.request" and not message.get("more_body", False)
    return (message.get("body", b"") if whole else None), _replaying([message], receive)
