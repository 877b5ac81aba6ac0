"""The publisher: after committed ingests, each window's flows to this worker and to the others.

The worker that ingested recomputes every window's flows once, through the cache (one
computation serves all workers), hands each snapshot to its own broadcaster at once, and sends a
window's snapshot on the store's channel when it changed. Redis pub/sub carries it to every
other worker on every host; the in-process store does the same in one process. A burst of
ingests makes one round; while they stream in (a bulk load), rounds are spaced out to take at
most a quarter of the worker, and the stream's end makes one more (see _STREAM_REST_RATIO).

While the store is down, this worker's subscribers are served all the same; the latest snapshot
of each window waits and is sent when the store answers again (retried from 0.1 s, doubling up
to 2 s). It is also kept in the store, under :func:`snapshot_key`, before it is sent: a worker
whose subscription was down when it went out reads it there when it resubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import orjson

from graph.cache.keys import TTL_SECONDS
from graph.core.errors import DependencyUnavailable
from graph.core.windows import TimeWindow
from graph.observability.log import logger
from graph.observability.sentry import report_exception
from graph.observability.tracing import span
from graph.service.answer import Answer
from graph.service.queries import FlowQuery
from graph.service.trend_service import TrendService
from graph.stores import Store, StoreUnavailable

CHANNEL = "trendmap:flows"
_DEBOUNCE_SECONDS = 0.02
# While ingests stream in (a bulk load), a round is followed by a rest of three times as long
# as the round took, so recomputing every window takes at most a quarter of the worker however
# big the windows are; small windows make short rounds and so short rests, and subscribers hear
# of new data within moments. The rest ends early once no ingest has committed for
# _QUIET_SECONDS (the stream is over), and never lasts more than _MAX_REST_SECONDS: during a
# stream, subscribers wait at most that plus one round.
_STREAM_REST_RATIO = 3.0
_QUIET_SECONDS = 0.5
_MAX_REST_SECONDS = 10.0
_RETRY_FIRST_SECONDS = 0.1
_RETRY_MAX_SECONDS = 2.0
# Held for one read, one set and one publish, each bounded by the store's socket timeout.
_LOCK_SECONDS = 2.0


def snapshot_key(window: TimeWindow) -> str:
    return f"flowstate:{window.value}"


def snapshot_message(window: TimeWindow, answer: Answer) -> bytes:
    """A snapshot as it travels: a JSON header (window, as_of), a newline, the flows' JSON."""
    header = orjson.dumps({"window": window.value, "as_of": answer.span.as_of.isoformat()})
    return header + b"\n" + answer.payload


def snapshot_as_of(message: bytes) -> datetime:
    """The instant a snapshot is for; ValueError for a message that is not one."""
    try:
        return datetime.fromisoformat(orjson.loads(message.partition(b"\n")[0])["as_of"])
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError("not a flows snapshot") from exc


def _supersedes(message: bytes, kept: bytes) -> bool:
    """Whether ``message`` is newer than ``kept`` and holds other flows."""
    try:
        older = snapshot_as_of(kept) < snapshot_as_of(message)
    except ValueError:
        return True  # not a snapshot of this version: replace it
    return older and message.partition(b"\n")[2] != kept.partition(b"\n")[2]


class Publisher:
    """Recompute each window's flows after committed ingests; deliver and send them."""

    def __init__(self, service: TrendService, store: Store) -> None:
        self.service = service
        self.store = store
        self._dirty = asyncio.Event()
        self._notified_at = 0.0  # the last notify (monotonic)
        # Time spent in rounds, in all and the longest (the tests bound their share).
        self.round_seconds = 0.0
        self.longest_round = 0.0
        self._listeners: list[Callable[[bytes], None]] = []
        # Which windows a round computes, in order (graph.live.interest); None: all of them.
        self._windows: Callable[[], Awaitable[Sequence[TimeWindow]]] | None = None
        # The flows this worker's own listeners were last handed, per window.
        self._delivered: dict[TimeWindow, bytes] = {}
        # The latest snapshot of each window the store has not taken yet.
        self._unsent: dict[TimeWindow, bytes] = {}
        self._retry_at = 0.0  # no store call before this (monotonic), after a failure
        self._retry_delay = _RETRY_FIRST_SECONDS
        self._failing = False  # the store refused the last attempt (logged once)

    def on_snapshot(self, listener: Callable[[bytes], None]) -> None:
        """Hand ``listener`` (this worker's broadcaster) every new snapshot, before the store."""
        self._listeners.append(listener)

    def compute_only(self, windows: Callable[[], Awaitable[Sequence[TimeWindow]]]) -> None:
        """Each round, compute the windows ``windows()`` names, in its order: those some
        worker's subscribers watch, this worker's first (graph.live.interest.Interest.watched).
        """
        self._windows = windows

    def notify(self) -> None:
        """An ingest committed new data (called synchronously after the commit)."""
        self._notified_at = time.monotonic()
        self._dirty.set()

    @property
    def pending(self) -> bool:
        """Whether data changed since the last round."""
        return self._dirty.is_set()

    @property
    def unsent(self) -> int:
        """Windows whose latest snapshot waits for the store to answer."""
        return len(self._unsent)

    async def run(self) -> None:
        """Publish until cancelled; ingests that arrive during a round make one more round."""
        while True:
            await self._next_event()
            if not self._dirty.is_set():
                await self.send()  # a retry: the store was down
                continue
            await asyncio.sleep(_DEBOUNCE_SECONDS)  # coalesce a burst
            started = time.monotonic()
            with span("live.publish"):  # a round: every window's flows, computed and sent
                await self.publish_all()
            took = time.monotonic() - started
            self.round_seconds += took
            self.longest_round = max(self.longest_round, took)
            if self._dirty.is_set():
                # Ingests kept coming during the round: a stream, such as a bulk load, whose
                # every commit would otherwise start another round over whole windows. A lone
                # ingest is still published at once.
                await self._rest(min(took * _STREAM_REST_RATIO, _MAX_REST_SECONDS))

    async def _rest(self, seconds: float) -> None:
        """Wait ``seconds``, or less once ingests have stopped for ``_QUIET_SECONDS``."""
        until = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            quiet_from = self._notified_at + _QUIET_SECONDS
            if now >= until or now >= quiet_from:
                return
            await asyncio.sleep(min(until, quiet_from) - now)

    async def _next_event(self) -> None:
        """Until data changes, or, with snapshots unsent, until the next retry is due."""
        if not self._unsent:
            await self._dirty.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._dirty.wait(), self._retry_at - time.monotonic())

    async def publish_all(self) -> None:
        """One round: every window some subscriber watches (:meth:`compute_only`; every window
        without it). Cleared first, so an ingest during the round makes another."""
        self._dirty.clear()
        for window in await self._round_windows():
            try:
                await self.publish(window)
            except DependencyUnavailable as exc:
                logger.warning("flows not published", time_window=window.value, reason=exc.detail)
            except Exception as exc:
                logger.exception("publishing flows failed", time_window=window.value)
                report_exception(exc, task="publisher", time_window=window.value)
        if time.monotonic() >= self._retry_at:
            # While the store is down, rounds leave sending to the retries: each attempt
            # can cost a timeout, and this worker's subscribers are served already.
            await self.send()

    async def _round_windows(self) -> Sequence[TimeWindow]:
        if self._windows is None:
            return list(TimeWindow)
        try:
            return await self._windows()
        except Exception as exc:  # a bug: every window, as without interest
            logger.exception("live interest not read")
            report_exception(exc, task="publisher")
            return list(TimeWindow)

    async def publish(self, window: TimeWindow) -> None:
        """Compute the window's flows, hand them to this worker's listeners if they changed, and
        keep them to send (:meth:`send`)."""
        answer = await self.service.flows(FlowQuery(window, None, 0.0, None, None))
        message = snapshot_message(window, answer)
        self._unsent[window] = message
        if self._delivered.get(window) == answer.payload:
            return
        self._delivered[window] = answer.payload
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:
                logger.exception("delivering flows failed", time_window=window.value)

    async def send(self) -> None:
        """Send each unsent snapshot newer than the one kept in the store; on failure, keep them
        for a retry (one warning per outage, one info line when they went)."""
        if not self._unsent:
            return
        settled = 0  # windows sent, or found sent already
        windows = list(self._unsent)
        try:
            # Most rounds change few windows: one round trip finds them, the rest is skipped.
            kept = await self.store.read([(snapshot_key(w), None) for w in windows])
            for window, previous in zip(windows, kept, strict=True):
                message = self._unsent[window]
                changed = previous is None or _supersedes(message, previous)
                if changed and not await self._send(window, message):
                    break  # another worker is sending this window: soon again
                # A round during these awaits may have put a newer one in its place.
                if self._unsent.get(window) is message:
                    del self._unsent[window]
                settled += 1
        except StoreUnavailable as exc:
            if not self._failing:
                self._failing = True
                logger.warning("live flows not sent to other workers; will retry", reason=str(exc))
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX_SECONDS)
            return
        if self._failing:
            self._failing = False
            logger.info("live flows sent to other workers again", windows=settled)
        self._retry_delay = _RETRY_FIRST_SECONDS
        self._retry_at = time.monotonic() + self._retry_delay if self._unsent else 0.0

    async def _send(self, window: TimeWindow, message: bytes) -> bool:
        """Keep ``message`` in the store and publish it, unless the kept one is as new; False
        when another worker holds the window's lock."""
        key = snapshot_key(window)
        # Read, compare and set under a lock, so that the kept snapshot only ever moves forward:
        # a worker that catches up from it must find the newest one sent.
        token = await self.store.acquire(f"lock:{key}", _LOCK_SECONDS)
        if token is None:
            return False
        try:
            [kept] = await self.store.read([(key, None)])
            if kept is not None and not _supersedes(message, kept):
                return True  # as new, or the same flows: every worker has them
            # Kept first, then sent: a worker that resubscribes in between reads it.
            await self.store.set(key, message, TTL_SECONDS)
            await self.store.publish(CHANNEL, message)
        finally:
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(f"lock:{key}", token)
        return True
