"""Live flows: bounded subscriber queues, and one build per snapshot for every member."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson

from graph.core.crossings import Crossings
from graph.core.flows import Flow
from graph.core.records import validate_batch
from graph.core.windows import TimeWindow
from graph.live.broadcaster import Broadcaster, Group
from graph.live.subscriber import Subscriber
from graph.service.payloads import flow_of
from graph.wiring import open_archive
from tests.support.factories import make_settings, spread


def flow(a: str, b: str, heat: float) -> dict[str, Any]:
    return {
        "from_country": a,
        "to_country": b,
        "heat": heat,
        "shared_topics": ["x"],
        "time_delta_hours": 1.0,
        "similarity_score": heat,
    }


def test_a_published_flow_is_read_as_a_core_flow() -> None:
    assert flow_of(flow("US", "CA", 0.9)) == Flow(
        from_country="US",
        to_country="CA",
        heat=0.9,
        shared_topics=("x",),
        time_delta_hours=1.0,
        similarity_score=0.9,
    )


def test_a_subscriber_that_falls_behind_is_dropped() -> None:
    async def main() -> None:
        dropped: list[bool] = []
        slow = Subscriber(2, lambda: dropped.append(True))
        burst = [flow_of(flow("US", "CA", 0.9))] * 500
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
        sub.offer([flow_of(flow("US", "CA", 0.9))])
        sub.drop(slow=False)
        assert [f.to_country async for f in sub] == ["CA"]

    asyncio.run(main())


def test_a_closed_subscriber_with_a_full_queue_still_ends() -> None:
    """Closing (shutdown) when the queue is exactly full must not lose the end of the stream."""

    async def main() -> None:
        sub = Subscriber(2, lambda: None)
        sub.offer([flow_of(flow("US", "CA", 0.9))])
        sub.offer([flow_of(flow("ES", "PT", 0.9))])
        sub.drop(slow=False)

        async def read() -> list[str]:
            return [f.to_country async for f in sub]

        assert await asyncio.wait_for(read(), timeout=2) == ["CA", "PT"]

    asyncio.run(main())


def test_dispatch_builds_each_flow_once_for_all_members() -> None:
    broadcaster = Broadcaster(None, None, queue_size=10)  # type: ignore[arg-type]
    group = Group(TimeWindow.H6, Crossings(None, 0.5, hot=set()))
    members = [Subscriber(10, lambda: None) for _ in range(3)]
    group.members.update(members)
    other = Group(TimeWindow.H24, Crossings(None, 0.5, hot=set()))
    bystander = Subscriber(10, lambda: None)
    other.members.add(bystander)
    broadcaster.groups = {
        (TimeWindow.H6, None, 0.5): group,
        (TimeWindow.H24, None, 0.5): other,
    }
    message = (
        orjson.dumps({"window": "6h", "as_of": "2026-01-31T12:00:00+00:00"})
        + b"\n"
        + orjson.dumps([flow("US", "CA", 0.9)])
    )
    broadcaster.dispatch(message)
    batches = [m._queue.get_nowait() for m in members]
    assert batches[0] is not None
    received = [b[0] for b in batches if b is not None]
    assert all(r is received[0] for r in received)  # one object, shared
    assert received[0].from_country == "US"
    assert received[0].id == "6h@2026-01-31T12:00:00+00:00:US-CA"  # type: ignore[attr-defined]
    assert bystander._queue.empty()
    assert broadcaster.delivered == 3


def test_subscribers_joining_at_once_share_one_look_up(tmp_path: Path) -> None:
    """A burst of joiners (clients reconnecting after a restart) asks for the flows hot now
    once, not once each: every one of them is handed the very same list."""

    async def main() -> None:
        settings = make_settings(f"sqlite:///{tmp_path / 'join.db'}")
        async with open_archive(settings) as archive:
            await archive.service.ingest(validate_batch(spread("FR", "BE", ["Alpha"])))
            broadcaster = Broadcaster(archive.service, archive.store, queue_size=4)
            async with contextlib.AsyncExitStack() as stack:
                joined = await asyncio.gather(
                    *(
                        stack.enter_async_context(
                            broadcaster.subscribe(TimeWindow.H24, None, 0.5, on_drop=lambda: None)
                        )
                        for _ in range(20)
                    )
                )
                currents = [current for _, current in joined]
                assert [(f.from_country, f.to_country) for f in currents[0]] == [("FR", "BE")]
                assert all(current is currents[0] for current in currents)
                assert broadcaster.subscriber_count == 20
                assert broadcaster.windows() == {TimeWindow.H24}  # what its entry names
            assert broadcaster.subscriber_count == 0 and not broadcaster.groups
            assert broadcaster.windows() == set()
            # The next joiner, alone, looks again.
            async with broadcaster.subscribe(TimeWindow.H24, None, 0.5, on_drop=lambda: None) as (
                _,
                later,
            ):
                assert later is not currents[0] and later == currents[0]

    asyncio.run(main())


def test_a_subscriber_dropped_while_it_starts_is_no_longer_counted(tmp_path: Path) -> None:
    """Snapshots may reach a new subscriber while it still looks up the flows hot now; one too
    slow for them leaves its group there and then, and is counted neither as active nor as
    starting (the count never goes below the subscriptions there are)."""

    async def main() -> None:
        settings = make_settings(f"sqlite:///{tmp_path / 'drop.db'}")
        async with open_archive(settings) as archive:
            broadcaster = Broadcaster(archive.service, archive.store, queue_size=1)
            async with contextlib.AsyncExitStack() as stack:
                joining = asyncio.ensure_future(
                    stack.enter_async_context(
                        broadcaster.subscribe(TimeWindow.H6, None, 0.5, on_drop=lambda: None)
                    )
                )
                await asyncio.sleep(0)  # in its group, its look-up not started yet
                assert broadcaster.groups and broadcaster.subscriber_count == 0
                for minute, pair in enumerate([("US", "CA"), ("FR", "BE"), ("DE", "AT")]):
                    broadcaster.dispatch(
                        orjson.dumps({"window": "6h", "as_of": f"2026-01-31T12:0{minute}:00Z"})
                        + b"\n"
                        + orjson.dumps([flow(*pair, 0.9)])
                    )
                assert broadcaster.dropped == 1
                assert broadcaster.subscriber_count == 0
                subscriber, _ = await joining
                assert subscriber.dropped and broadcaster.subscriber_count == 0

    asyncio.run(main())
