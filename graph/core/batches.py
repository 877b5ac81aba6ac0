"""Pausing the cyclic garbage collector while a large batch or window changes shape."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["collector_paused"]

_lock = threading.Lock()
_holders = 0  # pauses of this module's open now, on any thread


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a batch is turned from one shape into
    another (validated models into records, a window's columns into flows).

    Such a step allocates tens of thousands of objects that all live until the batch is stored
    or the answer sent; they hold no reference cycles, so reference counting frees them, and
    the collector resumes as soon as the step is done: the last of the pauses open at once
    resumes it (a window's maths on its thread and a batch on the event loop overlap). A
    collector that something else switched off stays its to switch on.
    """
    global _holders
    with _lock:
        held = _holders > 0 or gc.isenabled()
        if held:
            _holders += 1
            gc.disable()
    if not held:
        yield
        return
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if not _holders:
                gc.enable()
