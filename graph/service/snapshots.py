"""Window aggregates for the service: from the database, from the cache's per-country
``trends:`` entries, or for a sliding window a recent in-process snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from db.errors import StorageUnavailable
from db.repository import TrendRepository
from graph.cache.entry import Entry
from graph.cache.keys import trends_key, trends_roster_key
from graph.cache.response_cache import ResponseCache
from graph.core.aggregates import AggregateRow, AggregateTable, Columns, with_columns
from graph.core.errors import DependencyUnavailable
from graph.core.windows import Span, TimeWindow

__all__ = ["Snapshots", "decode_rows", "encode_rows"]


def encode_rows(rows: Sequence[AggregateRow]) -> bytes:
    """One country's aggregates as a cache payload (the country is in the key)."""
    return orjson.dumps(
        [
            [
                r.topic_key,
                r.label,
                r.count,
                r.weighted_confidence,
                r.first_seen,
                r.window_first_seen,
                r.previous_volume,
            ]
            for r in rows
        ]
    )


def decode_rows(country: str, payload: bytes) -> list[AggregateRow]:
    return [
        AggregateRow(
            country,
            key,
            label,
            n,
            w,
            datetime.fromisoformat(first),
            datetime.fromisoformat(window_first),
            previous,
        )
        for key, label, n, w, first, window_first, previous in orjson.loads(payload)
    ]


@dataclass(slots=True)
class _Snapshot:
    """The aggregates of a sliding window, computed at ``span.as_of`` under ``token``."""

    token: str
    span: Span
    made: float
    aggregates: Sequence[AggregateRow]


class Snapshots:
    """The aggregates of windows, read as cheaply as the cache allows."""

    def __init__(
        self, repository: TrendRepository, cache: ResponseCache, clock: Callable[[], datetime]
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.clock = clock
        self._sliding: dict[TimeWindow, _Snapshot] = {}

    async def from_database(self, span: Span) -> AggregateTable:
        try:
            columns = await self.repository.aggregate_window(
                span.previous_start, span.start, span.as_of
            )
        except StorageUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        table = AggregateTable(*columns)  # the lists themselves, not copies
        coded = columns.coded
        if coded is None:
            return table
        derived = Columns(
            coded.country,
            coded.countries,
            coded.topic,
            coded.topic_keys,
            columns.labels,
            coded.count,
            coded.weighted,
            coded.first_us,
            coded.window_first_us,
            coded.previous_volume,
        )
        return with_columns(table, derived)

    async def aggregates(self, span: Span, token: str | None = None) -> Sequence[AggregateRow]:
        """The window's per-country topic sums: from the cache's ``trends:`` entries when they
        were computed under the current token, else from the database (and stored, when the
        cache keeps answers for ``span.as_of``: graph.cache.bounds)."""
        if token is None or not self.cache.enabled or not self.cache.bounds.keeps(span.as_of):
            return await self.from_database(span)
        cached = await self._cached(span, token)
        if cached is not None:
            return cached
        aggregates = await self.from_database(span)
        by_country: dict[str, list[AggregateRow]] = {}
        for a in aggregates:
            by_country.setdefault(a.country, []).append(a)
        now, window = self.clock(), span.window.value
        writes = [
            (trends_key(c, span.as_of), window, Entry(token, span.as_of, now, encode_rows(rows)))
            for c, rows in by_country.items()
        ]
        roster = Entry(token, span.as_of, now, orjson.dumps(sorted(by_country)))
        writes.append((trends_roster_key(span.as_of), window, roster))
        await self.cache.write_many([(k, f, e.encode()) for k, f, e in writes])
        return aggregates

    async def _cached(self, span: Span, token: str) -> list[AggregateRow] | None:
        """Every country's entry when the roster and all of them carry ``token``."""
        window = span.window.value
        found = await self.cache.read_many([(trends_roster_key(span.as_of), window)])
        if found is None or found[0] is None:
            return None
        header = Entry.decode(found[0])
        if header.generation != token:
            return None
        countries: list[str] = orjson.loads(header.payload)
        values = await self.cache.read_many(
            [(trends_key(c, span.as_of), window) for c in countries]
        )
        if values is None or any(v is None for v in values):
            return None
        entries = [Entry.decode(v) for v in values if v is not None]
        if any(e.generation != token for e in entries):
            return None
        return [
            row
            for country, e in zip(countries, entries, strict=True)
            for row in decode_rows(country, e.payload)
        ]

    def fresh(self, window: TimeWindow, token: str) -> datetime | None:
        """The instant of the sliding window's current snapshot, when there is one computed
        under ``token`` within FLOWS_REFRESH_SECONDS (what :meth:`window` would answer from)."""
        snap = self._sliding.get(window)
        fresh = time.monotonic() - self.cache.refresh_seconds
        if self.cache.enabled and snap is not None and snap.token == token and snap.made > fresh:
            return snap.span.as_of
        return None

    async def window(
        self, window: TimeWindow, as_of: datetime | None, token: str
    ) -> tuple[Span, Sequence[AggregateRow]]:
        """A historical window's aggregates, or the current snapshot of a sliding one.

        A sliding window's aggregates are shared in-process by every answer computed under the
        same token within FLOWS_REFRESH_SECONDS (flows, hotspots, any threshold or filter).
        """
        if as_of is not None:
            span = Span(window, as_of)
            return span, await self.aggregates(span, token)
        snap = self._sliding.get(window)
        fresh = time.monotonic() - self.cache.refresh_seconds
        if self.cache.enabled and snap is not None and snap.token == token and snap.made > fresh:
            return snap.span, snap.aggregates
        span = Span(window, self.clock())
        aggregates = await self.from_database(span)
        self._sliding[window] = _Snapshot(token, span, time.monotonic(), aggregates)
        return span, aggregates
