"""Live flows through a Redis outage: workers as archives in one process, on a throwaway Redis.

Each "worker" is a real archive (SQLite file shared by all, the same redis-server) with its own
publisher and broadcaster; the tests drive publishing rounds themselves, so every step is
deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from graph.core.crossings import Crossings
from graph.core.windows import TimeWindow
from graph.live.broadcaster import Broadcaster, Group
from graph.live.publisher import snapshot_as_of, snapshot_key
from graph.live.subscriber import Subscriber
from graph.stores import StoreUnavailable, open_store
from graph.stores.memory import MemoryStore
from tests.support.live_worker import NOW, Worker, worker
from tests.support.servers import RedisServer

pytestmark = pytest.mark.anyio

Pair = tuple[str, str]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def listening(w: Worker) -> AsyncIterator[Subscriber]:
    async with w.broadcaster.subscribe(TimeWindow.H24, None, 0.5, on_drop=lambda: None) as (
        subscriber,
        _current,
    ):
        yield subscriber


def received(subscriber: Subscriber) -> list[Pair]:
    """What was delivered so far, without waiting."""
    pairs = []
    while not subscriber._queue.empty():
        batch = subscriber._queue.get_nowait()
        assert batch is not None
        pairs += [(f.from_country, f.to_country) for f in batch]
    return pairs


async def receive(subscriber: Subscriber, count: int, seconds: float = 5) -> list[Pair]:
    """The next ``count`` flows, waiting at most ``seconds``."""

    async def read() -> list[Pair]:
        pairs: list[Pair] = []
        async for flow in subscriber:
            pairs.append((flow.from_country, flow.to_country))
            if len(pairs) == count:
                break
        return pairs

    return await asyncio.wait_for(read(), seconds)


async def kept(url: str, window: TimeWindow = TimeWindow.H24) -> bytes | None:
    client = Redis.from_url(url)
    try:
        value: bytes | None = await client.get(snapshot_key(window))
        return value
    finally:
        await client.aclose()


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'live.db'}"


async def test_with_redis_down_the_ingesting_worker_delivers_at_once_and_sends_later(
    database: str, throwaway_redis: RedisServer
) -> None:
    async with worker(database, throwaway_redis.url) as a, listening(a) as subscriber:
        throwaway_redis.stop()
        await a.ingest("FR", "BE", "Alpha")
        assert received(subscriber) == [("FR", "BE")]
        assert a.archive.publisher.unsent == len(TimeWindow)

        throwaway_redis.start()
        await a.archive.publisher.send()
        assert a.archive.publisher.unsent == 0
        message = await kept(throwaway_redis.url)
        assert message is not None and b'"BE"' in message
        # Sent once: the same snapshot heard back over the channel delivers nothing more.
        a.broadcaster.dispatch(message)
        assert received(subscriber) == []


async def test_the_kept_snapshot_never_goes_back(
    database: str, throwaway_redis: RedisServer
) -> None:
    """Two workers that ingested during the outage send when it ends, the older snapshot last:
    the newer one stays kept, for the workers that catch up from it."""
    async with (
        worker(database, throwaway_redis.url) as a,
        worker(database, throwaway_redis.url) as b,
    ):
        throwaway_redis.stop()
        await b.ingest("DE", "AT", "Gamma")
        await a.ingest("FR", "BE", "Alpha")  # A's snapshot is the newer: it holds both flows
        throwaway_redis.start()
        await a.archive.publisher.send()
        newest = await kept(throwaway_redis.url)
        await b.archive.publisher.send()
        assert b.archive.publisher.unsent == 0  # nothing to send: a newer one went already
        assert await kept(throwaway_redis.url) == newest
        assert newest is not None and b'"FR"' in newest and b'"DE"' in newest


async def test_a_worker_catches_up_on_what_was_sent_while_it_was_not_subscribed(
    database: str, throwaway_redis: RedisServer
) -> None:
    async with (
        worker(database, throwaway_redis.url) as a,
        worker(database, throwaway_redis.url) as b,
    ):
        async with listening(b) as subscriber:
            await a.ingest("FR", "BE", "Alpha")  # B does not listen on the channel yet
            assert a.archive.publisher.unsent == 0
            task = asyncio.create_task(b.broadcaster.run())
            try:
                assert await receive(subscriber, 1) == [("FR", "BE")]
                await a.ingest("JP", "KR", "Anime")  # and then from the channel
                assert await receive(subscriber, 1) == [("JP", "KR")]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _message(as_of: datetime, *pairs: Pair) -> bytes:
    flows = [
        {
            "from_country": a,
            "to_country": b,
            "heat": 0.9,
            "shared_topics": ["x"],
            "time_delta_hours": 1.0,
            "similarity_score": 0.9,
        }
        for a, b in pairs
    ]
    header = orjson.dumps({"window": "24h", "as_of": as_of.isoformat()})
    return header + b"\n" + orjson.dumps(flows)


def test_a_snapshot_seen_twice_or_after_a_newer_one_sends_nothing() -> None:
    """A worker hears its own snapshots twice (directly, then over the channel) and older ones
    late (a worker that sent after an outage): neither may re-send or un-send a flow."""
    broadcaster = Broadcaster(None, None, queue_size=10)  # type: ignore[arg-type]
    group = Group(TimeWindow.H24, Crossings(None, 0.5, hot=set()))
    member = Subscriber(10, lambda: None)
    group.members.add(member)
    broadcaster.groups = {(TimeWindow.H24, None, 0.5): group}
    first = _message(NOW, ("US", "CA"))
    second = _message(NOW + timedelta(seconds=1), ("US", "CA"), ("ES", "PT"))
    for message in (first, second, first, second, first):
        broadcaster.dispatch(message)
    assert received(member) == [("US", "CA"), ("ES", "PT")]
    assert snapshot_as_of(second) == NOW + timedelta(seconds=1)


def test_a_new_group_takes_no_snapshot_older_than_the_flows_it_started_from() -> None:
    broadcaster = Broadcaster(None, None, queue_size=10)  # type: ignore[arg-type]
    group = Group(TimeWindow.H24, Crossings(None, 0.5), as_of=NOW)
    group.crossings.start([])
    member = Subscriber(10, lambda: None)
    group.members.add(member)
    broadcaster.groups = {(TimeWindow.H24, None, 0.5): group}
    broadcaster.dispatch(_message(NOW - timedelta(seconds=1), ("US", "CA")))
    assert received(member) == []
    broadcaster.dispatch(_message(NOW + timedelta(seconds=1), ("US", "CA")))
    assert received(member) == [("US", "CA")]


async def test_on_subscribed_runs_on_every_resubscription_before_later_messages(
    throwaway_redis: RedisServer,
) -> None:
    """Whatever is published once on_subscribed runs reaches the subscriber: the catch-up
    cannot miss a message sent between its read and the subscription."""
    store, sender = open_store(throwaway_redis.url), open_store(throwaway_redis.url)
    inbox: list[bytes] = []
    subscriptions = 0

    async def on_subscribed() -> None:
        nonlocal subscriptions
        subscriptions += 1
        with contextlib.suppress(StoreUnavailable):
            await sender.publish("updates", f"subscribed {subscriptions}".encode())

    async def collect() -> None:
        async for message in store.subscribe("updates", on_subscribed=on_subscribed):
            inbox.append(message)

    task = asyncio.create_task(collect())
    try:
        await _until(lambda: b"subscribed 1" in inbox)
        throwaway_redis.stop()
        throwaway_redis.start()
        await _until(lambda: b"subscribed %d" % subscriptions in inbox and subscriptions > 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
        await sender.close()


async def test_the_in_process_store_calls_on_subscribed_once() -> None:
    store = MemoryStore()
    calls: list[int] = []

    async def on_subscribed() -> None:
        calls.append(1)
        await store.publish("updates", b"hello")

    iterator = aiter(store.subscribe("updates", on_subscribed=on_subscribed))
    assert await asyncio.wait_for(anext(iterator), 1) == b"hello"
    await store.close()
    assert [m async for m in iterator] == []
    assert calls == [1]


async def _until(condition: Any, seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)
