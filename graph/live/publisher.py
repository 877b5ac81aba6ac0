"""The publisher: after committed ingests, each window's flows on the store's channel.

The worker that ingested recomputes every window's flows once, through the cache (one
computation serves all workers), and publishes a window's snapshot when it changed. Redis pub/sub
carries it to every worker on every host; the in-process store does the same in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson

from graph.cache.keys import TTL_SECONDS
from graph.core.errors import DependencyUnavailable
from graph.core.windows import TimeWindow
from graph.observability.log import logger
from graph.service.queries import FlowQuery
from graph.service.trend_service import TrendService
from graph.stores import Store, StoreUnavailable

CHANNEL = "trendmap:flows"
_DEBOUNCE_SECONDS = 0.02


def snapshot_key(window: TimeWindow) -> str:
    return f"flowstate:{window.value}"


class Publisher:
    """Recompute and publish each window's flows after committed ingests."""

    def __init__(self, service: TrendService, store: Store) -> None:
        self.service = service
        self.store = store
        self._dirty = asyncio.Event()
        self._previous: dict[TimeWindow, bytes] = {}

    def notify(self) -> None:
        """An ingest committed new data (called synchronously after the commit)."""
        self._dirty.set()

    @property
    def pending(self) -> bool:
        """Whether data changed since the last round."""
        return self._dirty.is_set()

    async def run(self) -> None:
        """Publish until cancelled; ingests that arrive during a round make one more round."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(_DEBOUNCE_SECONDS)  # coalesce a burst
            started = time.monotonic()
            await self.publish_all()
            if self._dirty.is_set():
                # Ingests kept coming during the round: a stream, such as a bulk load. Let
                # them have as long as the round took before the next one, so recomputing
                # big windows takes at most half of the worker and the ingests the rest. A
                # lone ingest is still published at once.
                await asyncio.sleep(time.monotonic() - started)

    async def publish_all(self) -> None:
        """One round: every window. Cleared first, so an ingest during the round makes another."""
        self._dirty.clear()
        for window in TimeWindow:
            try:
                await self.publish(window)
            except DependencyUnavailable as exc:
                logger.warning("flows not published", time_window=window.value, reason=exc.detail)
            except Exception:
                logger.exception("publishing flows failed", time_window=window.value)

    async def publish(self, window: TimeWindow) -> bool:
        """Publish the window's flows if they changed; True when something was published."""
        answer = await self.service.flows(FlowQuery(window, None, 0.0, None, None))
        key = snapshot_key(window)
        try:
            [stored] = await self.store.read([(key, None)])
        except StoreUnavailable:
            stored = self._previous.get(window)
        if stored == answer.payload:
            return False
        header = orjson.dumps({"window": window.value, "as_of": answer.span.as_of.isoformat()})
        await self.store.publish(CHANNEL, header + b"\n" + answer.payload)
        self._previous[window] = answer.payload
        with contextlib.suppress(StoreUnavailable):
            await self.store.set(key, answer.payload, TTL_SECONDS)
        return True
