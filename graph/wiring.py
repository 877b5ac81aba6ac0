"""What the lifespan makes and every request reads: settings, engine, store, cache, service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from db import migrate
from db.engine import make_engine
from db.repository import TrendRepository
from graph.cache.response_cache import ResponseCache
from graph.feeds.poller import Feeds, open_feeds
from graph.live.broadcaster import Broadcaster, Publisher
from graph.observability.log import logger
from graph.service.trend_service import TrendService
from graph.settings import Settings
from graph.stores import Store, open_store


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    store: Store
    cache: ResponseCache
    service: TrendService
    publisher: Publisher
    broadcaster: Broadcaster
    feeds: Feeds


def app_state(conn: HTTPConnection) -> AppState:
    """The state the lifespan handed to this request (HTTP or WebSocket)."""
    state = conn.state.trendmap
    assert isinstance(state, AppState)
    return state


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[AppState]:
    """Open the engine (migrating when AUTO_MIGRATE), the store and the service; close after."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_timeout=settings.db_connect_timeout_seconds,
    )
    store = open_store(settings.redis_url, socket_timeout=settings.cache_timeout_seconds)
    try:
        if settings.auto_migrate:
            await migrate.upgrade(engine)
        cache = ResponseCache(
            store if settings.use_cache else None, refresh_seconds=settings.flows_refresh_seconds
        )
        service = TrendService(
            TrendRepository(engine),
            cache=cache,
            halflife_hours=settings.heat_halflife_hours,
            max_flows=settings.max_flows,
            max_batch_records=settings.max_batch_records,
        )
        publisher = Publisher(service, store)
        service.on_change(publisher.notify)
        broadcaster = Broadcaster(service, store, queue_size=settings.subscriber_queue_size)
        async with open_feeds(settings, service, store, engine) as feeds:
            yield AppState(
                settings=settings,
                engine=engine,
                store=store,
                cache=cache,
                service=service,
                publisher=publisher,
                broadcaster=broadcaster,
                feeds=feeds,
            )
    finally:
        await store.close()
        try:
            # A driver connection left mid-query by a cancelled task can leave its close
            # waiting forever; shutdown must not.
            await asyncio.wait_for(engine.dispose(), settings.shutdown_timeout_seconds)
        except TimeoutError:
            logger.error("database connections did not close in time")
