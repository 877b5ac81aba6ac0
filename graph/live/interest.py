"""Interest: which windows live subscribers watch, on every worker, so that a publisher computes
the flows of those windows only.

After every committed ingest, a publisher used to recompute all four windows' flows, whoever
watched them: during a bulk load with no subscriber anywhere, those rounds took the ingesting
worker's time and PostgreSQL's (scenario d: 21,970 new records/s with them, 37,454 without);
with a live map on the 24 h window, three of the four windows were computed for nobody.

Every worker keeps an entry in one hash of the store, :data:`KEY`: its id, and the windows its
subscriptions are for until a moment INTEREST_SECONDS ahead (wall clock: the hosts' clocks
agree, as the broadcaster already needs). It writes the entry when its subscription to the
flows channel begins (and each time it begins again), before a subscription for a window it
did not watch yet looks up the flows hot as it begins, and every RENEW_SECONDS. A round
(:meth:`Interest.watched`) computes this worker's windows first, then those another worker's
entry names, and no other.

Unless the publisher is in doubt, when it computes every window, as before:

- the store did not answer, for INTEREST_SECONDS after it last failed (an entry written
  meanwhile may not have been read);
- an entry it read before is gone before its time (the store restarted and lost the hash):
  until the worker writes it again or its time is up.

A worker that stops (or dies) is forgotten when its entry's time is up. One cut off from the
store for longer than that had its windows left out of the other workers' rounds: when its
subscription to the channel begins again, it writes its entry and makes a round of its own,
which hands its subscribers the current flows (graph.live.broadcaster's catch-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Collection

import orjson

from graph.core.windows import TimeWindow
from graph.stores import Store, StoreUnavailable

KEY = "live:interest"
INTEREST_SECONDS = 30
RENEW_SECONDS = INTEREST_SECONDS / 3


class Interest:
    """This worker's entry in the store, and what every worker's entries say."""

    def __init__(
        self,
        store: Store,
        local: Callable[[], Collection[TimeWindow]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.id = uuid.uuid4().hex
        self._local = local
        self._clock = clock
        # What this worker's entry says, once written.
        self._announced: frozenset[TimeWindow] | None = None
        self._announcing: asyncio.Future[None] | None = None
        # Other workers' entries as last read: until when each holds.
        self._seen: dict[str, float] = {}
        self._doubt_until = 0.0
        self.writes = 0  # of this worker's entry

    async def announce(self) -> None:
        """Write this worker's entry: the windows it watches now. A store that cannot answer
        leaves it as it was (the renewal writes it again)."""
        windows = frozenset(self._local())
        until = self._clock() + INTEREST_SECONDS
        entry = {"windows": sorted(w.value for w in windows), "until": until}
        with contextlib.suppress(StoreUnavailable):
            await self.store.write([(KEY, self.id, orjson.dumps(entry))], INTEREST_SECONDS)
            self._announced = windows
            self.writes += 1

    async def watch(self, window: TimeWindow) -> None:
        """Make sure this worker's entry names ``window`` (one of its subscriptions is for it
        now), before that subscription looks up the flows hot as it begins. Subscriptions
        joining at once share one write."""
        while self._announced is None or window not in self._announced:
            # One begun before ``window`` was this worker's may not name it: then another.
            begun_here = self._announcing is None
            if begun_here:
                self._announcing = asyncio.ensure_future(self.announce())
                self._announcing.add_done_callback(self._announced_now)
            assert self._announcing is not None
            await asyncio.shield(self._announcing)
            if begun_here and (self._announced is None or window not in self._announced):
                return  # the store did not answer: the entry is written at the next renewal

    def _announced_now(self, done: asyncio.Future[None]) -> None:
        if self._announcing is done:
            self._announcing = None

    async def watched(self) -> list[TimeWindow]:
        """The windows a round computes: this worker's first, then the others' (in the enum's
        order each); every window while in doubt."""
        local = set(self._local())
        now = self._clock()
        try:
            entries = await self.store.read_all(KEY)
        except StoreUnavailable:
            self._doubt_until = now + INTEREST_SECONDS
            entries = None
        remote: set[TimeWindow] = set()
        present: dict[str, float] = {}
        for worker, raw in (entries or {}).items():
            if worker == self.id:
                continue  # this worker's windows are what it watches now, not what it wrote
            try:
                entry = orjson.loads(raw)
                until = float(entry["until"])
                windows = {TimeWindow(value) for value in entry["windows"]}
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self._doubt_until = now + INTEREST_SECONDS  # not an entry of this version
                continue
            if until > now:
                present[worker] = until
                remote |= windows
        gone = any(until > now and worker not in present for worker, until in self._seen.items())
        self._seen = {w: u for w, u in self._seen.items() if u > now and w not in present}
        self._seen.update(present)
        if entries is None or gone or now < self._doubt_until:
            remote = set(TimeWindow)
        return [w for w in TimeWindow if w in local] + [
            w for w in TimeWindow if w in remote and w not in local
        ]

    async def run(self) -> None:
        """Renew this worker's entry until cancelled."""
        while True:
            await self.announce()
            await asyncio.sleep(RENEW_SECONDS)
