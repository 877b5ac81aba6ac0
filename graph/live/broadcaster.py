"""Live hot flows: a publisher after ingests, and a broadcaster in every worker.

Publisher. After each committed ingest that changed data (coalescing bursts), the worker that
ingested recomputes every window's flows once, through the cache (so one computation serves all
workers), compares them with the previous snapshot, and publishes the window's new snapshot on
the store's channel when it changed. Redis pub/sub carries it to every worker on every host;
without Redis the in-process store does the same inside one process.

Broadcaster. Each worker listens on the channel. Subscribers with the same (window, countries,
threshold) form a group. Per snapshot, a group works out once which flows newly reached its
threshold within its countries, remembers what is hot now (so a flow that falls below and comes
back is new again) and hands the new flows, built once, to every member. Each subscriber has a
bounded queue: one that stops reading fills it and is dropped, without delaying anyone else,
and its socket is closed with 1008. (ASGI cannot abort a connection: when the peer reads
nothing at all, the close frame waits behind the unread data, and the connection holds one
transport buffer until the peer reads or TCP gives up.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from graph.cache.response_cache import TTL_SECONDS
from graph.core.analytics import HEAT_EPSILON
from graph.core.errors import DependencyUnavailable
from graph.graphql.types import Flow
from graph.observability.log import logger
from graph.service.params import TimeWindow
from graph.service.trend_service import FlowQuery, TrendService
from graph.stores import Store, StoreUnavailable

CHANNEL = "trendmap:flows"
_DEBOUNCE_SECONDS = 0.02

Pair = tuple[str, str]


def snapshot_key(window: TimeWindow) -> str:
    return f"flowstate:{window.value}"


class Publisher:
    """Recompute and publish each window's flows after committed ingests."""

    def __init__(self, service: TrendService, store: Store) -> None:
        self.service = service
        self.store = store
        self._dirty = asyncio.Event()
        self._previous: dict[TimeWindow, bytes] = {}
        self.published = 0

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
        self.published += 1
        return True


class Subscriber:
    """One subscription's bounded queue of deliveries (each: the flows of one snapshot).

    The bound counts snapshots, not flows: a burst of thousands of new flows is one delivery,
    and a subscriber is too slow when it is ``size`` snapshots behind.
    """

    def __init__(self, size: int, on_drop: Callable[[], None]) -> None:
        self._queue: asyncio.Queue[list[Flow] | None] = asyncio.Queue(size)
        self._batch: list[Flow] = []
        self._on_drop = on_drop
        self.dropped = False

    def offer(self, flows: list[Flow]) -> None:
        if self.dropped:
            return
        try:
            self._queue.put_nowait(flows)
        except asyncio.QueueFull:
            self.drop(slow=True)

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
        with contextlib.suppress(asyncio.QueueFull):
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


@dataclass(eq=False)
class Group:
    """Subscribers sharing one (window, countries, threshold)."""

    window: TimeWindow
    countries: frozenset[str] | None
    threshold: float
    hot: set[Pair] | None = None
    members: set[Subscriber] = field(default_factory=set)

    def wants(self, flow: dict[str, Any]) -> bool:
        if flow["heat"] < self.threshold - HEAT_EPSILON:
            return False
        ends = {flow["from_country"], flow["to_country"]}
        return self.countries is None or ends <= self.countries

    def crossings(self, flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The flows that newly reached the threshold since the last snapshot."""
        current = {(f["from_country"], f["to_country"]): f for f in flows if self.wants(f)}
        previous, self.hot = self.hot, set(current)
        if previous is None:
            return []
        # A reversed pair is the same flow changing direction, not a new one.
        seen = previous | {(b, a) for a, b in previous}
        return [f for pair, f in current.items() if pair not in seen]


GroupKey = tuple[TimeWindow, tuple[str, ...] | None, float]


class Broadcaster:
    """This worker's end of the channel: hands each group's crossings to its subscribers."""

    def __init__(self, service: TrendService, store: Store, *, queue_size: int) -> None:
        self.service = service
        self.store = store
        self.queue_size = queue_size
        self.groups: dict[GroupKey, Group] = {}
        self.delivered = 0
        self.dropped = 0

    @property
    def subscriber_count(self) -> int:
        return sum(len(g.members) for g in self.groups.values())

    async def run(self) -> None:
        """Listen until cancelled (the store resubscribes by itself after outages)."""
        async for message in self.store.subscribe(CHANNEL):
            try:
                self.dispatch(message)
            except Exception:
                logger.exception("dispatching flows failed")

    def dispatch(self, message: bytes) -> None:
        header, _, payload = message.partition(b"\n")
        window = TimeWindow(orjson.loads(header)["window"])
        flows: list[dict[str, Any]] | None = None
        for group in list(self.groups.values()):
            if group.window is not window:
                continue
            if flows is None:
                flows = orjson.loads(payload)
                assert flows is not None
            crossed = group.crossings(flows)
            if not crossed:
                continue
            # Built once per group, shared by every member.
            fresh = [Flow.of(f) for f in crossed]
            for member in list(group.members):
                member.offer(fresh)
                if member.dropped:
                    # Out at once: nothing more is queued for it, whatever its socket does.
                    group.members.discard(member)
                    self.dropped += 1
                else:
                    self.delivered += len(fresh)

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        window: TimeWindow,
        countries: tuple[str, ...] | None,
        threshold: float,
        *,
        on_drop: Callable[[], None],
    ) -> AsyncIterator[tuple[Subscriber, list[dict[str, Any]]]]:
        """Join the group; yields the subscriber and the flows hot right now."""
        key: GroupKey = (window, countries, threshold)
        group = self.groups.get(key)
        if group is None:
            group = Group(window, frozenset(countries) if countries else None, threshold)
            self.groups[key] = group
        subscriber = Subscriber(self.queue_size, on_drop)
        group.members.add(subscriber)
        try:
            answer = await self.service.flows(FlowQuery(window, countries, threshold, None, None))
            current = answer.items()
            if group.hot is None:
                group.hot = {(f["from_country"], f["to_country"]) for f in current}
            yield subscriber, current
        finally:
            group.members.discard(subscriber)
            if not group.members and self.groups.get(key) is group:
                del self.groups[key]

    def close(self) -> None:
        """End every subscription (on shutdown): readers finish, sockets close normally."""
        for group in self.groups.values():
            for member in list(group.members):
                member.drop(slow=False)
