"""Builds the collaborators and hands each the ones it needs, through its constructor.

:func:`open_archive` opens what every command that reads or writes the archive needs (database,
store, cache, service, publisher); :func:`open_state` adds what a server runs besides (the live
broadcaster and the feeds, with their HTTP client). A command builds only what it uses.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from db import migrate
from db.engine import make_engine
from db.exploring import ExploringRepository
from db.locks import advisory_lock
from db.repository import TrendRepository
from graph.cache.bounds import CacheBounds
from graph.cache.response_cache import ResponseCache
from graph.feeds.board import SourceBoard, make_board
from graph.feeds.feeds import Feeds, open_feeds
from graph.feeds.lease import POLLER_LOCK_ID
from graph.live.broadcaster import Broadcaster
from graph.live.publisher import Publisher
from graph.observability.log import logger
from graph.service.explorer import Explorer
from graph.service.offload import maths
from graph.service.trend_service import TrendService
from graph.settings import Settings
from graph.stores import Store, open_store


@dataclass(frozen=True, slots=True)
class Archive:
    """The archive and what answers from it: enough to ingest, query and announce changes."""

    settings: Settings
    database: str  # the database URL with its password hidden, for logs
    repository: TrendRepository
    store: Store
    cache: ResponseCache
    board: SourceBoard
    service: TrendService
    publisher: Publisher
    explorer: Explorer


@dataclass(frozen=True, slots=True)
class AppState:
    """What the server's lifespan makes and every request reads."""

    settings: Settings
    database: str
    repository: TrendRepository
    store: Store
    cache: ResponseCache
    service: TrendService
    publisher: Publisher
    broadcaster: Broadcaster
    feeds: Feeds
    explorer: Explorer


def app_state(conn: HTTPConnection) -> AppState:
    """The state the lifespan handed to this request (HTTP or WebSocket)."""
    state = conn.state.trendmap
    assert isinstance(state, AppState)
    return state


@asynccontextmanager
async def open_archive(settings: Settings) -> AsyncIterator[Archive]:
    """The engine (migrated first when AUTO_MIGRATE), the store, the cache and the service."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_ms=math.ceil(settings.db_statement_timeout_seconds * 1000),
    )
    store = open_store(settings.redis_url, socket_timeout=settings.cache_timeout_seconds)
    try:
        if settings.auto_migrate:
            await migrate.upgrade(engine)
        repository = TrendRepository(engine, maths=maths)
        cache = ResponseCache(
            store if settings.use_cache else None,
            refresh_seconds=settings.flows_refresh_seconds,
            bounds=CacheBounds(
                settings.cache_max_entries,
                settings.cache_max_bytes,
                settings.cache_as_of_resolution_seconds,
            ),
        )
        board = make_board(settings, store)
        service = TrendService(
            repository,
            cache=cache,
            halflife_hours=settings.heat_halflife_hours,
            min_lag_hours=settings.flow_min_lag_minutes / 60,
            max_flows=settings.max_flows,
            max_batch_records=settings.max_batch_records,
            unavailable=board.failing_countries,
        )
        publisher = Publisher(service, store)
        service.on_change(publisher.notify)
        explorer = Explorer(
            ExploringRepository(engine),
            cache=cache,
            clock=service.clock,
            partial_warnings=service.partial_warnings,
        )
        yield Archive(
            settings=settings,
            database=engine.url.render_as_string(hide_password=True),
            repository=repository,
            store=store,
            cache=cache,
            board=board,
            service=service,
            publisher=publisher,
            explorer=explorer,
        )
    finally:
        await store.close()
        try:
            # A driver connection left mid-query by a cancelled task can leave its close
            # waiting forever; shutdown must not.
            await asyncio.wait_for(engine.dispose(), settings.shutdown_timeout_seconds)
        except TimeoutError:
            logger.error("database connections did not close in time")


def live_broadcaster(archive: Archive, queue_size: int) -> Broadcaster:
    """This worker's broadcaster, wired to the archive's publisher: its subscribers hear this
    worker's snapshots at once, even with the store down, and each round computes the windows
    some worker's subscribers watch (graph.live.interest)."""
    broadcaster = Broadcaster(archive.service, archive.store, queue_size=queue_size)
    archive.publisher.on_snapshot(broadcaster.dispatch)
    archive.publisher.compute_only(broadcaster.interest.watched)
    broadcaster.recompute = archive.publisher.notify
    return broadcaster


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[AppState]:
    """A server's state: the archive, the live broadcaster and the feeds."""
    async with open_archive(settings) as archive:
        lock = advisory_lock(archive.repository.engine, POLLER_LOCK_ID)
        service, store = archive.service, archive.store
        broadcaster = live_broadcaster(archive, settings.subscriber_queue_size)
        async with open_feeds(settings, service, store, archive.board, lock) as feeds:
            yield AppState(
                settings=settings,
                database=archive.database,
                repository=archive.repository,
                store=store,
                cache=archive.cache,
                service=service,
                publisher=archive.publisher,
                broadcaster=broadcaster,
                feeds=feeds,
                explorer=archive.explorer,
            )
