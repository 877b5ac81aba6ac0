"""A large window's maths runs on the maths thread while the event loop goes on answering."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from db import migrate
from db.engine import make_engine
from db.repository import TrendRepository
from graph.cache.response_cache import ResponseCache
from graph.core.records import validate_batch
from graph.core.windows import Span, TimeWindow
from graph.service import offload
from graph.service.offload import THREAD_NAME, maths
from graph.service.queries import FlowQuery, HotspotQuery
from graph.service.trend_service import TrendService
from graph.stores.memory import MemoryStore
from tests.http.test_hotspot_history import ISO_AS_OF, seeded
from tests.service.test_service import T0, random_records
from tests.support.answers import rest_flows
from tests.support.factories import AS_OF
from tests.support.reference import assert_flows_match, naive_flows, naive_window

_request = contextvars.ContextVar("request", default="none")


@contextlib.asynccontextmanager
async def service_over(
    path: Path, records: list[dict[str, Any]], clock: Callable[[], datetime] | None = None
) -> AsyncIterator[TrendService]:
    """A service over a SQLite archive of ``records``, with an empty in-process cache."""
    engine = make_engine(f"sqlite:///{path / 'trendmap.db'}")
    try:
        await migrate.upgrade(engine)
        repository = TrendRepository(engine)
        await repository.upsert(validate_batch(records))
        clocks = {} if clock is None else {"clock": clock}
        yield TrendService(
            repository,
            cache=ResponseCache(MemoryStore(), refresh_seconds=30, **clocks),
            halflife_hours=6.0,
            max_flows=1_000,
            max_batch_records=10_000,
            **clocks,
        )
    finally:
        await engine.dispose()


def test_small_inputs_run_here_and_large_ones_on_the_maths_thread() -> None:
    def where() -> tuple[str, str]:
        return threading.current_thread().name, _request.get()

    async def main() -> tuple[tuple[str, str], tuple[str, str]]:
        _request.set("r-1")
        return await maths(offload.MIN_ROWS - 1, where), await maths(offload.MIN_ROWS, where)

    (here, seen_here), (there, seen_there) = asyncio.run(main())
    assert here == threading.current_thread().name and seen_here == "r-1"
    assert there.startswith(THREAD_NAME)
    assert seen_there == "r-1", "the maths sees the request's context (log fields, trace)"


def test_a_cancelled_callers_maths_that_has_not_started_never_runs() -> None:
    ran: list[int] = []

    async def main() -> None:
        release = threading.Event()
        held = asyncio.create_task(maths(offload.MIN_ROWS, release.wait, 30))
        await asyncio.sleep(0)
        queued = asyncio.create_task(maths(offload.MIN_ROWS, ran.append, 1))
        await asyncio.sleep(0)
        queued.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued
        release.set()
        assert await held
        await maths(offload.MIN_ROWS, ran.append, 2)  # after the cancelled one, in order

    asyncio.run(main())
    assert ran == [2]


def test_the_loop_answers_while_a_windows_maths_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The maths thread is held busy; a cold flows computation waits for it while a cached
    hotspots answer is served on the loop; then the flows come, equal to the definitions."""
    monkeypatch.setattr(offload, "MIN_ROWS", 0)  # the test's small window counts as large
    records = random_records(29)
    as_of = T0 + timedelta(hours=36)

    async def main() -> None:
        async with service_over(tmp_path, records, lambda: as_of) as service:
            hotspots = HotspotQuery(TimeWindow.H24, None, None, None)
            assert not (await service.hotspots(hotspots)).cache_hit

            release = threading.Event()
            held = asyncio.create_task(maths(1, release.wait, 30))
            flows = asyncio.create_task(
                service.flows(FlowQuery(TimeWindow.H12, None, 0.0, None, None))
            )
            while not service.flow_passes[None]:  # its aggregates read, its maths asked for
                await asyncio.sleep(0)
            assert (await service.hotspots(hotspots)).cache_hit
            # Held, the flows cannot finish however long the loop runs: a tenth of a second
            # of turns is only what inline maths would need to show itself finished.
            await asyncio.wait([flows], timeout=0.1)
            assert not flows.done(), "the flows' maths waits on its thread, not on the loop"
            release.set()
            assert await held
            answer = await flows
        expected = naive_flows(naive_window(records, Span(TimeWindow.H12, as_of)), 6.0, None)
        assert expected, "the data should give flows"
        assert_flows_match(rest_flows({"flows": answer.items()}), expected, 0.0)

    asyncio.run(main())


def test_no_more_windows_are_read_than_the_maths_thread_can_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distinct cold windows asked for at once: while the maths thread is busy, one window
    waits for it and one more is read; the others wait before reading theirs (each would
    otherwise hold its columns in memory). Released, every one is answered."""
    monkeypatch.setattr(offload, "MIN_ROWS", 0)
    records = random_records(11)

    async def main() -> None:
        async with service_over(tmp_path, records) as service:
            release = threading.Event()
            held = asyncio.create_task(maths(1, release.wait, 30))
            # Off the cache's resolution: computed, not kept (no trends: entries to make).
            instants = [T0 + timedelta(hours=30 + k, microseconds=1) for k in range(5)]
            asked = [
                asyncio.create_task(service.flows(FlowQuery(TimeWindow.H24, None, 0.1, at, None)))
                for at in instants
            ]
            try:
                await asyncio.wait(asked, timeout=0.2)  # time enough to read all five
                assert sum(service.flow_passes.values()) == offload.WINDOWS_AT_ONCE
            finally:
                release.set()
            assert await held
            answers = await asyncio.gather(*asked)
        assert sum(service.flow_passes.values()) == len(instants)
        assert [a.span.as_of for a in answers] == instants
        assert all(a.count for a in answers), "the data should give flows"

    asyncio.run(main())


def test_a_history_waits_for_the_maths_thread_while_the_app_answers(
    app_with: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the app: with the maths thread held, a hotspot history waits for it while a
    cached answer comes at once; released, the history comes whole."""
    monkeypatch.setattr(offload, "MIN_ROWS", 0)
    client = app_with()
    seeded(client)
    hotspots = {"time_window": "24h", "as_of": ISO_AS_OF}
    assert client.get("/v1/hotspots", params=hotspots).status_code == 200  # now cached
    since = (AS_OF - timedelta(hours=30)).isoformat()
    params = {"country": "us", "time_window": "6h", "step": "1h", "since": since}
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(30)

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(asyncio.run, maths(1, hold))
        try:
            assert started.wait(10)
            history = {**params, "until": ISO_AS_OF}
            asked = pool.submit(client.get, "/v1/hotspots/history", params=history)
            assert client.get("/v1/hotspots", params=hotspots).status_code == 200
            wait([asked], timeout=0.2)  # what inline maths would need to show itself finished
            assert not asked.done(), "the history's maths waits on its thread, not on the loop"
        finally:
            release.set()
        assert held.result()
        answered = asked.result()
    assert answered.status_code == 200, answered.text
    points = answered.json()["hotspot_history"]
    assert len(points) == 31 and any(p["volume"] > 0 for p in points)
