"""The hourly rollup (PostgreSQL, migration 0003) and its six-hour blocks (0004): windows read
from them answer exactly what the archive alone answers, at every ``as_of`` and edge, whatever
was written and however, with the blocks built, not built, or built and written to since."""

from __future__ import annotations

import asyncio
import random
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.blocks import build_block, build_settled, finish_build, start_build, unbuilt_blocks
from db.engine import make_engine
from db.repository import (
    AggregateColumns,
    TrendRepository,
    UpsertResult,
    _aggregate_from_archive,
)
from db.rollup import Groups, PartSums, _sorting, parse_parts
from graph.core.records import Record
from graph.service import offload
from tests.support.reference import naive_aggregates
from tests.support.servers import empty_archive

T = TypeVar("T")
T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)
MICRO = timedelta(microseconds=1)
WINDOWS = [timedelta(hours=h) for h in (1, 6, 12, 24)]
COUNTRIES = ["US", "BR", "CO", "JP", "DE"]
LABELS = [
    "World Cup",
    "world cup",
    "WORLD  CUP",
    "Storm",
    "storm",
    "Election",
    "Anime",
    "Ærø",
    "zebra",
]

# The rollup as a backfill from the archive would build it, to compare the kept one with.
RECOMPUTED = sa.text(
    """
    SELECT date_trunc('hour', a.timestamp - interval '1 microsecond', 'UTC') + interval '1 hour',
           a.country, a.topic_key, sum(a.count), sum(a.count * a.confidence),
           min(a.timestamp),
           (array_agg(a.topic_label ORDER BY a.timestamp))[1]
    FROM trends_archive AS a GROUP BY 1, 2, 3
    """
)
KEPT = sa.text(
    """
    SELECT r.hour, s.country, s.topic_key, r.count_sum, r.weighted_sum,
           timestamptz 'epoch' + r.first_us * interval '1 microsecond', l.label
    FROM trends_rollup_hourly AS r
    JOIN trends_series AS s ON s.id = r.series_id
    JOIN trends_labels AS l ON l.id = r.first_label_id
    """
)

# Built blocks as they are kept, and as summing the archive over each block would give them.
BLOCKS_KEPT = sa.text(
    """
    SELECT b.block, s.country, s.topic_key, b.count_sum, b.weighted_sum,
           timestamptz 'epoch' + b.first_us * interval '1 microsecond', l.label
    FROM trends_rollup_blocks AS b
    JOIN trends_rollup_block_state AS st ON st.block = b.block AND st.built = st.changes
    JOIN trends_series AS s ON s.id = b.series_id
    JOIN trends_labels AS l ON l.id = b.first_label_id
    """
)
BLOCKS_RECOMPUTED = sa.text(
    """
    SELECT * FROM (
        SELECT date_bin(interval '6 hours', a.timestamp - interval '1 microsecond',
                        timestamptz 'epoch') + interval '6 hours' AS block,
               a.country, a.topic_key, sum(a.count), sum(a.count * a.confidence),
               min(a.timestamp), (array_agg(a.topic_label ORDER BY a.timestamp))[1]
        FROM trends_archive AS a GROUP BY 1, 2, 3
    ) AS g
    WHERE g.block IN (SELECT block FROM trends_rollup_block_state WHERE built = changes)
    """
)


async def build_all(repo: TrendRepository) -> int:
    """Build every block not built, as `trendmap db build-blocks` does: how many."""
    done = await build_settled(repo.engine, quiet_seconds=0, limit=1_000)
    assert not done.busy and not done.overtaken
    return done.built


async def built_blocks(repo: TrendRepository) -> int:
    async with repo.engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.text("SELECT count(*) FROM trends_rollup_block_state WHERE built = changes")
            )
            or 0
        )


@pytest.fixture
def archive_url(postgres_url: str) -> str:
    asyncio.run(empty_archive(postgres_url))
    return postgres_url


def run(url: str, work: Callable[[TrendRepository], Awaitable[T]], **engine: Any) -> T:
    async def main() -> T:
        e = make_engine(url, **engine)
        try:
            await migrate.upgrade(e)
            return await work(TrendRepository(e))
        finally:
            await e.dispose()

    return asyncio.run(main())


def moments(rng: random.Random, n: int) -> Iterator[datetime]:
    """Timestamps over 60 h: on the hour, a microsecond either side, and anywhere."""
    for _ in range(n):
        hour = T0 + rng.randrange(0, 60) * HOUR
        yield rng.choice(
            [
                hour,
                hour - MICRO,
                hour + MICRO,
                hour + timedelta(microseconds=rng.randrange(1, 3_600_000_000)),
            ]
        )


def record(when: datetime, country: str, label: str, count: int, confidence: float) -> Record:
    key = " ".join(label.split()).casefold()
    return Record(when, country, label, key, count, confidence, None)


def random_records(rng: random.Random, n: int) -> list[Record]:
    return [
        record(when, rng.choice(COUNTRIES), rng.choice(LABELS), rng.randint(1, 500), rng.random())
        for when in moments(rng, n)
    ]


def changed(rng: random.Random, rows: list[Record], share: float) -> list[Record]:
    """Some of ``rows`` again, with another count, confidence or spelling of their label."""
    out = []
    for r in rows:
        if rng.random() >= share:
            continue
        spellings = [label for label in LABELS if " ".join(label.split()).casefold() == r.topic_key]
        out.append(
            Record(
                r.timestamp,
                r.country,
                rng.choice(spellings),
                r.topic_key,
                rng.choice([r.count, rng.randint(1, 500)]),
                rng.choice([r.confidence, rng.random()]),
                None,
            )
        )
    return out


def by_series(columns: AggregateColumns) -> dict[tuple[str, str], tuple[Any, ...]]:
    rows = {}
    for c, k, label, n, w, first, window_first, previous in zip(*columns, strict=True):
        rows[(c, k)] = (label, n, round(w, 6), first, window_first, previous)
    assert len(rows) == len(columns.countries)
    return rows


def as_of_values(rng: random.Random) -> list[datetime]:
    """On the hour, a microsecond either side, and anywhere, over the data and past it."""
    hours = [T0 + h * HOUR for h in (0, 1, 12, 24, 25, 36, 47, 48, 60, 61, 90)]
    near = [h + d for h in hours for d in (-MICRO, MICRO)]
    anywhere = [
        T0 + timedelta(microseconds=rng.randrange(0, 70 * 3_600_000_000)) for _ in range(10)
    ]
    return hours + near + anywhere


def assert_same_sums(
    kept: dict[tuple[Any, ...], tuple[Any, ...]], recomputed: dict[tuple[Any, ...], tuple[Any, ...]]
) -> None:
    assert kept.keys() == recomputed.keys()
    for key, (n, w, first, label) in recomputed.items():
        assert kept[key][0] == n and kept[key][3] == label, key
        assert kept[key][1] == pytest.approx(w, rel=1e-12, abs=1e-9), key
        assert kept[key][2] == first, key


async def assert_exact(repo: TrendRepository, as_of: list[datetime]) -> int:
    """Every window at every ``as_of``: rollup and archive agree; the rollup's rows, and its
    built blocks', are what a backfill would build. How many (window, series) rows were
    compared."""
    async with repo.engine.connect() as conn:
        kept = {tuple(r[:3]): tuple(r[3:]) for r in await conn.execute(KEPT)}
        recomputed = {tuple(r[:3]): tuple(r[3:]) for r in await conn.execute(RECOMPUTED)}
    assert_same_sums(kept, recomputed)
    async with repo.engine.connect() as conn:
        kept = {tuple(r[:3]): tuple(r[3:]) for r in await conn.execute(BLOCKS_KEPT)}
        recomputed = {tuple(r[:3]): tuple(r[3:]) for r in await conn.execute(BLOCKS_RECOMPUTED)}
    assert_same_sums(kept, recomputed)
    compared = 0
    for end in as_of:
        for window in WINDOWS:
            bounds = (end - 2 * window, end - window, end)
            columns = await repo.aggregate_window(*bounds)
            keys = list(zip(columns.countries, columns.topic_keys, strict=True))
            assert keys == sorted(keys, key=lambda k: (k[0].encode(), k[1].encode()))
            got = by_series(columns)
            expected = by_series(await _aggregate_from_archive(repo.engine, *bounds))
            assert got == expected, (end, window)
            compared += len(got)
    return compared


def test_windows_from_the_rollup_equal_the_archives_at_every_edge(archive_url: str) -> None:
    """Ingests, re-ingests and updates of counts, confidences and labels (the earliest record
    of an hour among them), then every window at as_of values on, next to and off the hour."""
    rng = random.Random(16)

    async def work(repo: TrendRepository) -> None:
        stored: dict[tuple[str, str, datetime], Record] = {}
        for round_ in range(4):
            batch = random_records(rng, 600) + changed(rng, list(stored.values()), 0.3)
            if round_ == 3:  # written to two blocks only: the others stay built
                batch = [r for r in batch if T0 + 12 * HOUR < r.timestamp <= T0 + 24 * HOUR]
            await repo.upsert(batch)
            stored.update({(r.country, r.topic_key, r.timestamp): r for r in batch})
            if round_ == 2:
                assert await build_all(repo) == 11  # 60 h of data from a microsecond before T0
        assert await repo.upsert(list(stored.values())) == UpsertResult(0, 0, len(stored))
        # Nine blocks built, the two written since read hour by hour.
        assert await built_blocks(repo) == 9
        as_of = as_of_values(rng)
        compared = await assert_exact(repo, as_of)
        assert compared > 2_000
        assert await build_all(repo) == 2
        assert await assert_exact(repo, as_of) == compared
        # And the Python model of DESIGN.md agrees with both, on a window off the hour.
        end = T0 + timedelta(hours=40, microseconds=1)
        got = await repo.aggregate_window(end - 12 * HOUR, end - 6 * HOUR, end)
        naive = naive_aggregates(list(stored.values()), end - 12 * HOUR, end - 6 * HOUR, end)
        assert len(naive) == len(got.countries)
        for a in naive:
            i = list(zip(got.countries, got.topic_keys, strict=True)).index(
                (a.country, a.topic_key)
            )
            assert (got.labels[i], got.counts[i], got.previous_volumes[i]) == (
                a.label,
                a.count,
                a.previous_volume,
            )

    run(archive_url, work)


def test_windows_of_any_length_agree_with_the_archive(archive_url: str) -> None:
    """The API's windows are whole hours; the repository takes any bounds: windows shorter
    than an hour, or not a whole number of hours, read every record once too."""
    rng = random.Random(23)
    lengths = [timedelta(minutes=m) for m in (20, 59, 90, 150, 390)]

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(random_records(rng, 1_500))
        await build_all(repo)
        for end in as_of_values(rng)[:16]:
            for length in lengths:
                bounds = (end - 2 * length, end - length, end)
                got = by_series(await repo.aggregate_window(*bounds))
                assert got == by_series(await _aggregate_from_archive(repo.engine, *bounds))

    run(archive_url, work)


def test_a_windows_columns_are_made_once_its_connection_is_returned(
    archive_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server makes a large window's columns on its maths thread (graph.service.offload),
    once PostgreSQL has sent everything and the connection is back in the pool: a window
    queued behind another's maths holds no connection. The columns are the same."""
    monkeypatch.setattr(offload, "MIN_ROWS", 0)  # the test's window counts as large
    rng = random.Random(31)
    asked: list[tuple[int, int, bool]] = []

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(random_records(rng, 800))

        async def on_the_maths_thread(rows: int, fn: Callable[[], T]) -> T:
            def there() -> T:
                asked.append((rows, repo.engine.pool.checkedout(), in_thread()))
                return fn()

            return await offload.maths(rows, there)

        def in_thread() -> bool:
            return threading.current_thread().name.startswith(offload.THREAD_NAME)

        offloaded = TrendRepository(repo.engine, maths=on_the_maths_thread)
        end = T0 + 30 * HOUR + MICRO
        bounds = (end - 48 * HOUR, end - 24 * HOUR, end)
        got, here = await offloaded.aggregate_window(*bounds), await repo.aggregate_window(*bounds)
        assert by_series(got) == by_series(here) and len(here.countries) >= 25
        assert got.coded is not None and here.coded is not None
        for name in got.coded.__dataclass_fields__:
            assert np.asarray(getattr(got.coded, name)).tolist() == (
                np.asarray(getattr(here.coded, name)).tolist()
            ), name

    run(archive_url, work)
    assert [(checked_out, thread) for _, checked_out, thread in asked] == [(0, True)]
    assert asked[0][0] >= 25, "the window's series, counted"


def test_an_unchanged_re_ingest_writes_nothing_to_the_rollup(archive_url: str) -> None:
    rng = random.Random(5)
    batch = random_records(rng, 2_000)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(batch)
        async with repo.engine.connect() as conn:
            before = (
                await conn.execute(
                    sa.text("SELECT xmin::text, * FROM trends_rollup_hourly ORDER BY 2, 3")
                )
            ).all()
        await build_all(repo)
        result = await repo.upsert(batch)
        assert result.unchanged == len(batch)
        async with repo.engine.connect() as conn:
            after = (
                await conn.execute(
                    sa.text("SELECT xmin::text, * FROM trends_rollup_hourly ORDER BY 2, 3")
                )
            ).all()
        assert after == before  # the same row versions: not one rewritten
        assert await unbuilt_blocks(repo.engine, quiet_seconds=0, limit=100) == []

    run(archive_url, work)


def test_deletes_moves_and_truncates_keep_the_rollup_exact(archive_url: str) -> None:
    """Writers other than the ingest: SQL that deletes records (an hour's earliest among
    them), moves records to another hour or country, and empties the archive."""
    rng = random.Random(9)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(random_records(rng, 1_500))
        await build_all(repo)
        async with repo.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM trends_archive WHERE id % 7 = 0"))
            await conn.execute(
                sa.text(
                    "UPDATE trends_archive SET timestamp = timestamp + interval '90 minutes'"
                    " + id * interval '3 microseconds'"
                    " WHERE id % 11 = 0"
                )
            )
            await conn.execute(
                sa.text(
                    "UPDATE trends_archive SET country = 'ZZ',"
                    " timestamp = timestamp + id * interval '1 microsecond' WHERE id % 13 = 0"
                )
            )
            await conn.execute(
                sa.text("UPDATE trends_archive SET count = count + 1 WHERE id % 5 = 0")
            )
        assert await built_blocks(repo) == 0  # every block had a record moved or deleted
        await assert_exact(repo, as_of_values(rng)[:12])
        await build_all(repo)
        await assert_exact(repo, as_of_values(rng)[:12])
        async with repo.engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE trends_archive"))
        assert await repo.aggregate_window(T0, T0 + 24 * HOUR, T0 + 48 * HOUR) == (
            AggregateColumns([], [], [], [], [], [], [], [])
        )
        await repo.upsert(random_records(rng, 300))
        await assert_exact(repo, as_of_values(rng)[:12])

    run(archive_url, work)


def test_concurrent_overlapping_ingests_keep_the_rollup_exact(archive_url: str) -> None:
    """Six sessions at once write batches sharing most keys with other counts and labels: no
    deadlock, and the rollup adds up to whatever the archive ended with."""
    rng = random.Random(12)
    keys = [(w, rng.choice(COUNTRIES), rng.choice(LABELS)) for w in moments(rng, 1_500)]
    batches = [
        [
            record(w, c, label, rng.randint(1, 500), rng.random())
            for w, c, label in rng.sample(keys, 1_200)
        ]
        for _ in range(6)
    ]

    async def work(repo: TrendRepository) -> None:
        building = True

        async def builder() -> int:
            built = 0
            while building:
                built += (await build_settled(repo.engine, quiet_seconds=0, limit=4)).built
                await asyncio.sleep(0)
            return built

        background = asyncio.create_task(builder())
        for _ in range(3):
            await asyncio.gather(*(repo.upsert(b) for b in batches))
            await asyncio.gather(*(repo.upsert(list(reversed(b))) for b in batches[::-1]))
        building = False
        assert await background > 0
        await assert_exact(repo, as_of_values(rng)[:12])
        await build_all(repo)
        await assert_exact(repo, as_of_values(rng)[:12])

    run(archive_url, work, pool_size=6, max_overflow=0)


def test_a_block_written_while_it_is_built_is_not_marked_built(archive_url: str) -> None:
    """The builder reads a block's count of writes, another session writes to the block and
    commits, then the builder sums the hours: its rows hold the new write, but the count it
    read is behind, so the block stays unbuilt and windows read its hours until the next
    build."""
    rng = random.Random(77)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(random_records(rng, 800))
        [(block, changes), *_] = await unbuilt_blocks(repo.engine, quiet_seconds=0, limit=1)
        async with repo.engine.begin() as conn:
            assert await start_build(conn, block) == changes
            await repo.upsert([record(block - 2 * HOUR, "US", "Late news", 7, 0.5)])
            assert await finish_build(conn, block, changes) is False
        left = await unbuilt_blocks(repo.engine, quiet_seconds=0, limit=100)
        assert (block, changes + 1) in left
        await assert_exact(repo, [block, block + 6 * HOUR])
        assert await build_all(repo) == len(left)
        await assert_exact(repo, [block, block + 6 * HOUR])

    run(archive_url, work)


def test_a_truncate_waits_for_a_build_under_way(archive_url: str) -> None:
    """Emptying the archive starts every block's count again: were it to happen between a
    build's count and its mark, a new write's count could match the old one. It waits."""
    rng = random.Random(79)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(random_records(rng, 300))
        [(block, changes), *_] = await unbuilt_blocks(repo.engine, quiet_seconds=0, limit=1)
        async with repo.engine.begin() as conn:
            assert await start_build(conn, block) == changes
            with pytest.raises(sa.exc.DBAPIError, match="lock timeout"):
                async with repo.engine.begin() as other:
                    await other.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
                    await other.execute(sa.text("TRUNCATE trends_archive"))
            assert await finish_build(conn, block, changes) is True
        async with repo.engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE trends_archive"))
        assert await unbuilt_blocks(repo.engine, quiet_seconds=0, limit=100) == []

    run(archive_url, work)


def test_only_one_builder_builds_at_a_time(archive_url: str) -> None:
    """A second builder, while the first holds the blocks' lock, does nothing."""
    rng = random.Random(78)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(random_records(rng, 300))
        [(block, changes), *_] = await unbuilt_blocks(repo.engine, quiet_seconds=0, limit=1)
        async with repo.engine.begin() as first:
            assert await build_block(first, block) is True
            done = await build_settled(repo.engine, quiet_seconds=0, limit=100)
            assert (done.built, done.busy) == (0, True)
        assert await unbuilt_blocks(repo.engine, quiet_seconds=3600, limit=100) == []
        assert (await build_settled(repo.engine, quiet_seconds=0, limit=100)).built == 10

    run(archive_url, work)


async def _at(engine: AsyncEngine, revision: str) -> None:
    current = await migrate.current_revision(engine) or "0000"
    if revision == "head" or (revision != "base" and current < revision):
        await migrate.upgrade(engine, revision)
    else:
        await migrate.downgrade(engine, revision)


def test_the_migration_backfills_and_goes_back_and_forth(schemaless_postgres_url: str) -> None:
    """An archive written before 0003 gets its rollup on upgrade; downgrade drops it, and
    a second upgrade rebuilds it from the archive as it is then."""
    rng = random.Random(30)
    first, second = random_records(rng, 1_500), random_records(rng, 500)

    async def main() -> None:
        engine = make_engine(schemaless_postgres_url)
        repo = TrendRepository(engine)
        try:
            await _at(engine, "0002")
            await repo.upsert(first)
            await repo.upsert(changed(rng, first, 0.3))
            await _at(engine, "head")
            async with engine.connect() as conn:
                noted = await conn.scalar(
                    sa.text("SELECT count(*) FROM trends_rollup_block_state WHERE built = 0")
                )
            assert noted == 11  # every block of the data, noted as not built
            await assert_exact(repo, as_of_values(rng)[:12])
            await build_all(repo)
            await assert_exact(repo, as_of_values(rng)[:12])
            await _at(engine, "0003")
            async with engine.connect() as conn:
                tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            assert "trends_rollup_blocks" not in tables and "trends_rollup_hourly" in tables
            await _at(engine, "0002")
            async with engine.connect() as conn:
                tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            assert "trends_rollup_hourly" not in tables and "trends_series" not in tables
            await repo.upsert(second)  # no triggers now: nothing to keep
            await _at(engine, "head")
            await assert_exact(repo, as_of_values(rng)[:12])
            await _at(engine, "base")
            assert await migrate.current_revision(engine) is None
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_names_are_read_again_when_the_dictionaries_are_rewritten(archive_url: str) -> None:
    """A process keeps the series' and labels' names between windows; once the tables are
    rewritten (emptied, ids starting again), the same ids name other series and labels."""
    rng = random.Random(41)
    before = [record(T0 + i * HOUR, "US", "Storm", 5, 0.5) for i in range(30)]
    after = [record(T0 + i * HOUR, "JP", "Anime", 7, 0.25) for i in range(30)]
    bounds = (T0, T0 + 12 * HOUR, T0 + 24 * HOUR + MICRO)

    async def work(repo: TrendRepository) -> None:
        await repo.upsert(before)
        assert (await repo.aggregate_window(*bounds)).labels == ["Storm"]
        async with repo.engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE trends_archive"))  # its trigger: the rollup
            await conn.execute(sa.text("TRUNCATE trends_series, trends_labels RESTART IDENTITY"))
        await repo.upsert(after)
        got = await repo.aggregate_window(*bounds)
        assert (got.countries, got.topic_keys, got.labels) == (["JP"], ["anime"], ["Anime"])
        # And new series and labels after the first read are read when a window holds them.
        await repo.upsert(random_records(rng, 300))
        await assert_exact(repo, as_of_values(rng)[:6])

    run(archive_url, work)


def test_names_holding_the_joining_character_come_back_whole(archive_url: str) -> None:
    """The API refuses control characters, but SQL or an older writer may have stored one:
    names travel joined by \\x01, and a name that holds it must not shift the others. Rows
    come in the names' byte order, whatever the order of their ids."""
    odd = "Storm\x01front"
    rows = [
        record(T0 + HOUR, "US", odd, 3, 0.5),
        record(T0 + 2 * HOUR, "US", "Anime", 4, 0.5),
        record(T0 + 3 * HOUR, "BR", "zebra", 5, 0.5),
    ]

    async def work(repo: TrendRepository) -> None:
        for row in rows:  # series ids in the reverse of the names' order
            await repo.upsert([row])
        got = await repo.aggregate_window(T0 - 24 * HOUR, T0, T0 + 24 * HOUR)
        assert list(zip(got.countries, got.topic_keys, got.labels, strict=True)) == [
            ("BR", "zebra", "zebra"),
            ("US", "anime", "Anime"),
            ("US", odd.casefold(), odd),
        ]

    run(archive_url, work)


HEADER, TRAILER = b"PGCOPY\n\xff\r\n\x00" + bytes(8), b"\xff\xff"


def _part(
    series: int = 7,
    in_window: bool = True,
    count: int = 3,
    weighted: float = 1.5,
    first: int = 42,
    label: int = 9,
    *,
    label_length: int = 4,
) -> bytes:
    """One WINDOW_PARTS row in binary COPY form."""
    fields = [
        (4, struct.pack(">i", series)),
        (1, bytes([in_window])),
        (8, struct.pack(">q", count)),
        (8, struct.pack(">d", weighted)),
        (8, struct.pack(">q", first)),
        (label_length, struct.pack(">i", label)),
    ]
    return struct.pack(">h", 6) + b"".join(struct.pack(">i", n) + v for n, v in fields)


def test_window_parts_are_read_as_fixed_width_rows_or_refused() -> None:
    header, trailer = HEADER, TRAILER
    rows = parse_parts(header + _part() + _part() + trailer)
    assert rows["series"].tolist() == [7, 7] and rows["weighted"].tolist() == [1.5, 1.5]
    assert rows["first"].tolist() == [42, 42] and rows["label"].tolist() == [9, 9]
    assert len(parse_parts(header + trailer)) == 0
    nothing = PartSums()
    nothing.feed(header + trailer)
    assert len(nothing.finish().series) == 0
    for junk in (
        b"not COPY output",
        header + _part()[:-1] + trailer,  # not a whole row
        header + _part(label_length=-1) + trailer,  # a NULL where none may be
    ):
        with pytest.raises(ValueError):
            parse_parts(junk)
        with pytest.raises(ValueError):  # as it arrives, too
            sums = PartSums(batch_rows=1)
            sums.feed(junk)
            sums.finish()


@pytest.mark.parametrize("chunks", ["whole", "cut up"])
def test_parts_sum_per_series_as_a_plain_loop_would(chunks: str) -> None:
    """Summing the rows as the COPY output arrives, in small batches and whatever the chunks
    (a byte at a time included), gives what summing row by row gives, and the same bits as
    summing them all at once."""
    rng = random.Random(chunks)
    parts = []
    for _ in range(2_000):
        series = rng.randrange(1, 300)
        first = rng.randrange(0, 10**12)
        parts.append((series, rng.random() < 0.7, rng.randint(1, 500), rng.random(), first))
    output = HEADER + b"".join(_part(*p, label=p[4] % 1_000) for p in parts) + TRAILER
    one_batch = PartSums(batch_rows=len(parts) + 1)
    one_batch.feed(output)
    at_once = one_batch.finish()
    sums = PartSums(batch_rows=37)
    if chunks == "whole":
        sums.feed(output)
    else:
        cut = 0
        while cut < len(output):
            size = rng.choice([1, 2, 3, 59, 500, 4_000])
            sums.feed(output[cut : cut + size])
            cut += size
    groups = sums.finish()
    for name in Groups.__dataclass_fields__:
        assert getattr(groups, name).tolist() == getattr(at_once, name).tolist(), name
    expected: dict[int, list[Any]] = {}
    for series, inside, count, weighted, first in parts:
        e = expected.setdefault(series, [False, 0, 0.0, first, None, 0])
        e[3] = min(e[3], first)
        if inside:
            e[0], e[1], e[2] = True, e[1] + count, e[2] + weighted
            e[4] = first if e[4] is None else min(e[4], first)
        else:
            e[5] += count
    assert groups.series.tolist() == sorted(expected)
    for i, series in enumerate(groups.series.tolist()):
        inside, count, weighted, first, window_first, previous = expected[series]
        assert bool(groups.in_window[i]) is inside
        assert (groups.count[i], groups.previous_count[i]) == (count, previous)
        assert groups.weighted[i] == weighted  # the same additions, in the same order
        assert groups.first_us[i] == first
        if inside:
            assert groups.window_first_us[i] == window_first
            assert groups.window_first_label[i] == window_first % 1_000


@pytest.mark.parametrize("top", [3_000, 10**9], ids=["a table", "a sort"])
def test_distinct_keys_are_sorted_by_a_table_or_a_sort(top: int) -> None:
    """A window's (country, topic) cells are put in order by a table over their range when
    it is small, else by sorting: the same permutation either way."""
    keys = np.asarray(random.Random(top).sample(range(top), 2_000), np.int64)
    order = _sorting(keys)
    assert order.tolist() == np.argsort(keys).tolist()
    assert keys[order].tolist() == sorted(keys.tolist())
