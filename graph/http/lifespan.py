"""The app's lifespan: open the state, start its background tasks, show its figures in the
metrics, and on shutdown stop the tasks within SHUTDOWN_TIMEOUT_SECONDS."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from graph.observability.log import logger
from graph.observability.metrics import Metrics
from graph.observability.sentry import report_exception
from graph.observability.tracing import instrument_engine, uninstrument_engines
from graph.service.blocks import BlockBuilder
from graph.settings import Settings
from graph.wiring import AppState, open_state

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[dict[str, Any]]]


def make_lifespan(settings: Settings, metrics: Metrics | None) -> Lifespan:
    """The lifespan of an app with these settings; its state's figures go to ``metrics``."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_state(settings) as state:
            instrument_engine(state.repository.engine)
            background = _start(state)
            logger.info(
                "started",
                database=state.database,
                store=state.store.kind,
                cache=state.cache.status(),
            )
            # What exists now (modules, the schema, the engine: most of the heap) stays for the
            # process's life. Frozen, it is left out of the collector's full passes, which
            # otherwise walk all of it and stall every request for 100 ms or more.
            gc.freeze()
            unwatch = metrics.watch(state) if metrics is not None else None
            try:
                yield {"trendmap": state}
            finally:
                gc.unfreeze()
                if unwatch is not None:
                    unwatch()
                state.broadcaster.close()
                await stop(background, settings.shutdown_timeout_seconds)
                # Computations whose readers left still hold pooled connections: they finish,
                # or are cancelled, before the engine is disposed under them.
                seconds = settings.shutdown_timeout_seconds
                await asyncio.gather(
                    state.cache.drain(seconds),
                    state.service.snapshots.drain(seconds),
                    state.broadcaster.drain(seconds),
                )
                uninstrument_engines()

    return lifespan


def _start(state: AppState) -> list[asyncio.Task[Any]]:
    """The live fan-out, cache invalidations, the rollup's blocks (PostgreSQL) and (where
    enabled) the poller, as tasks."""
    settings = state.settings
    background = [
        asyncio.create_task(state.publisher.run(), name="publisher"),
        asyncio.create_task(state.broadcaster.run(), name="broadcaster"),
        asyncio.create_task(state.broadcaster.interest.run(), name="live-interest"),
        asyncio.create_task(
            state.cache.listen(settings.cache_local_seconds), name="cache-invalidations"
        ),
    ]
    if state.repository.dialect == "postgresql":
        builder = BlockBuilder(
            state.repository.engine,
            interval_seconds=settings.rollup_blocks_interval_seconds,
            quiet_seconds=settings.rollup_blocks_quiet_seconds,
        )
        background.append(asyncio.create_task(builder.run(), name="rollup-blocks"))
    scheduler = state.feeds.scheduler if settings.poller_enabled else None
    if scheduler is not None:
        background.append(asyncio.create_task(scheduler.run(), name="poller"))
    for task in background:
        task.add_done_callback(_report_failure)
    return background


def _report_failure(task: asyncio.Task[Any]) -> None:
    """A background task that ended with an exception is a bug: logged and reported when it
    happens, not at shutdown."""
    failure = None if task.cancelled() else task.exception()
    if failure is not None:
        logger.error("background task failed", task=task.get_name(), exc_info=failure)
        report_exception(failure, task=task.get_name())


async def stop(tasks: list[asyncio.Task[Any]], seconds: float) -> None:
    """Cancel the background tasks and wait for them, at most ``seconds``: a task that does not
    stop is logged with where it hangs, and shutdown goes on without it."""
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        where = [f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack()]
        logger.error("background task did not stop", task=task.get_name(), stack=where)
