"""The app's lifespan: at shutdown nothing of the app's outlives it."""

from __future__ import annotations

import asyncio

from graph.core.windows import TimeWindow
from graph.http.app import create_app
from graph.service.queries import FlowQuery
from graph.wiring import AppState
from tests.support.factories import make_settings
from tests.support.locks import every_table_locked
from tests.support.servers import empty_archive


def test_a_window_read_whose_reader_left_ends_with_the_lifespan(postgres_url: str) -> None:
    """A request leaves while its window is still being read (held here by another session's
    lock on every table). At shutdown the read is waited for, then cancelled: no task is left
    running against a disposed engine, which is what once held a test run's event loop."""
    settings = make_settings(postgres_url, poller_enabled=False, shutdown_timeout_seconds=1)
    app = create_app(settings)

    async def main() -> None:
        await empty_archive(postgres_url)
        # The lock is taken once the app has migrated, and held until its shutdown is over.
        lifespan = app.router.lifespan_context(app)
        state: AppState = (await lifespan.__aenter__())["trendmap"]
        async with every_table_locked(postgres_url):
            query = FlowQuery(TimeWindow.H24, None, 0.5, None, None)
            request = asyncio.create_task(state.service.flows(query))
            pool = state.repository.engine.pool
            while pool.checkedout() == 0:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
            await lifespan.__aexit__(None, None, None)
            left = asyncio.all_tasks() - {asyncio.current_task()}
            assert not left, f"still running after shutdown: {left}"

    asyncio.run(main())
