"""Live interest: a publisher computes the windows some worker's subscribers watch, and no other.

Workers are real archives (SQLite, the in-process store or a real redis-server) wired as a
server wires them (graph.wiring.live_broadcaster); the tests run the publishing rounds and read
which windows each round handed this worker's listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from graph.core.windows import TimeWindow
from graph.live.interest import INTEREST_SECONDS, KEY, Interest
from graph.stores.memory import MemoryStore
from tests.support.live_worker import Worker, worker
from tests.support.servers import RedisServer

pytestmark = pytest.mark.anyio

H1, H6, H12, H24 = TimeWindow.H1, TimeWindow.H6, TimeWindow.H12, TimeWindow.H24


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def watching(w: Worker, window: TimeWindow) -> AsyncIterator[None]:
    async with w.broadcaster.subscribe(window, None, 0.5, on_drop=lambda: None):
        yield


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'live.db'}"


async def test_a_round_computes_only_the_windows_subscribers_watch(database: str) -> None:
    """Nobody watching: an ingest costs no flows computation at all (a bulk load keeps the
    worker and the database to itself); a map on 24 h: the 24 h window alone."""
    async with worker(database) as w:
        assert await w.ingest("FR", "BE", "Alpha") == []
        async with watching(w, H24):
            assert await w.ingest("DE", "AT", "Beta") == ["24h"]
            async with watching(w, H6):
                assert await w.ingest("ES", "PT", "Gamma") == ["6h", "24h"]
        assert await w.ingest("IT", "CH", "Delta") == []


async def test_a_subscriber_on_another_worker_gets_its_window_computed(
    database: str, throwaway_redis: RedisServer
) -> None:
    """Worker B watches 24 h; worker A ingests and computes that window (and only it), and B's
    subscriber hears of the new flow through the store, as ever."""
    async with (
        worker(database, throwaway_redis.url) as a,
        worker(database, throwaway_redis.url) as b,
        b.broadcaster.subscribe(H24, None, 0.5, on_drop=lambda: None) as (subscriber, _),
    ):
        assert await a.ingest("FR", "BE", "Alpha") == ["24h"]
        await b.broadcaster.catch_up()  # what B's channel would carry: the kept snapshot
        [flow] = subscriber._queue.get_nowait() or []
        assert (flow.from_country, flow.to_country) == ("FR", "BE")


async def test_this_workers_windows_come_first_then_the_others() -> None:
    store = MemoryStore()
    here = Interest(store, lambda: {H24})
    there = Interest(store, lambda: {H12, H6})
    await there.announce()
    assert await here.watched() == [H24, H6, H12]
    assert await Interest(store, set).watched() == [H6, H12]


async def test_in_doubt_every_window_is_computed() -> None:
    """With the store down, and for INTEREST_SECONDS after; and when an entry read before is
    gone before its time (a restarted Redis lost the hash) until it is written again."""
    clock = [1_000.0]
    store = MemoryStore(clock=lambda: clock[0])
    here = Interest(store, set, clock=lambda: clock[0])
    there = Interest(store, lambda: {H6}, clock=lambda: clock[0])
    await there.announce()
    assert await here.watched() == [H6]

    # The store restarted and lost the hash: there's entry is gone before its time.
    restarted = MemoryStore(clock=lambda: clock[0])
    here.store = there.store = store = restarted
    assert await here.watched() == [H1, H6, H12, H24]
    await there.announce()  # written again (at its next renewal, or on resubscribing)
    assert await here.watched() == [H6]

    clock[0] += INTEREST_SECONDS + 1  # there stopped renewing: forgotten when its time is up
    assert await here.watched() == []

    closed = MemoryStore(clock=lambda: clock[0])
    await closed.close()
    doubtful = Interest(closed, set, clock=lambda: clock[0])
    assert await doubtful.watched() == [H1, H6, H12, H24]
    doubtful.store = store
    assert await doubtful.watched() == [H1, H6, H12, H24]  # still in doubt
    clock[0] += INTEREST_SECONDS
    assert await doubtful.watched() == []


async def test_subscribers_joining_at_once_write_the_entry_once(database: str) -> None:
    """A burst of joiners (clients reconnecting after a restart) costs one write of the
    entry; a window already in it, none."""
    async with worker(database) as w, contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(watching(w, H24)) for _ in range(50)))
        assert w.broadcaster.interest.writes == 1
        await stack.enter_async_context(watching(w, H24))
        assert w.broadcaster.interest.writes == 1
        await stack.enter_async_context(watching(w, H6))
        assert w.broadcaster.interest.writes == 2
        assert await w.ingest("FR", "BE", "Alpha") == ["6h", "24h"]


async def test_a_worker_writes_its_entry_as_it_starts_and_keeps_it() -> None:
    store = MemoryStore()
    here = Interest(store, lambda: {H12})
    renewing = asyncio.create_task(here.run())
    try:
        while here.writes == 0:
            await asyncio.sleep(0)
        assert await Interest(store, set).watched() == [H12]
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing


async def test_a_worker_back_after_its_entry_lapsed_catches_up_from_its_own_round(
    database: str, throwaway_redis: RedisServer
) -> None:
    """Worker B was cut off from the store longer than its entry holds: A's rounds left B's
    window out and kept no snapshot of it. When B's subscription begins again it writes its
    entry and its own publisher makes a round: B's subscriber gets the flow all the same."""
    async with (
        worker(database, throwaway_redis.url) as a,
        worker(database, throwaway_redis.url) as b,
        b.broadcaster.subscribe(H24, None, 0.5, on_drop=lambda: None) as (subscriber, _),
    ):
        raw = Redis.from_url(throwaway_redis.url)
        try:
            await raw.hdel(KEY, b.broadcaster.interest.id)  # its time up, unseen by A
        finally:
            await raw.aclose()
        assert await a.ingest("FR", "BE", "Alpha") == []
        await b.broadcaster.catch_up()  # B's subscription to the channel begins again
        assert b.archive.publisher.pending
        b.rounds.append([])
        await b.archive.publisher.publish_all()
        [flow] = subscriber._queue.get_nowait() or []
        assert (flow.from_country, flow.to_country) == ("FR", "BE")
        assert await a.ingest("DE", "AT", "Beta") == ["24h"]  # B's entry is back
