"""The repository on SQLite and PostgreSQL: atomic upserts, SQL aggregation, keyset pages."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
import sqlalchemy.exc

from db import migrate
from db.engine import make_engine
from db.errors import StorageUnavailable, translated
from db.repository import (
    _PG_CREATE_STAGING,
    _PG_STAGING,
    _PG_STAGING_COLUMNS,
    RecordFilter,
    RowPage,
    TrendRepository,
    UpsertResult,
    _copy,
)
from graph.core.aggregates import AggregateRow, AggregateTable
from graph.core.records import Record, StoredRecord
from tests.support.reference import naive_aggregates
from tests.support.servers import empty_archive

T = TypeVar("T")
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def run(url: str, work: Callable[[TrendRepository], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = make_engine(url)
        try:
            await migrate.upgrade(engine)
            return await work(TrendRepository(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def row(country: str, key: str, minutes: int, count: int = 1, conf: float = 0.5) -> Record:
    return Record(T0 + timedelta(minutes=minutes), country, key.title(), key, count, conf, None)


def records(page: RowPage) -> list[StoredRecord]:
    """The page's rows as the service hands them out."""
    return [StoredRecord(*row) for row in page.rows]


def test_upsert_counts_and_dedupes_within_a_batch(database_url: str) -> None:
    async def work(repo: TrendRepository) -> None:
        first = await repo.upsert([row("US", "a", 0, 1), row("US", "a", 0, 5), row("US", "b", 0)])
        assert (first.inserted, first.updated, first.unchanged) == (2, 0, 1)
        page = await repo.page(RecordFilter(topic_key="a"), first=10)
        assert [r.count for r in records(page)] == [5]  # the last of the duplicates won
        second = await repo.upsert([row("US", "a", 0, 5), row("US", "b", 0, 7), row("BR", "a", 0)])
        assert (second.inserted, second.updated, second.unchanged) == (1, 1, 1)
        empty = await repo.upsert([])
        assert (empty.inserted, empty.updated, empty.unchanged) == (0, 0, 0)

    run(database_url, work)


def test_a_failing_batch_stores_nothing(database_url: str) -> None:
    """A row that breaks a database constraint rolls the whole batch back."""

    async def work(repo: TrendRepository) -> None:
        batch = [row("US", f"t{i}", i) for i in range(10)] + [row("US", "bad", 0, count=0)]
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            await repo.upsert(batch)
        assert (await repo.page(RecordFilter(), first=10)).total_count == 0

    run(database_url, work)


def test_large_batches_round_trip(database_url: str) -> None:
    async def work(repo: TrendRepository) -> None:
        batch = [row("US", f"t{i}", i % 600) for i in range(9_000)]
        result = await repo.upsert(batch)
        assert result.inserted == 9_000
        again = await repo.upsert(batch)
        assert again.unchanged == 9_000

    run(database_url, work)


def rounded(rows: list[AggregateRow]) -> set[AggregateRow]:
    """The rows as a set, weighted confidence rounded (SQL and Python sum floats differently)."""
    return {
        AggregateRow(
            a.country,
            a.topic_key,
            a.label,
            a.count,
            round(a.weighted_confidence, 6),
            a.first_seen,
            a.window_first_seen,
            a.previous_volume,
        )
        for a in rows
    }


def test_aggregation_in_sql_equals_a_naive_one(database_url: str) -> None:
    rng = random.Random(3)
    rows = [
        Record(
            T0 + timedelta(minutes=rng.randrange(0, 48 * 60)),
            rng.choice(["US", "BR", "CO", "JP"]),
            rng.choice(["World Cup", "world cup", "Storm", "Election", "Anime"]),
            "",
            rng.randint(1, 500),
            round(rng.random(), 3),
            None,
        )
        for _ in range(400)
    ]
    rows = [
        Record(
            r.timestamp,
            r.country,
            r.topic_label,
            r.topic_label.casefold(),
            r.count,
            r.confidence,
            None,
        )
        for r in rows
    ]
    unique = list({(r.country, r.topic_key, r.timestamp): r for r in rows}.values())

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(unique)
        for hours in (1, 6, 12, 24):
            end = T0 + timedelta(hours=30)
            start, before = end - timedelta(hours=hours), end - timedelta(hours=2 * hours)
            got = AggregateTable(*await repo.aggregate_window(before, start, end))
            assert len(rounded(got)) == len(got)
            # Plain ints (no Decimal from a SQL sum): the cache's JSON codec takes them.
            assert {type(n) for n in [*got.counts, *got.previous_volumes]} <= {int}
            assert rounded(got) == rounded(naive_aggregates(unique, before, start, end))

    run(database_url, work)


def test_pages_are_newest_first_with_ties_broken_by_id(database_url: str) -> None:
    async def work(repo: TrendRepository) -> None:
        await repo.upsert([row("US", f"t{i}", i // 3) for i in range(9)])
        seen: list[int] = []
        after = None
        while True:
            page = await repo.page(RecordFilter(countries=["US"]), first=2, after=after)
            seen += [r.id for r in records(page)]
            if not page.has_next:
                break
            last = records(page)[-1]
            after = (last.timestamp, last.id)
        assert len(seen) == len(set(seen)) == 9
        stamps = [(r.timestamp, r.id) for r in records(await repo.page(RecordFilter(), first=9))]
        assert stamps == sorted(stamps, reverse=True)

    run(database_url, work)


def test_ping(database_url: str) -> None:
    async def work(repo: TrendRepository) -> str:
        await repo.ping()
        return repo.dialect

    assert run(database_url, work) in {"sqlite", "postgresql"}


def test_an_empty_window_aggregates_to_an_empty_table(database_url: str) -> None:
    async def work(repo: TrendRepository) -> None:
        await repo.upsert([row("US", "a", 0)])
        got = AggregateTable(
            *await repo.aggregate_window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0)
        )
        assert len(got) == 0 and list(got) == []
        # Data only in the window before is no row either.
        got = AggregateTable(
            *await repo.aggregate_window(T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1))
        )
        assert len(got) == 0

    run(database_url, work)


def test_the_label_is_the_earliest_records_whatever_it_holds(database_url: str) -> None:
    """PostgreSQL finds the label inside a "timestamp, \\x01, label" text: a label may hold
    \\x01 itself, and a later record's label may sort first."""
    odd = "Odd\x01 One"

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(
            [
                Record(T0 + timedelta(minutes=5), "US", "ODD\x01 ONE", "odd\x01 one", 1, 1.0, None),
                Record(T0 + timedelta(minutes=1), "US", odd, "odd\x01 one", 2, 1.0, None),
                Record(T0 + timedelta(minutes=9), "US", "A first", "odd\x01 one", 3, 1.0, None),
            ]
        )
        got = AggregateTable(
            *await repo.aggregate_window(T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1))
        )
        assert [(a.label, a.count, a.first_seen) for a in got] == [
            (odd, 6, T0 + timedelta(minutes=1))
        ]

    run(database_url, work)


def test_the_window_before_gives_first_sightings_and_previous_volumes(database_url: str) -> None:
    """Window (T0, T0 + 1 h], the one before (T0 - 1 h, T0]. US had "a" before and in the
    window, "b" only before: its previous volume is 2 + 5 on every US row; "a" was first seen
    before the window, but its label and window sighting are the window's. BR has nothing
    before (its record 61 minutes before T0 is outside both windows)."""

    def at(country: str, label: str, minutes: int, count: int) -> Record:
        key = label.split()[0].casefold()
        return Record(T0 + timedelta(minutes=minutes), country, label, key, count, 0.5, None)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(
            [
                at("US", "A old", -30, 2),
                at("US", "B", -10, 5),
                at("US", "A new", 20, 3),
                at("US", "A", 40, 1),
                at("US", "C", 45, 6),
                at("BR", "a", 50, 4),
                at("BR", "gone", -61, 9),
            ]
        )
        got = AggregateTable(
            *await repo.aggregate_window(T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1))
        )
        rows = {(a.country, a.topic_key): a for a in got}
        assert set(rows) == {("US", "a"), ("US", "c"), ("BR", "a")}
        us = rows["US", "a"]
        assert (us.label, us.count, us.previous_volume) == ("A new", 4, 7)
        assert us.first_seen == T0 - timedelta(minutes=30)
        assert us.window_first_seen == T0 + timedelta(minutes=20)
        assert (rows["US", "c"].first_seen, rows["US", "c"].previous_volume) == (
            T0 + timedelta(minutes=45),
            7,
        )
        br = rows["BR", "a"]
        assert (br.previous_volume, br.first_seen) == (0, T0 + timedelta(minutes=50))

    run(database_url, work)


def test_a_topic_seen_before_the_window_keeps_its_first_sighting(database_url: str) -> None:
    async def work(repo: TrendRepository) -> None:
        await repo.upsert(
            [
                Record(T0 - timedelta(minutes=50), "US", "Old Label", "storm", 2, 0.5, None),
                Record(T0 + timedelta(minutes=5), "US", "Storm", "storm", 3, 1.0, None),
            ]
        )
        got = AggregateTable(
            *await repo.aggregate_window(T0 - timedelta(hours=1), T0, T0 + timedelta(hours=1))
        )
        [row] = list(got)
        assert (row.label, row.count, row.weighted_confidence) == ("Storm", 3, 3.0)
        assert row.first_seen == T0 - timedelta(minutes=50)
        assert row.window_first_seen == T0 + timedelta(minutes=5)
        assert row.previous_volume == 2

    run(database_url, work)


@pytest.fixture
def archive_url(postgres_url: str) -> str:
    """PostgreSQL only (the COPY path), on an empty archive."""
    asyncio.run(empty_archive(postgres_url))
    return postgres_url


def run_on_one_connection(url: str, work: Callable[[TrendRepository], Awaitable[T]]) -> T:
    """Like run(), with one pooled connection: every batch reuses the same session, so the
    staging table a batch leaves behind is the one the next batch finds."""

    async def main() -> T:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            await migrate.upgrade(engine)
            return await work(TrendRepository(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_copy_ingest_is_idempotent_and_counts_updates(archive_url: str) -> None:
    """Batch after batch on one session: nothing staged by one batch leaks into the next."""

    async def work(repo: TrendRepository) -> None:
        batch = [row("US", f"t{i}", i, count=i + 1) for i in range(100)]
        assert await repo.upsert(batch) == UpsertResult(100, 0, 0)
        assert await repo.upsert(batch) == UpsertResult(0, 0, 100)
        changed = [row("US", f"t{i}", i, count=i + 2) for i in range(0, 100, 4)]
        sourced = [
            Record(r.timestamp, r.country, r.topic_label, r.topic_key, r.count, r.confidence, ["x"])
            for r in batch[1:100:4]
        ]
        fresh = [row("BR", "new", 0)]
        assert await repo.upsert([*changed, *sourced, *fresh, *batch[2:100:4]]) == (
            UpsertResult(1, 50, 25)
        )
        assert await repo.upsert(batch[:1]) == UpsertResult(0, 1, 0)
        page = await repo.page(RecordFilter(countries=["US"]), first=100)
        stored = {label: (n, sources) for _, _, _, label, n, _, sources in page.rows}
        assert page.total_count == 100
        assert stored["T0"] == (1, None) and stored["T4"] == (6, None)
        assert stored["T1"] == (2, ["x"]) and stored["T2"] == (3, None)

    run_on_one_connection(archive_url, work)


@pytest.mark.parametrize("where", [0, 25_000, 49_999])
def test_a_batch_postgresql_refuses_anywhere_stores_nothing(archive_url: str, where: int) -> None:
    """A NUL byte (refused by the COPY itself) or a broken CHECK constraint (refused by the
    INSERT after it), first, mid-way or last in a big batch: nothing is stored, and the
    session goes on to store the next batch."""

    async def work(repo: TrendRepository) -> None:
        batch = [row("US", f"t{i}", i % 1440) for i in range(50_000)]
        nul = list(batch)
        nul[where] = row("US", "bad\x00label", 0)
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="0x00"):
            await repo.upsert(nul)
        broken = list(batch)
        broken[where] = row("US", "bad", 0, conf=1.5)
        with pytest.raises(sqlalchemy.exc.IntegrityError, match="ck_trends_confidence_range"):
            await repo.upsert(broken)
        assert (await repo.page(RecordFilter(), first=1)).total_count == 0
        assert await repo.upsert(batch[:10]) == UpsertResult(10, 0, 0)

    run_on_one_connection(archive_url, work)


def test_a_big_batch_is_stored_exactly(archive_url: str) -> None:
    rng = random.Random(16)
    batch = [
        Record(
            T0 + timedelta(seconds=rng.randrange(0, 86_400)),
            rng.choice(["US", "BR", "CO", "JP", "DE"]),
            f"Topic {i % 997}",
            f"topic {i % 997}",
            rng.randint(1, 1000),
            round(rng.random(), 4),
            [f"https://example.org/{i}"] if i % 10 == 0 else None,
        )
        for i in range(50_000)
    ]
    unique = list({(r.country, r.topic_key, r.timestamp): r for r in batch}.values())
    changed = [
        Record(r.timestamp, r.country, r.topic_label, r.topic_key, r.count + 1, r.confidence, None)
        for r in unique[::7]
    ]

    async def work(repo: TrendRepository) -> None:
        first = await repo.upsert(batch)
        assert (first.inserted, first.updated) == (len(unique), 0)
        assert first.unchanged == len(batch) - len(unique)
        assert await repo.upsert(unique) == UpsertResult(0, 0, len(unique))
        assert await repo.upsert(changed) == UpsertResult(0, len(changed), 0)
        async with repo.engine.connect() as conn:
            count_sum, weighted, sourced, rows = (
                await conn.execute(
                    sqlalchemy.text(
                        "SELECT sum(count), sum(count * confidence), count(sources), count(*)"
                        " FROM trends_archive"
                    )
                )
            ).one()
        expected = {(r.country, r.topic_key, r.timestamp): r for r in [*unique, *changed]}
        assert rows == len(unique)
        assert count_sum == sum(r.count for r in expected.values())
        assert weighted == pytest.approx(sum(r.count * r.confidence for r in expected.values()))
        assert sourced == sum(r.sources is not None for r in expected.values())

    run(archive_url, work)


def test_concurrent_overlapping_batches_neither_deadlock_nor_double_count(
    archive_url: str,
) -> None:
    """Six sessions write shuffled batches that share most of their keys, at once: each key is
    inserted once, by one of them, and every other sighting of it is unchanged."""
    keys = [("US" if i % 2 else "BR", f"t{i % 50}", i % 40) for i in range(2_000)]
    rng = random.Random(8)
    batches = []
    for _ in range(6):
        shuffled = rng.sample(keys, k=len(keys))[:1_600]
        batches.append([row(c, k, minutes) for c, k, minutes in shuffled])
    distinct = {(r.country, r.topic_key, r.timestamp) for b in batches for r in b}

    async def work(repo: TrendRepository) -> None:
        results = await asyncio.gather(*(repo.upsert(b) for b in batches))
        assert sum(r.inserted for r in results) == len(distinct)
        assert sum(r.updated for r in results) == 0
        assert sum(r.unchanged for r in results) == sum(len(b) for b in batches) - len(distinct)
        assert (await repo.page(RecordFilter(), first=1)).total_count == len(distinct)

    async def main() -> None:
        engine = make_engine(archive_url, pool_size=6, max_overflow=0)
        try:
            await migrate.upgrade(engine)
            for _ in range(3):
                await empty_archive(archive_url)
                await work(TrendRepository(engine))
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_a_session_lost_during_the_copy_is_storage_unavailable(archive_url: str) -> None:
    """The COPY travels on the raw asyncpg connection; its failures are translated like any
    other statement's (db.errors)."""

    async def main() -> None:
        engine = make_engine(archive_url)
        admin = make_engine(archive_url)
        try:
            await migrate.upgrade(engine)
            async with engine.connect() as conn:
                await conn.begin()
                await conn.execute(_PG_CREATE_STAGING)
                pid = (await conn.execute(sqlalchemy.text("SELECT pg_backend_pid()"))).one()
                async with admin.connect() as other:
                    await other.execute(
                        sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid[0]}
                    )
                staged = [(T0, "US", "A", "a", 1, 0.5, None)] * 1_000
                with pytest.raises(sqlalchemy.exc.DBAPIError) as lost:
                    await _copy(conn, _PG_STAGING, _PG_STAGING_COLUMNS, staged)
            assert lost.value.connection_invalidated
            with pytest.raises(StorageUnavailable):
                async with translated("ingest"):
                    raise lost.value
            repo = TrendRepository(engine)  # the pool replaces the dead connection
            assert await repo.upsert([row("US", "a", 0)]) == UpsertResult(1, 0, 0)
        finally:
            await admin.dispose()
            await engine.dispose()

    asyncio.run(main())
