"""The service: ingest, hotspots, flows and trend pages over the repository, core and cache.

REST, GraphQL, the CLI and the live publisher call these methods and nothing below them, so
every door answers the same. Storage outages become :class:`DependencyUnavailable` here.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from db.errors import StorageUnavailable
from db.repository import RecordLike, TrendRepository, UpsertResult
from graph.cache.entry import Entry
from graph.cache.keys import flows_key, hotspots_key
from graph.cache.lru import BoundedLRU
from graph.cache.response_cache import ResponseCache
from graph.core.aggregates import AggregateRow
from graph.core.errors import PayloadTooLarge
from graph.core.flows import DEFAULT_MIN_LAG_HOURS, HEAT_EPSILON, Flow, FlowStats, flows_and_stats
from graph.core.hotspots import compute_hotspots
from graph.core.records import Page, StoredRecord
from graph.core.windows import Span, TimeWindow
from graph.observability.tracing import span
from graph.service.answer import Answer
from graph.service.cursor import decode_cursor
from graph.service.offload import WINDOWS_AT_ONCE, maths
from graph.service.queries import FlowQuery, HotspotQuery, TrendQuery
from graph.service.snapshots import Snapshots
from graph.service.storage import storage

__all__ = ["Clock", "Ingested", "TrendService", "utcnow"]

Clock = Callable[[], datetime]
FailingCountries = Callable[[], Awaitable[frozenset[str]]]


def partial_data_warnings(
    failing: frozenset[str], countries: Collection[str] | None = None
) -> tuple[str, ...]:
    """``"Partial data: XX unavailable"`` for each failing country asked about (all of them
    with no filter), in code order."""
    if countries is not None:
        failing &= frozenset(countries)
    return tuple(f"Partial data: {code} unavailable" for code in sorted(failing))


def utcnow() -> datetime:
    return datetime.now(UTC)


class TrendService:
    """What trendmap does, independent of how it is asked."""

    def __init__(
        self,
        repository: TrendRepository,
        *,
        cache: ResponseCache,
        halflife_hours: float,
        max_flows: int,
        max_batch_records: int,
        min_lag_hours: float = DEFAULT_MIN_LAG_HOURS,
        clock: Clock = utcnow,
        unavailable: FailingCountries | None = None,
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.halflife_hours = halflife_hours
        # A median lag under this makes a pair simultaneous (FLOW_MIN_LAG_MINUTES / 60).
        self.min_lag_hours = min_lag_hours
        self.max_flows = max_flows
        self.max_batch_records = max_batch_records
        self.clock = clock
        self.snapshots = Snapshots(repository, cache, clock)
        # Passes over a window's pairs (flows_and_stats) by the instant asked for (None: now),
        # which the tests count.
        self.flow_passes: Counter[datetime | None] = Counter()
        # The flows last computed per window, instant, filter and generation (see _flows_of).
        self._computed: BoundedLRU[_ComputedKey, _Computed] = BoundedLRU(
            max_entries=_COMPUTED_ENTRIES, max_bytes=_COMPUTED_FLOWS * max_flows
        )
        # Windows computed at once (graph.service.offload.WINDOWS_AT_ONCE): with the maths off
        # the loop, windows read meanwhile would otherwise wait for it with their columns held.
        self._windows = asyncio.Semaphore(WINDOWS_AT_ONCE)
        self._listeners: list[Callable[[], None]] = []
        # Countries whose feed is failing (graph.feeds.poller's SourceBoard), for "partial data".
        self._unavailable = unavailable
        # Records stored through ingest, by outcome (graph.observability.metrics reads it).
        self.ingested = {"inserted": 0, "updated": 0, "unchanged": 0}

    async def partial_warnings(self, countries: Collection[str] | None) -> tuple[str, ...]:
        """``"Partial data: XX unavailable"`` for each country asked about (every country, with
        no filter) whose feed is failing right now."""
        if self._unavailable is None:
            return ()
        return partial_data_warnings(await self._unavailable(), countries)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every committed ingest that changed data."""
        self._listeners.append(listener)

    async def ingest(self, rows: Sequence[RecordLike]) -> Ingested:
        """Store a validated batch, all or nothing, and say which generation holds it."""
        if len(rows) > self.max_batch_records:
            raise PayloadTooLarge(
                f"a batch holds at most {self.max_batch_records} records, this one {len(rows)}:"
                " split it"
            )
        with span("trendmap.ingest", {"ingest.records": len(rows)}) as traced:
            async with storage():
                result = await self.repository.upsert(rows)
            traced.set("ingest.inserted", result.inserted)
            traced.set("ingest.updated", result.updated)
            traced.set("ingest.unchanged", result.unchanged)
        self.ingested["inserted"] += result.inserted
        self.ingested["updated"] += result.updated
        self.ingested["unchanged"] += result.unchanged
        if not (result.inserted or result.updated):
            return Ingested.of(result, await self.cache.next_generation())
        # Committed: raise the generation (every cached answer retired) before the client
        # hears back, so its next read, on any worker, sees what it wrote.
        generation = await self.cache.bump()
        for listener in self._listeners:
            listener()
        return Ingested.of(result, generation)

    async def hotspots(self, query: HotspotQuery, *, min_generation: int | None = None) -> Answer:
        async def compute(token: str) -> Entry:
            async with self._windows:
                span, aggregates = await self.snapshots.window(query.window, query.as_of, token)
                items = await maths(len(aggregates), compute_hotspots, aggregates)
            if query.countries is not None:
                wanted = set(query.countries)
                items = [h for h in items if h.country in wanted]
            if query.limit is not None:
                items = items[: query.limit]
            # The REST JSON is the core dataclasses, field by field (orjson writes them).
            return Entry(token, span.as_of, self.clock(), orjson.dumps(items), count=len(items))

        field = f"{_as_of_field(query.as_of)}|{query.limit}"
        key = hotspots_key(query.window.value, query.countries)
        return await self._answer(key, field, query, compute, min_generation)

    async def flows(self, query: FlowQuery, *, min_generation: int | None = None) -> Answer:
        """The flows asked for; with ``min_generation``, holding every write answered with a
        generation up to it (graph.cache.response_cache)."""
        filtered = await self._filtered(query, min_generation)
        if filtered is not None:
            return filtered

        async def compute(token: str) -> Entry:
            async with self._windows:
                span, aggregates = await self.snapshots.window(query.window, query.as_of, token)
                computed = await self._flows_of(query, token, span, aggregates)
            return self._flows_entry(query, token, span.as_of, computed)

        field = f"{_as_of_field(query.as_of)}|{query.threshold!r}|{query.limit}"
        key = flows_key(query.window.value, query.countries)
        return await self._answer(key, field, query, compute, min_generation)

    def _flows_entry(
        self,
        query: FlowQuery,
        token: str,
        as_of: datetime,
        computed: _Computed,
    ) -> Entry:
        """The flows of ``computed`` that reach the query's threshold, as a cache entry: the
        same one for every threshold and limit that cut the same flows from it (its payload
        the same bytes, which graph.graphql.identified knows by identity)."""
        items = computed.reaching(query.threshold)
        cap = query.limit if query.limit is not None else self.max_flows
        key = (token, as_of, len(items), min(cap, len(items)), query.limit is None)
        entry = computed.cuts.get(key)
        if entry is None:
            entry = self._cut(query, token, as_of, computed, items, cap)
            computed.cuts.put(key, entry, size=entry.count + 1)
        return entry

    def _cut(
        self,
        query: FlowQuery,
        token: str,
        as_of: datetime,
        computed: _Computed,
        items: list[Flow],
        cap: int,
    ) -> Entry:
        warnings: tuple[str, ...] = ()
        if len(items) > cap and query.limit is None:
            warnings = (
                f"truncated: {len(items)} flows reach the threshold, the first {cap} are"
                " shown; raise the threshold, filter countries or pass a limit",
            )
        items = items[:cap]
        return Entry(
            token,
            as_of,
            # When the flows were computed: every threshold filtered from them says the same
            # (and so has the same ETag however it was answered).
            computed.computed_at,
            orjson.dumps(items),
            warnings,
            count=len(items),
            metadata=stats_metadata(computed.stats),
        )

    async def _filtered(self, query: FlowQuery, min_generation: int | None) -> Answer | None:
        """The answer filtered from flows this worker computed at a lower threshold, without
        asking the store, while the local copy trusts the generation they were computed under
        (``CACHE_LOCAL_SECONDS``: the same rule as any other read served from memory); None
        when there are none (the usual way then: the cache, or a computation)."""
        token = self.cache.local_copy.trusted_token()
        if token is None or not token.isdigit() or not self.cache.enabled:
            return None
        if min_generation is not None and int(token) < min_generation:
            return None
        as_of = query.as_of
        if as_of is None:
            as_of = self.snapshots.fresh(query.window, token)
            if as_of is None:
                return None
        known = self._computed.get((query.window, as_of, query.countries, token))
        if not self._serves(known, query):
            return None
        assert known is not None
        self.cache.lookups["flows", True] += 1
        entry = self._flows_entry(query, token, as_of, known)
        return await self._answer_of(entry, query, hit=True)

    async def _flows_of(
        self, query: FlowQuery, token: str, span: Span, aggregates: Sequence[AggregateRow]
    ) -> _Computed:
        """Every flow reaching the threshold, and the window's stats.

        The pairs do not depend on the threshold, only which of them are shown: the flows
        computed at a threshold hold those of every higher one (heat >= threshold, in the same
        order), and the stats are the same whatever it is. So one computation of a window's
        aggregates (the same instant, the same filter, under the same generation) serves every
        threshold at or above its own by filtering its list: a new threshold is not a new pass
        over the window (DESIGN.md's flows key has none). Only under a label that changes with
        the data: a generation, or the in-process label when there is no shared store (every
        write is this process's). Not while the store cannot answer (another worker's writes
        would not change the label), nor with the cache off.
        """
        key = (query.window, span.as_of, query.countries, token)
        shared = self.cache.enabled and (token.isdigit() or self.cache.store is None)
        known = self._computed.get(key) if shared else None
        if self._serves(known, query):
            assert known is not None
            return known
        self.flow_passes[query.as_of] += 1
        items, stats = await maths(
            len(aggregates),
            flows_and_stats,
            aggregates,
            threshold=query.threshold,
            halflife_hours=self.halflife_hours,
            min_lag_hours=self.min_lag_hours,
            countries=query.countries,
        )
        computed = _Computed(query.threshold, items, stats, self.clock())
        if shared:
            # Sized by its flows: a very low threshold's list is kept only while it fits.
            self._computed.put(key, computed, size=len(items) + 1)
        return computed

    def _serves(self, known: _Computed | None, query: FlowQuery) -> bool:
        """Whether ``known`` holds the query's flows: computed at its threshold or a lower one
        and, for a window ending "now", younger than FLOWS_REFRESH_SECONDS (by the cache's
        clock, as its own entries age)."""
        if known is None or known.threshold > query.threshold:
            return False
        if query.as_of is None:
            age = (self.cache.clock() - known.computed_at).total_seconds()
            return age < self.cache.refresh_seconds
        return True

    async def _answer(
        self,
        key: str,
        field: str,
        query: FlowQuery | HotspotQuery,
        compute: Callable[[str], Any],
        min_generation: int | None,
    ) -> Answer:
        entry, hit = await self.cache.get_or_compute(
            key,
            field,
            sliding=query.as_of is None,
            compute=compute,
            # An as_of off the cache's resolution is answered exactly but not kept.
            keep=self.cache.bounds.keeps(query.as_of),
            min_generation=min_generation,
        )
        return await self._answer_of(entry, query, hit=hit)

    async def _answer_of(
        self, entry: Entry, query: FlowQuery | HotspotQuery, *, hit: bool
    ) -> Answer:
        return Answer(
            payload=entry.payload,
            count=entry.count,
            span=Span(query.window, entry.as_of),
            computed_at=entry.computed_at,
            cache_hit=hit,
            warnings=entry.warnings + await self.partial_warnings(query.countries),
            metadata=entry.metadata,
            generation=entry.generation,
        )

    async def trends(self, query: TrendQuery) -> Page:
        after = decode_cursor(query.after) if query.after is not None else None
        async with storage():
            rows = await self.repository.page(query.where, first=query.first, after=after)
        return Page([StoredRecord(*row) for row in rows.rows], rows.has_next, rows.total_count)

    async def database_ready(self) -> bool:
        try:
            await self.repository.ping()
        except StorageUnavailable:
            return False
        return True


# At most this many computations, holding at most this many times MAX_FLOWS flows together.
_COMPUTED_ENTRIES = 32
_COMPUTED_FLOWS = 4
# The cache entries cut from one computation: at most this many, holding at most twice its
# flows together (encoded), so that the cuts never hold more than the computations do twice.
_CUTS = 16
_CUTS_FLOWS = 2
_ComputedKey = tuple[TimeWindow, datetime, tuple[str, ...] | None, str]


@dataclass(frozen=True, slots=True)
class _Computed:
    """A window's flows computed at ``threshold`` (heat descending), and their stats."""

    threshold: float
    flows: list[Flow]
    stats: FlowStats
    computed_at: datetime
    # The flows' heats negated, ascending: where a higher threshold cuts the list.
    _heats: list[float] = field(init=False, repr=False, compare=False)
    # The cache entries cut from it so far (TrendService._flows_entry), sized by their flows.
    cuts: BoundedLRU[tuple[str, datetime, int, int, bool], Entry] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_heats", [-flow.heat for flow in self.flows])
        bound = _CUTS_FLOWS * (len(self.flows) + 1)
        object.__setattr__(self, "cuts", BoundedLRU(max_entries=_CUTS, max_bytes=bound))

    def reaching(self, threshold: float) -> list[Flow]:
        """The flows whose heat reaches ``threshold`` (at least this computation's own)."""
        if threshold <= self.threshold:
            return self.flows
        return self.flows[: bisect_right(self._heats, HEAT_EPSILON - threshold)]


@dataclass(frozen=True, slots=True)
class Ingested:
    """What a batch did, and the generation a read asks for (``min_generation``) to see it:
    None when the cache's store could not count it (see graph.cache.response_cache)."""

    inserted: int
    updated: int
    unchanged: int
    generation: int | None

    @classmethod
    def of(cls, result: UpsertResult, generation: int | None) -> Ingested:
        return cls(result.inserted, result.updated, result.unchanged, generation)


def stats_metadata(stats: FlowStats) -> dict[str, Any]:
    """A flows answer's ``max_heat`` (``{heat, from_country, to_country}``, or None when no
    two countries share a topic) and ``pairs``, as REST's metadata says them."""
    hottest = None
    if stats.max_heat is not None:
        hottest = {
            "heat": stats.max_heat,
            "from_country": stats.from_country,
            "to_country": stats.to_country,
        }
    return {"max_heat": hottest, "pairs": stats.pairs}


def _as_of_field(as_of: datetime | None) -> str:
    return "now" if as_of is None else as_of.isoformat()
