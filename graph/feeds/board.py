"""The source board: what the leading poller last published about the feeds, for every worker.

The leader writes its status document to the store (``trendmap:sources``); every worker reads it
for ``/health/ready`` and for the ``"Partial data: XX unavailable"`` warnings. Without Redis,
only the polling process knows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from graph.settings import Settings
from graph.stores import Store, StoreUnavailable

__all__ = ["STATUS_KEY", "STATUS_READ_SECONDS", "SourceBoard", "make_board"]

STATUS_KEY = "trendmap:sources"
# How long /health and the warnings trust what they last read from the store.
STATUS_READ_SECONDS = 1.0


class SourceBoard:
    """Publishes and reads the feeds' status document.

    ``read`` asks the store at most once per STATUS_READ_SECONDS. While this process leads
    (:meth:`lead`), its own live view wins: it works with the store down, and answers asking
    ``failing_countries`` read the breakers directly rather than a whole document.
    """

    def __init__(self, store: Store, *, ttl_seconds: float, polling: bool = True) -> None:
        self.store = store
        self.ttl_seconds = max(1.0, ttl_seconds)
        # Nothing polled anywhere (SOURCES empty): no answer can be partial.
        self.polling = polling
        self._document: Callable[[], dict[str, Any]] | None = None
        self._failing: Callable[[], frozenset[str]] | None = None
        self._read: dict[str, Any] | None = None
        self._read_at = -float("inf")

    @property
    def leading(self) -> bool:
        """Whether this process's poller holds the lease."""
        return self._document is not None

    def lead(
        self, document: Callable[[], dict[str, Any]], failing: Callable[[], frozenset[str]]
    ) -> None:
        """This process leads: read its live status through these instead of the store."""
        self._document, self._failing = document, failing

    def follow(self) -> None:
        """This process no longer leads: read what the leader publishes."""
        self._document = self._failing = None

    async def publish(self, document: dict[str, Any]) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.store.set(STATUS_KEY, orjson.dumps(document), self.ttl_seconds)

    async def read(self) -> dict[str, Any] | None:
        if self._document is not None:
            return self._document()
        now = time.monotonic()
        if now - self._read_at >= STATUS_READ_SECONDS:
            self._read_at = now
            try:
                (raw,) = await self.store.read([(STATUS_KEY, None)])
            except StoreUnavailable:
                raw = None
            self._read = orjson.loads(raw) if raw is not None else None
        return self._read

    def failing_now(self) -> frozenset[str] | None:
        """What :meth:`failing_countries` would answer, when it is known without asking the
        store (None when a read of the store is due): for a hot path that must not wait."""
        if not self.polling:
            return frozenset()
        if self._failing is not None:
            return self._failing()
        if time.monotonic() - self._read_at >= STATUS_READ_SECONDS:
            return None
        return frozenset(self._read.get("failing", ())) if self._read is not None else frozenset()

    async def failing_countries(self) -> frozenset[str]:
        if not self.polling:
            return frozenset()
        if self._failing is not None:
            return self._failing()
        document = await self.read()
        if document is None:
            return frozenset()
        return frozenset(document.get("failing", ()))


def make_board(settings: Settings, store: Store) -> SourceBoard:
    """The board, kept a few lease periods: a leader that died stops being believed."""
    ttl = 3 * max(settings.poll_interval_seconds, settings.poll_lock_ttl_seconds)
    return SourceBoard(store, ttl_seconds=ttl, polling=bool(settings.sources))
