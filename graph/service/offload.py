"""A large window's maths on a thread of its own, so the event loop keeps answering.

Flows, hotspots and a hotspot history are plain CPU work over columns already read. On a
window of a million records that is a tenth of a second, on ten million more than a second:
run on the event loop, every other request of the worker (a cached answer's few
microseconds, a live map's frames, the WebSocket pings) would wait behind it. Over
:data:`MIN_ROWS` rows they run on the one maths thread instead; the loop gets the interpreter
back whenever numpy works without it and at Python's switch interval otherwise.

One thread per process, not a pool: one window's maths at a time, so what is held in memory
is one computation's working set however many windows are asked for at once, and a core is
left for the loop (the maths spreads its largest steps over threads of its own:
graph.core.pairs). Small windows stay on the loop, where a thread's hand-over would cost
more than the maths.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["MIN_ROWS", "THREAD_NAME", "WINDOWS_AT_ONCE", "maths"]

# Rows of input from which the maths goes to its thread: a window of about 30,000 records
# (some 20 ms of flows maths; the hand-over costs about 0.1 ms).
MIN_ROWS = 20_000
# Windows a worker computes at once: one on the maths thread and one read from the database
# meanwhile. More would only wait for the thread, each holding its columns (a 10M-record
# window's are some hundreds of MB), however many distinct windows clients ask for at once.
WINDOWS_AT_ONCE = 2
THREAD_NAME = "trendmap-maths"

_P = ParamSpec("_P")
_T = TypeVar("_T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _thread() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        return _executor


async def maths(rows: int, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``fn(*args, **kwargs)``: on the maths thread when its input holds ``rows`` >=
    :data:`MIN_ROWS` rows, else here. The call sees this task's context variables (the
    request's log fields and trace) either way; a cancelled caller stops waiting, not the
    maths, whose result is dropped."""
    if rows < MIN_ROWS:
        return fn(*args, **kwargs)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_thread(), call)
