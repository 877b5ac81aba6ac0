"""A subscriber: one subscription's bounded queue of deliveries, read as a stream of flows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from graph.core.flows import Flow


class Subscriber:
    """Deliveries (each: the new flows of one snapshot) waiting for one subscription.

    The bound counts snapshots, not flows: a burst of thousands of new flows is one delivery,
    and a subscriber is too slow when it is ``size`` snapshots behind. A slow one is dropped at
    once (``on_drop`` closes its socket) so that it never delays anyone else.
    """

    def __init__(self, size: int, on_drop: Callable[[], None]) -> None:
        self._size = size
        # One place more than deliveries may take: the end marker always fits.
        self._queue: asyncio.Queue[list[Flow] | None] = asyncio.Queue(size + 1)
        self._batch: list[Flow] = []
        self._on_drop = on_drop
        self.dropped = False

    def offer(self, flows: list[Flow]) -> None:
        if self.dropped:
            return
        if self._queue.qsize() >= self._size:
            self.drop(slow=True)
            return
        self._queue.put_nowait(flows)

    def drop(self, *, slow: bool) -> None:
        """End the subscription: a closed one reads what was queued, a slow one nothing more."""
        if self.dropped:
            return
        self.dropped = True
        if slow:
            self._batch = []
            while not self._queue.empty():
                self._queue.get_nowait()
            self._on_drop()
        self._queue.put_nowait(None)

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Flow:
        while not self._batch:
            batch = await self._queue.get()
            if batch is None:
                raise StopAsyncIteration
            self._batch = list(reversed(batch))
        return self._batch.pop()
