"""Pausing the cyclic garbage collector while a large batch or window changes shape."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a batch is turned from one shape into
    another (validated models into records, a window's columns into flows).

    Such a step allocates tens of thousands of objects that all live until the batch is stored
    or the answer sent; they hold no reference cycles, so reference counting frees them, and
    the collector resumes as soon as the step is done.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
