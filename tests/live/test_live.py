"""Live flows: crossings per group, bounded subscriber queues, one build per group."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from graph.graphql.types import Flow
from graph.live.broadcaster import Broadcaster, Group, Subscriber
from graph.service.params import TimeWindow


def flow(a: str, b: str, heat: float) -> dict[str, Any]:
    return {
        "from_country": a,
        "to_country": b,
        "heat": heat,
        "shared_topics": ["x"],
        "time_delta_hours": 1.0,
        "similarity_score": heat,
    }


def pairs(flows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["from_country"], f["to_country"]) for f in flows]


def test_a_flow_is_new_once_per_crossing() -> None:
    group = Group(TimeWindow.H24, None, 0.5, hot=set())
    assert pairs(group.crossings([flow("US", "CA", 0.6), flow("ES", "PT", 0.4)])) == [("US", "CA")]
    assert group.crossings([flow("US", "CA", 0.7), flow("ES", "PT", 0.45)]) == []
    assert pairs(group.crossings([flow("US", "CA", 0.3), flow("ES", "PT", 0.55)])) == [("ES", "PT")]
    # US→CA fell below the threshold; coming back makes it new again.
    assert pairs(group.crossings([flow("US", "CA", 0.8), flow("ES", "PT", 0.55)])) == [("US", "CA")]


def test_a_flow_changing_direction_is_not_new() -> None:
    group = Group(TimeWindow.H24, None, 0.5, hot={("US", "CA")})
    assert group.crossings([flow("CA", "US", 0.9)]) == []


def test_a_group_sees_only_its_countries_and_threshold() -> None:
    group = Group(TimeWindow.H24, frozenset({"US", "CA", "MX"}), 0.5, hot=set())
    fresh = group.crossings(
        [flow("US", "CA", 0.9), flow("US", "GB", 0.9), flow("MX", "US", 0.49999999999)]
    )
    assert pairs(fresh) == [("US", "CA"), ("MX", "US")]


def test_a_new_group_starts_from_what_is_hot() -> None:
    group = Group(TimeWindow.H24, None, 0.5)
    assert group.crossings([flow("US", "CA", 0.9)]) == []
    assert pairs(group.crossings([flow("US", "CA", 0.9), flow("ES", "PT", 0.9)])) == [("ES", "PT")]


def test_a_subscriber_that_falls_behind_is_dropped() -> None:
    async def main() -> None:
        dropped: list[bool] = []
        slow = Subscriber(2, lambda: dropped.append(True))
        burst = [Flow.of(flow("US", "CA", 0.9))] * 500
        slow.offer(burst)  # one delivery, however large
        slow.offer(burst)
        assert not slow.dropped
        slow.offer(burst)  # a third snapshot while two wait: too slow
        assert slow.dropped and dropped == [True]
        assert [f async for f in slow] == []  # nothing more is delivered

    asyncio.run(main())


def test_a_closed_subscriber_reads_what_was_queued() -> None:
    async def main() -> None:
        sub = Subscriber(5, lambda: None)
        sub.offer([Flow.of(flow("US", "CA", 0.9))])
        sub.drop(slow=False)
        assert [f.to_country async for f in sub] == ["CA"]

    asyncio.run(main())


def test_dispatch_builds_each_flow_once_for_all_members() -> None:
    broadcaster = Broadcaster(None, None, queue_size=10)  # type: ignore[arg-type]
    group = Group(TimeWindow.H6, None, 0.5, hot=set())
    members = [Subscriber(10, lambda: None) for _ in range(3)]
    group.members.update(members)
    other = Group(TimeWindow.H24, None, 0.5, hot=set())
    bystander = Subscriber(10, lambda: None)
    other.members.add(bystander)
    broadcaster.groups = {
        (TimeWindow.H6, None, 0.5): group,
        (TimeWindow.H24, None, 0.5): other,
    }
    message = orjson.dumps({"window": "6h"}) + b"\n" + orjson.dumps([flow("US", "CA", 0.9)])
    broadcaster.dispatch(message)
    batches = [m._queue.get_nowait() for m in members]
    assert batches[0] is not None
    received = [b[0] for b in batches if b is not None]
    assert all(r is received[0] for r in received)  # one object, shared
    assert received[0].from_country == "US"
    assert bystander._queue.empty()
    assert broadcaster.delivered == 3
