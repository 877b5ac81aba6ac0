"""The broadcaster: this worker's end of the flows channel, and its subscription groups.

Subscribers with the same (window, countries, threshold) form a group. Per snapshot, a group
works out once which flows newly crossed its threshold (graph.core.crossings) and hands the same
core ``Flow`` objects to every member; the GraphQL subscription maps them to its type.

A group's members are of two kinds. A cohort (graph.graphql.fanout) holds every subscriber
with the same document, variables and credential class on one protocol: it executes and encodes
each new flow once and writes the frame to all of its sockets in one loop. A ``Subscriber`` is
one subscription with its own queue, read by its own task: the way for sockets that cannot be
written directly (the test client's).

Snapshots come from this worker's publisher directly and from every worker over the store's
channel (this worker's own among them, again), and after an outage of the channel from the
store, where the latest of each window is kept. A group takes a snapshot only if it is newer
(by ``as_of``) than the last one it took: one seen twice, or one that arrives after a newer one,
changes nothing. (So the hosts' clocks must agree, as NTP keeps them, to well under the time
between two ingests.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import orjson

from graph.cache.single_flight import SingleFlight
from graph.core.crossings import Crossings
from graph.core.flows import Flow
from graph.core.identity import answer_prefix, flow_with_id
from graph.core.windows import TimeWindow
from graph.live.interest import Interest
from graph.live.publisher import CHANNEL, snapshot_key
from graph.live.subscriber import Subscriber
from graph.observability.log import logger
from graph.observability.sentry import report_exception
from graph.service.queries import FlowQuery
from graph.service.trend_service import TrendService
from graph.stores import Store, StoreUnavailable


class Cohort(Protocol):
    """Subscribers served together: each new flow handed over once, for all of them."""

    def __len__(self) -> int: ...

    def __contains__(self, member: object) -> bool: ...

    def offer(self, flows: list[Flow]) -> tuple[int, int]:
        """Deliver ``flows`` to every member at once: (flows delivered, members dropped)."""
        ...

    def close(self) -> None:
        """End every member's subscription (on shutdown)."""
        ...


@dataclass(eq=False)
class Group:
    """Subscribers sharing one (window, countries, threshold)."""

    window: TimeWindow
    crossings: Crossings
    members: set[Subscriber] = field(default_factory=set)
    cohorts: dict[Hashable, Cohort] = field(default_factory=dict)
    as_of: datetime | None = None  # of the last snapshot taken (or of the flows it started with)

    def __bool__(self) -> bool:
        return bool(self.members or self.cohorts)


GroupKey = tuple[TimeWindow, tuple[str, ...] | None, float]


class Broadcaster:
    """Hands each group's crossings to its subscribers."""

    def __init__(self, service: TrendService, store: Store, *, queue_size: int) -> None:
        self.service = service
        self.store = store
        self.queue_size = queue_size
        self.groups: dict[GroupKey, Group] = {}
        # The look-up of the flows hot now, per group key, while one is under way.
        self._looking: SingleFlight[GroupKey, tuple[datetime, list[Flow]]] = SingleFlight(
            "live look-ups"
        )
        # Subscriptions in their groups that do not know yet which flows were hot when they
        # began (a flow crossing meanwhile may count among those, and never be sent): for
        # each, whether it is still in its group (a slow one may be dropped meanwhile).
        self._starting: set[Callable[[], bool]] = set()
        self.delivered = 0
        self.dropped = 0
        # This worker's windows in the store, for every worker's publisher.
        self.interest = Interest(store, self.windows)
        # Asks this worker's publisher for a round (graph.wiring.live_broadcaster).
        self.recompute: Callable[[], None] = lambda: None

    @property
    def subscriber_count(self) -> int:
        """Subscriptions under way: each new crossing from now on is theirs."""
        joined = sum(
            len(g.members) + sum(len(c) for c in g.cohorts.values()) for g in self.groups.values()
        )
        return joined - sum(1 for present in self._starting if present())

    def windows(self) -> set[TimeWindow]:
        """The windows some subscription here is for."""
        return {group.window for group in self.groups.values()}

    async def run(self) -> None:
        """Listen until cancelled (the store resubscribes by itself after outages)."""
        async for message in self.store.subscribe(CHANNEL, on_subscribed=self.catch_up):
            self._dispatch_logged(message)

    async def catch_up(self) -> None:
        """Take the latest snapshot of each window kept in the store: those sent while this
        worker's subscription was down were not heard (called on each (re)subscription)."""
        # First: a store that restarted lost every worker's entry (graph.live.interest).
        await self.interest.announce()
        if not self.groups:
            return  # a group starts from the flows hot when it is made
        # And a round of this worker's own: a worker cut off from the store for longer than
        # its entry holds had its windows left out of the others' rounds meanwhile, and kept
        # snapshots of them may be old. Its own publisher hands it the current ones.
        self.recompute()
        try:
            kept = await self.store.read([(snapshot_key(w), None) for w in TimeWindow])
        except StoreUnavailable as exc:
            logger.warning("live flows not caught up", reason=str(exc))
            return
        for message in kept:
            if message is not None:
                self._dispatch_logged(message)

    def _dispatch_logged(self, message: bytes) -> None:
        try:
            self.dispatch(message)
        except Exception as exc:
            logger.exception("dispatching flows failed")
            report_exception(exc, task="broadcaster")

    def dispatch(self, message: bytes) -> None:
        """Hand a snapshot's new crossings to each group of its window that has not seen it."""
        header, _, payload = message.partition(b"\n")
        fields = orjson.loads(header)
        window = TimeWindow(fields["window"])
        as_of = datetime.fromisoformat(fields["as_of"])
        # Each flow carries its id: the snapshot's window and as_of (graph.core.identity).
        prefix = answer_prefix(window, as_of)
        flows: list[Flow] | None = None
        for group in list(self.groups.values()):
            if group.window is not window:
                continue
            if group.as_of is not None and as_of <= group.as_of:
                continue  # seen already, or older than one seen
            group.as_of = as_of
            if flows is None:  # built once per snapshot, shared by every group and member
                flows = [flow_with_id(item, prefix) for item in orjson.loads(payload)]
            crossed = group.crossings.update(flows)
            if not crossed:
                continue
            for cohort in list(group.cohorts.values()):
                delivered, dropped = cohort.offer(crossed)
                self.delivered += delivered
                self.dropped += dropped
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
        group = self._group(key)
        subscriber = Subscriber(self.queue_size, on_drop)
        group.members.add(subscriber)
        try:
            yield subscriber, await self._start(group, key, lambda: subscriber in group.members)
        finally:
            group.members.discard(subscriber)
            self._forget(key, group)

    @contextlib.asynccontextmanager
    async def join(
        self,
        window: TimeWindow,
        countries: tuple[str, ...] | None,
        threshold: float,
        *,
        member: Hashable,
        cohort_key: Hashable,
        make_cohort: Callable[[], Cohort],
        enter: Callable[[Cohort], Callable[[], None]],
    ) -> AsyncIterator[list[Flow]]:
        """Join the group's cohort ``cohort_key`` (made by ``make_cohort`` when it has none
        yet): ``enter`` adds ``member`` to it and returns what takes it out again. Yields the
        flows hot right now; the member is out once the block ends."""
        key: GroupKey = (window, countries, threshold)
        group = self._group(key)
        cohort = group.cohorts.get(cohort_key)
        if cohort is None:
            cohort = group.cohorts[cohort_key] = make_cohort()
        leave = enter(cohort)
        try:
            yield await self._start(group, key, lambda: member in cohort)
        finally:
            leave()
            if not cohort and group.cohorts.get(cohort_key) is cohort:
                del group.cohorts[cohort_key]
            self._forget(key, group)

    def _group(self, key: GroupKey) -> Group:
        group = self.groups.get(key)
        if group is None:
            window, countries, threshold = key
            crossings = Crossings(frozenset(countries) if countries else None, threshold)
            group = self.groups[key] = Group(window, crossings)
        return group

    async def _start(self, group: Group, key: GroupKey, present: Callable[[], bool]) -> list[Flow]:
        """The flows hot now for the group's filter; a new group starts from them.

        Subscribers that join together (thousands, when clients reconnect after a restart)
        share one look-up, started by the first: each would ask the same question, and a
        burst of them at once would all miss the cache and queue at the database.
        """
        self._starting.add(present)
        try:
            # Every publisher computes this window from now on (a flow that crosses after the
            # look-up below is sent), before the look-up.
            await self.interest.watch(group.window)
            # One joiner leaving does not cancel the others' look-up.
            as_of, current = await self._looking.run(key, lambda: self._current(key))
        finally:
            self._starting.discard(present)
        if group.as_of is None:  # no snapshot came first: the group starts from these
            group.as_of = as_of
        group.crossings.start(current)
        return current

    async def _current(self, key: GroupKey) -> tuple[datetime, list[Flow]]:
        window, countries, threshold = key
        answer = await self.service.flows(FlowQuery(window, countries, threshold, None, None))
        prefix = answer_prefix(answer.span.window, answer.span.as_of)
        return answer.span.as_of, [flow_with_id(item, prefix) for item in answer.items()]

    def _forget(self, key: GroupKey, group: Group) -> None:
        if not group and self.groups.get(key) is group:
            del self.groups[key]

    async def drain(self, seconds: float) -> None:
        """At shutdown, before the database is closed: look-ups whose subscribers left finish,
        or are cancelled after ``seconds``."""
        await self._looking.drain(seconds)

    def close(self) -> None:
        """End every subscription (on shutdown): readers finish, sockets close normally."""
        for group in list(self.groups.values()):
            for cohort in list(group.cohorts.values()):
                cohort.close()
            for member in list(group.members):
                member.drop(slow=False)
