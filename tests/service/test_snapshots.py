"""The per-country aggregate codec of the ``trends:`` cache entries."""

from __future__ import annotations

import asyncio
from dataclasses import astuple
from datetime import UTC, datetime, timedelta

import numpy as np

from db import migrate
from db.engine import make_engine
from db.repository import TrendRepository
from graph.cache.response_cache import ResponseCache
from graph.core.aggregates import AggregateRow, AggregateTable, Columns, columns
from graph.core.records import Record
from graph.core.windows import Span, TimeWindow
from graph.service.snapshots import Snapshots, decode_rows, encode_rows
from graph.stores.memory import MemoryStore
from tests.support.servers import empty_archive

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_countrys_aggregates_round_trip() -> None:
    rows = [
        AggregateRow("US", "storm", "Storm", 3, 2.7, T0 - timedelta(hours=20), T0, 41),
        AggregateRow("US", "a\x01b", "A\x01B", 1, 0.5, T0, T0 + timedelta(microseconds=7), 41),
    ]
    assert decode_rows("US", encode_rows(rows)) == rows


def test_the_rollups_arrays_are_what_the_maths_would_derive(postgres_url: str) -> None:
    """A window from the rollup carries its arrays already (db.rollup's codes): they equal,
    codes included, what graph.core.aggregates derives from the lists. Topics first appear
    out of their names' order (b, z, a), and series ids run against it."""
    rows = [
        ("DE", "z"),
        ("BR", "a"),
        ("BR", "z"),
        ("AR", "b"),
        ("AR", "z"),
        ("DE", "b"),
    ]
    records = [
        Record(T0 + timedelta(minutes=7 * i), c, k.upper(), k, i + 1, 0.5, None)
        for i, (c, k) in enumerate(rows)
    ]

    async def main() -> tuple[Columns, Columns]:
        await empty_archive(postgres_url)  # the session's database: other tests' records
        engine = make_engine(postgres_url)
        try:
            await migrate.upgrade(engine)
            repository = TrendRepository(engine)
            for record in records:
                await repository.upsert([record])
            clock = lambda: T0 + timedelta(hours=2)  # noqa: E731
            snapshots = Snapshots(
                repository, ResponseCache(MemoryStore(), refresh_seconds=30), clock
            )
            table = await snapshots.from_database(Span(TimeWindow.H24, clock()))
            given = columns(table)
            derived = columns(AggregateTable(*(list(column) for column in astuple(table)[:8])))
            return given, derived
        finally:
            await engine.dispose()

    given, derived = asyncio.run(main())
    assert given.keys == ["b", "z", "a"] and given.names == ["AR", "BR", "DE"]
    for name in Columns.__slots__:
        a, b = getattr(given, name), getattr(derived, name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, name
