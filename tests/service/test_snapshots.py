"""The per-country aggregate codec of the ``trends:`` cache entries."""

from __future__ import annotations

import asyncio
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from db import migrate
from db.engine import make_engine
from db.repository import TrendRepository
from graph.cache.response_cache import ResponseCache
from graph.core.aggregates import AggregateRow, AggregateTable, Columns, columns
from graph.core.records import Record
from graph.core.windows import Span, TimeWindow
from graph.service.snapshots import Snapshots, by_country, decode_rows, encode_rows
from graph.stores.memory import MemoryStore
from tests.support.locks import every_table_locked
from tests.support.servers import empty_archive

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_windows_aggregates_round_trip_country_by_country() -> None:
    rows = [
        AggregateRow("US", "storm", "Storm", 3, 2.7, T0 - timedelta(hours=20), T0, 41),
        AggregateRow("BR", "gol", "Gol", 9, 8.1, T0, T0, 9),
        AggregateRow("US", "a\x01b", "A\x01B", 1, 0.5, T0, T0 + timedelta(microseconds=7), 41),
    ]
    for table in (
        AggregateTable.from_rows(rows),  # a country in two places
        AggregateTable.from_rows(sorted(rows, key=lambda r: r.country)),  # as the database
    ):
        places = by_country(table)
        assert sorted(places) == ["BR", "US"]
        entries = [(c, encode_rows(table, at)) for c, at in places.items()]
        decoded = decode_rows(entries)
        assert decoded is not None
        assert sorted(decoded, key=astuple) == sorted(rows, key=astuple)


def test_an_entry_in_another_format_is_a_miss() -> None:
    """One an older version wrote (a list of rows): the window is read from the database."""
    table = AggregateTable.from_rows(
        [AggregateRow("US", "storm", "Storm", 3, 2.7, T0 - timedelta(hours=20), T0, 41)]
    )
    fine = ("US", encode_rows(table, slice(0, 1)))
    assert decode_rows([fine]) is not None
    older = ("BR", orjson.dumps([["gol", "Gol", 9, 8.1, T0.isoformat(), T0.isoformat(), 9]]))
    assert decode_rows([fine, older]) is None
    short = ("BR", encode_rows(table, slice(0, 1)).replace(b'"counts":[3]', b'"counts":[]'))
    assert short[1] != fine[1]
    assert decode_rows([fine, short]) is None
    for junk in (b"not json", b'{"format": 2}', b'{"format": 2, "topic_keys": 3}'):
        assert decode_rows([fine, ("BR", junk)]) is None


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


def test_a_historical_window_is_read_once_per_worker_and_shared_through_the_cache(
    tmp_path: Path,
) -> None:
    """The map asks for a window's hotspots, flows and stats at once, then again: one read,
    its table shared (the window at an instant, and the window ending now). Another worker
    (its own Snapshots, the same store) reads the cache's entries, not its database (here an
    empty one), and gets the same sums."""
    records = [
        Record(T0 - timedelta(minutes=40 * i), c, k, k.casefold(), i + 1, 0.5, None)
        for i, (c, k) in enumerate([("US", "Storm"), ("BR", "Gol"), ("US", "Gol"), ("DE", "Zug")])
    ]
    span, token = Span(TimeWindow.H24, T0), "7"

    async def main() -> None:
        full, empty = (make_engine(f"sqlite:///{tmp_path / name}") for name in ("a.db", "b.db"))
        try:
            for engine in (full, empty):
                await migrate.upgrade(engine)
            await TrendRepository(full).upsert(records)
            store = MemoryStore()

            def worker(engine: Any) -> Snapshots:
                cache = ResponseCache(store, refresh_seconds=30)
                return Snapshots(TrendRepository(engine), cache, lambda: T0)

            first = worker(full)
            # Asked for at once (the map's hotspots, flows and stats in one query): one read.
            read, again = await asyncio.gather(
                first.aggregates(span, token), first.aggregates(span, token)
            )
            assert again is read
            assert await first.aggregates(span, token) is read
            now, also = await asyncio.gather(
                first.window(TimeWindow.H24, None, token), first.window(TimeWindow.H24, None, token)
            )
            assert also[1] is now[1] and also[0] == now[0] and len(now[1]) == 4
            other = await worker(empty).aggregates(span, token)
            assert sorted(other, key=astuple) == sorted(read, key=astuple) and len(read) == 4
            # Another generation: the empty database's answer, not the entries of "7".
            assert len(await worker(empty).aggregates(span, "8")) == 0
        finally:
            await full.dispose()
            await empty.dispose()

    asyncio.run(main())


def test_at_shutdown_a_read_whose_readers_left_is_cancelled_and_its_connection_returned(
    postgres_url: str,
) -> None:
    """A window read goes on when its reader leaves (others may join it). At shutdown it
    must not outlive the engine: drain() waits for it, then cancels it, and its connection is
    back in the pool before the engine is disposed. The read is held here by another session's
    lock on every table."""

    async def main() -> None:
        await empty_archive(postgres_url)
        engine = make_engine(postgres_url)
        try:
            await migrate.upgrade(engine)
            clock = lambda: T0  # noqa: E731
            cache = ResponseCache(MemoryStore(), refresh_seconds=30)
            snapshots = Snapshots(TrendRepository(engine), cache, clock)
            async with every_table_locked(postgres_url):
                reader = asyncio.create_task(snapshots.window(TimeWindow.H24, None, "1"))
                while engine.pool.checkedout() == 0:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.01)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                assert engine.pool.checkedout() == 1, "the read went on"  # type: ignore[attr-defined]
                await snapshots.drain(0.2)
                assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            # Nothing is left behind: the next reader reads afresh.
            _, rows = await snapshots.window(TimeWindow.H24, None, "1")
            assert len(rows) == 0
        finally:
            await engine.dispose()

    asyncio.run(main())
