"""The broadcaster: this worker's end of the flows channel, and its subscription groups.

Subscribers with the same (window, countries, threshold) form a group. Per snapshot, a group
works out once which flows newly crossed its threshold (graph.core.crossings) and hands the same
core ``Flow`` objects to every member; the GraphQL subscription maps them to its type.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from graph.core.crossings import Crossings
from graph.core.flows import Flow
from graph.core.identity import answer_prefix, flow_with_id
from graph.core.windows import TimeWindow
from graph.live.publisher import CHANNEL
from graph.live.subscriber import Subscriber
from graph.observability.log import logger
from graph.service.queries import FlowQuery
from graph.service.trend_service import TrendService
from graph.stores import Store


@dataclass(eq=False)
class Group:
    """Subscribers sharing one (window, countries, threshold)."""

    window: TimeWindow
    crossings: Crossings
    members: set[Subscriber] = field(default_factory=set)


GroupKey = tuple[TimeWindow, tuple[str, ...] | None, float]


class Broadcaster:
    """Hands each group's crossings to its subscribers."""

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
        fields = orjson.loads(header)
        window = TimeWindow(fields["window"])
        # Each flow carries its id: the snapshot's window and as_of (graph.core.identity).
        prefix = answer_prefix(window, datetime.fromisoformat(fields["as_of"]))
        flows: list[Flow] | None = None
        for group in list(self.groups.values()):
            if group.window is not window:
                continue
            if flows is None:  # built once per snapshot, shared by every group and member
                flows = [flow_with_id(item, prefix) for item in orjson.loads(payload)]
            crossed = group.crossings.update(flows)
            if not crossed:
                continue
            for member in list(group.members):
                member.offer(crossed)
                if member.dropped:
                    # Out at once: nothing more is queued for it, whatever its socket does.
                    group.members.discard(member)
                    self.dropped += 1
                else:
                    self.delivered += len(crossed)

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        window: TimeWindow,
        countries: tuple[str, ...] | None,
        threshold: float,
        *,
        on_drop: Callable[[], None],
    ) -> AsyncIterator[tuple[Subscriber, list[Flow]]]:
        """Join the group; yields the subscriber and the flows hot right now."""
        key: GroupKey = (window, countries, threshold)
        group = self.groups.get(key)
        if group is None:
            crossings = Crossings(frozenset(countries) if countries else None, threshold)
            group = self.groups[key] = Group(window, crossings)
        subscriber = Subscriber(self.queue_size, on_drop)
        group.members.add(subscriber)
        try:
            answer = await self.service.flows(FlowQuery(window, countries, threshold, None, None))
            prefix = answer_prefix(answer.span.window, answer.span.as_of)
            current: list[Flow] = [flow_with_id(item, prefix) for item in answer.items()]
            group.crossings.start(current)
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
