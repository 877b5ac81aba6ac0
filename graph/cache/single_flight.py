"""SingleFlight: callers asking for the same thing at once share one computation of it.

The computation runs as a task of its own, not inside the caller that started it: a caller
that goes away (its client left, its server is stopping) cancels only its own wait, never the
answer the others are waiting for. At shutdown, :meth:`SingleFlight.drain` lets computations
whose callers left finish, and cancels what is left, before what they use (the database) closes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from graph.observability.log import logger

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    """Computations under way, by key; ``what`` names them in the logs."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._running: dict[K, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(
        self,
        key: K,
        compute: Callable[[], Awaitable[T]],
        alone: Callable[[], Awaitable[T]] | None = None,
    ) -> T:
        """``compute()``, or the computation of ``key`` already under way.

        When the shared computation was cancelled and this caller was not, the caller answers
        by itself, through ``alone()`` (default ``compute()``).
        """
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(compute())
            self._running[key] = running
            running.add_done_callback(functools.partial(self._finished, key))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if running.cancelled() and not (current is not None and current.cancelling()):
                return await (alone or compute)()
            raise

    async def drain(self, seconds: float) -> None:
        """Wait, at most ``seconds``, for the computations still running (their callers may
        have gone); then cancel the rest and wait, as long again, for them to end."""
        running = set(self._running.values())
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=seconds)
            logger.warning(
                "computations cancelled at shutdown",
                what=self.what,
                cancelled=len(pending),
                still_running=len(stuck),
            )

    def _finished(self, key: K, task: asyncio.Future[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # seen by every waiter; nobody may be waiting: mark it retrieved
