"""Pausing the cyclic garbage collector while a large batch changes shape."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a batch is turned from one shape into
    another (validated models into records).

    Such a step allocates tens of thousands of objects that all live until the batch is stored;
    batches hold no reference cycles, so reference counting frees them, and the collector
    resumes as soon as the step is done.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
