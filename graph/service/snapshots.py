"""Window aggregates for the service: from the database, from the cache's per-country
``trends:`` entries, or for a sliding window a recent in-process snapshot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from db.errors import StorageUnavailable
from db.repository import TrendRepository
from graph.cache.entry import Entry
from graph.cache.keys import trends_key, trends_roster_key
from graph.cache.response_cache import ResponseCache
from graph.cache.single_flight import SingleFlight
from graph.core.aggregates import AggregateRow, AggregateTable, Columns, with_columns
from graph.core.errors import DependencyUnavailable
from graph.core.windows import Span, TimeWindow
from graph.service.offload import maths

__all__ = ["Snapshots", "by_country", "decode_rows", "encode_rows"]

# Historical windows a worker keeps the aggregates of (each as large as its window).
_RECENT_WINDOWS = 2


# A country's aggregates in its ``trends:`` entry: its rows column by column (the country is in
# the key), first sightings in microseconds since the epoch. Made and read without an object
# per row: a window of a million records is some 260,000 rows.
_FORMAT = 2
_COLUMNS = (
    "topic_keys",
    "labels",
    "counts",
    "weighted_confidences",
    "first_seen_us",
    "window_first_seen_us",
    "previous_volumes",
)


def by_country(table: AggregateTable) -> dict[str, list[int] | slice]:
    """Where each country's rows are in ``table``: one slice each when its rows are together
    (the database's order), else their indices."""
    runs: dict[str, list[int] | slice] = {}
    countries = table.countries
    start = 0
    for end in range(1, len(countries) + 1):
        if end < len(countries) and countries[end] == countries[start]:
            continue
        if countries[start] in runs:  # a country in two places: by index, then
            indices: dict[str, list[int]] = {}
            for i, country in enumerate(countries):
                indices.setdefault(country, []).append(i)
            return dict(indices)
        runs[countries[start]] = slice(start, end)
        start = end
    return runs


def encode_rows(table: AggregateTable, rows: list[int] | slice) -> bytes:
    """The rows ``rows`` of ``table`` (one country's) as a cache payload."""
    picked: dict[str, Any] = {"format": _FORMAT}
    for name in _COLUMNS:
        column = getattr(table, name)
        picked[name] = column[rows] if isinstance(rows, slice) else [column[i] for i in rows]
    return orjson.dumps(picked)


def _payloads(table: AggregateTable) -> list[tuple[str, bytes]]:
    """Each country's payload, in the order countries first appear in ``table``."""
    return [(country, encode_rows(table, rows)) for country, rows in by_country(table).items()]


def decode_rows(entries: Sequence[tuple[str, bytes]]) -> AggregateTable | None:
    """The table of every country's payload, in order; None when one is not in this format
    (an entry an older version wrote, or junk): the window is then read from the database."""
    table = AggregateTable()
    for country, payload in entries:
        try:
            decoded = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(decoded, dict) or decoded.get("format") != _FORMAT:
            return None
        found = [decoded.get(name) for name in _COLUMNS]
        n = len(decoded["topic_keys"]) if isinstance(decoded.get("topic_keys"), list) else -1
        if any(not isinstance(column, list) or len(column) != n for column in found):
            return None
        table.countries.extend([country] * n)
        for name in _COLUMNS:
            getattr(table, name).extend(decoded[name])
    return table


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
        # The historical windows read last, by (window, as_of, token), oldest first: the map
        # asks for a window's flows and its hotspots one after the other.
        self._recent: dict[tuple[TimeWindow, datetime, str], AggregateTable] = {}
        # Reads under way, by window (and instant) and token: the map asks for a window's
        # hotspots, flows and stats in one query, whose resolvers run at once, and they share
        # one read.
        self._reading_now: SingleFlight[
            tuple[TimeWindow, str], tuple[Span, Sequence[AggregateRow]]
        ] = SingleFlight("window reads")
        self._reading_at: SingleFlight[tuple[TimeWindow, datetime, str], AggregateTable] = (
            SingleFlight("window reads")
        )

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
        """The window's per-country topic sums: those this worker read last under the current
        token, or the cache's ``trends:`` entries when they were computed under it, else from
        the database (and stored, when the cache keeps answers for ``span.as_of``:
        graph.cache.bounds)."""
        if token is None or not self.cache.enabled or not self.cache.bounds.keeps(span.as_of):
            return await self.from_database(span)
        key = (span.window, span.as_of, token)
        table = self._recent.pop(key, None)  # put back last: the most recently used
        if table is None:
            table = await self._reading_at.run(key, lambda: self._read_at(span, token))
        self._recent[key] = table
        while len(self._recent) > _RECENT_WINDOWS:
            del self._recent[next(iter(self._recent))]
        return table

    async def _read_at(self, span: Span, token: str) -> AggregateTable:
        """The historical window from the cache's entries, else from the database (then
        stored)."""
        table = await self._cached(span, token)
        if table is None:
            table = await self.from_database(span)
            await self._store(span, token, table)
        return table

    async def _store(self, span: Span, token: str, table: AggregateTable) -> None:
        """The window's ``trends:`` entries and their roster."""
        payloads = await maths(len(table), _payloads, table)
        now, window = self.clock(), span.window.value
        writes = [
            (trends_key(c, span.as_of), window, Entry(token, span.as_of, now, payload))
            for c, payload in payloads
        ]
        roster = Entry(token, span.as_of, now, orjson.dumps([c for c, _ in payloads]))
        writes.append((trends_roster_key(span.as_of), window, roster))
        await self.cache.write_many([(k, f, e.encode()) for k, f, e in writes])

    async def _cached(self, span: Span, token: str) -> AggregateTable | None:
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
        payloads = [(c, e.payload) for c, e in zip(countries, entries, strict=True)]
        # About 60 bytes a row: the maths thread's measure is rows.
        rows = sum(len(p) for _, p in payloads) // 60
        return await maths(rows, decode_rows, payloads)

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
        return await self._reading_now.run((window, token), lambda: self._read_now(window, token))

    async def _read_now(
        self, window: TimeWindow, token: str
    ) -> tuple[Span, Sequence[AggregateRow]]:
        span = Span(window, self.clock())
        aggregates = await self.from_database(span)
        self._sliding[window] = _Snapshot(token, span, time.monotonic(), aggregates)
        return span, aggregates

    async def drain(self, seconds: float) -> None:
        """At shutdown, before the database is closed: the reads still running (their readers
        may have gone) finish, or are cancelled after ``seconds``."""
        await asyncio.gather(self._reading_now.drain(seconds), self._reading_at.drain(seconds))
