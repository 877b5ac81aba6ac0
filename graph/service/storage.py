"""storage(): a database call whose outage is a 503 for the client (same message as db's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from db.errors import StorageUnavailable
from graph.core.errors import DependencyUnavailable

__all__ = ["storage"]


@asynccontextmanager
async def storage() -> AsyncIterator[None]:
    """Run database calls; ``StorageUnavailable`` comes out as ``DependencyUnavailable``."""
    try:
        yield
    except StorageUnavailable as exc:
        raise DependencyUnavailable(str(exc)) from exc
