"""What the lifespan makes and every request reads: settings, engine and service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from db import migrate
from db.engine import make_engine
from db.repository import TrendRepository
from graph.service import TrendService
from graph.settings import Settings


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    service: TrendService


def app_state(conn: HTTPConnection) -> AppState:
    """The state the lifespan handed to this request (HTTP or WebSocket)."""
    state = conn.state.trendmap
    assert isinstance(state, AppState)
    return state


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[AppState]:
    """Open the engine (migrating when AUTO_MIGRATE) and the service; close them after."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_timeout=settings.db_connect_timeout_seconds,
    )
    try:
        if settings.auto_migrate:
            await migrate.upgrade(engine)
        service = TrendService(
            TrendRepository(engine),
            halflife_hours=settings.heat_halflife_hours,
            max_flows=settings.max_flows,
            max_batch_records=settings.max_batch_records,
        )
        yield AppState(settings=settings, engine=engine, service=service)
    finally:
        await engine.dispose()
