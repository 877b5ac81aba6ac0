"""Queries over the trend archive: bulk upsert, window aggregation and keyset pages.

Everything heavy happens in SQL. The aggregation returns one row per (country, topic key) in a
window, never the raw records. On PostgreSQL a window reads its whole hours from the hourly
rollup that migration 0003's triggers keep, and only its partial hours from the archive; SQLite
aggregates the archive. On PostgreSQL a batch reaches the server by binary COPY into a
staging table and one INSERT ... SELECT ... ON CONFLICT writes it, in one transaction; SQLite
upserts it in chunks of one statement each.
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import rollup
from db.errors import translated
from db.tables import trends_table

_t = trends_table
_NATURAL_KEY = (_t.c.country, _t.c.topic_key, _t.c.timestamp)
_PAYLOAD = ("topic_label", "count", "confidence", "sources")
# SQLite allows 32,766 bound variables per statement; 7 columns a row stays below it.
_SQLITE_ROWS_PER_STATEMENT = 4_000

# A batch travels by binary COPY into a staging table, then one INSERT ... SELECT writes it.
# The staging table lives as long as the connection (pooled connections keep it) and empties
# itself at every commit; a rolled-back batch leaves nothing in it either. Its columns are
# typed like the archive's, so COPY sends every value in PostgreSQL's binary form.
_PG_STAGING = "trends_staging"
_PG_STAGING_COLUMNS = (
    "timestamp",
    "country",
    "topic_label",
    "topic_key",
    "count",
    "confidence",
    "sources",
)
_PG_CREATE_STAGING = sa.text(
    f"""
    CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_STAGING} (
        timestamp timestamptz, country text, topic_label text, topic_key text,
        count integer, confidence float8, sources jsonb
    ) ON COMMIT DELETE ROWS
    """
)
# Two counts come back, not a row per record. Rows go in natural key order, so concurrent
# batches that share keys take their row locks in the same order and wait for each other
# instead of deadlocking. The archive's triggers (migration 0003) bring the hourly rollup up to
# date at the end of the statement, in the same transaction.
_PG_UPSERT = sa.text(
    f"""
    WITH written AS (
    INSERT INTO trends_archive
        (timestamp, country, topic_label, topic_key, count, confidence, sources)
    SELECT s.timestamp, s.country, s.topic_label, s.topic_key, s.count, s.confidence, s.sources
    FROM {_PG_STAGING} AS s
    ORDER BY s.country COLLATE "C", s.topic_key COLLATE "C", s.timestamp
    ON CONFLICT (country, topic_key, timestamp) DO UPDATE SET
        topic_label = EXCLUDED.topic_label,
        count = EXCLUDED.count,
        confidence = EXCLUDED.confidence,
        sources = EXCLUDED.sources
    WHERE (trends_archive.topic_label, trends_archive.count, trends_archive.confidence,
           trends_archive.sources)
          IS DISTINCT FROM
          (EXCLUDED.topic_label, EXCLUDED.count, EXCLUDED.confidence, EXCLUDED.sources)
    RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FROM written
    """
)


# The reference aggregation, straight from the archive: one pass over the rows of the window
# and the one before it (an index-only scan of idx_trends_timestamp, which carries every
# column the sums need), hashed by (country, topic key), and the result shipped as eight arrays
# in one row. The window's sums are FILTERed to it; the first sighting spans both windows. A
# country's previous volume counts every topic it had in the previous window (a window
# function over the groups, before the groups with no record in the window are dropped). The
# label of a topic's earliest record in the window comes out of the same pass: the smallest
# "timestamp text, \x01, label" is the earliest record's (ISO text in UTC orders like time,
# and the natural key makes timestamps unique within a group), so no join back on the table
# and no sort per group are needed. The label is what follows the first \x01, which the
# timestamp text never holds (a label may). The windows read the rollup instead (below); this
# one stays as what the rollup must always agree with (tests/db/test_rollup.py).
_PG_AGGREGATE_RAW = sa.text(
    """
    WITH agg AS (
        SELECT country, topic_key,
               min(timestamp::text || chr(1) || topic_label COLLATE "C")
                   FILTER (WHERE timestamp > :start) AS first_record,
               sum(count) FILTER (WHERE timestamp > :start) AS count,
               sum(count * confidence) FILTER (WHERE timestamp > :start) AS weighted_confidence,
               min(timestamp) AS first_seen,
               min(timestamp) FILTER (WHERE timestamp > :start) AS window_first_seen,
               coalesce(sum(count) FILTER (WHERE timestamp <= :start), 0) AS previous_count
        FROM trends_archive
        WHERE timestamp > :previous_start AND timestamp <= :end
        GROUP BY country, topic_key
    ), totals AS (
        SELECT *, (sum(previous_count) OVER (PARTITION BY country))::bigint AS previous_volume
        FROM agg
    )
    SELECT array_agg(country), array_agg(topic_key),
           array_agg(substr(first_record, strpos(first_record, chr(1)) + 1)),
           array_agg(count), array_agg(weighted_confidence),
           array_agg((extract(epoch FROM first_seen) * 1000000)::bigint),
           array_agg((extract(epoch FROM window_first_seen) * 1000000)::bigint),
           array_agg(previous_volume)
    FROM totals
    WHERE count IS NOT NULL
    """
)
# For the raw aggregate's transaction only: timestamp text in ISO and UTC (its label trick
# relies on it), and memory enough to hash a million rows without spilling to disk.
_PG_AGGREGATE_SETTINGS = (
    sa.text("SET LOCAL timezone = 'UTC'"),
    sa.text("SET LOCAL datestyle = 'ISO, YMD'"),
    sa.text("SET LOCAL work_mem = '256MB'"),
    # Compiling the expressions costs more than it saves on a scan this simple.
    sa.text("SET LOCAL jit = off"),
    # One process sums every group, in one order: the same window gives the same floats
    # (and rows in the same order) every time; parallel partial sums differ in the last bit.
    sa.text("SET LOCAL max_parallel_workers_per_gather = 0"),
)


# For a window's parts (db.rollup), with which copy of the dictionaries is current: the rows
# in one order every time, so the same window sums to the same bits (a parallel scan, or a
# sequential scan joining one already under way, starts elsewhere in the table).
_PG_PARTS_SETUP = sa.text(
    "SELECT set_config('jit', 'off', true),"
    " set_config('max_parallel_workers_per_gather', '0', true),"
    " set_config('synchronize_seqscans', 'off', true),"
    " pg_relation_filenode('trends_series'), pg_relation_filenode('trends_labels')"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class RecordLike(Protocol):
    """What :meth:`TrendRepository.upsert` reads from a record (timestamp aware UTC)."""

    @property
    def timestamp(self) -> datetime: ...
    @property
    def country(self) -> str: ...
    @property
    def topic_label(self) -> str: ...
    @property
    def topic_key(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def confidence(self) -> float: ...
    @property
    def sources(self) -> Sequence[str] | None: ...


_R = TypeVar("_R", bound=RecordLike)


@dataclass(frozen=True, slots=True)
class AggregateColumns:
    """A window's per (country, topic key) sums, column by column, for each topic a country
    has in the window: its label, count and weighted confidence there, its first sighting over
    the window and the one before it (``first_seen_us``), its earliest record in the window
    (``window_first_seen_us``, whose label it is), and the country's summed count in the window
    before (``previous_volumes``, the same on every row of a country). Times are microseconds
    since the Unix epoch (UTC). Iterating gives the eight lists in this order.

    ``coded``: the same columns as numpy arrays with integer codes for the names, when the
    reader had them (the rollup's), so that the maths need not build them again."""

    countries: list[str]
    topic_keys: list[str]
    labels: list[str]
    counts: list[int]
    weighted_confidences: list[float]
    first_seen_us: list[int]
    window_first_seen_us: list[int]
    previous_volumes: list[int]
    coded: rollup.CodedColumns | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __iter__(self) -> Iterator[list[Any]]:
        yield from (
            self.countries,
            self.topic_keys,
            self.labels,
            self.counts,
            self.weighted_confidences,
            self.first_seen_us,
            self.window_first_seen_us,
            self.previous_volumes,
        )


# A stored record as read: id, timestamp, country, topic_label, count, confidence, sources.
StoredRow = tuple[int, datetime, str, str, int, float, list[str] | None]


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What a batch did: new natural keys, changed records, and records already identical."""

    inserted: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class RowPage:
    """One page of stored rows, newest first, whether more follow, and how many match."""

    rows: list[StoredRow]
    has_next: bool
    total_count: int


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which records a listing holds; bounds are inclusive."""

    countries: Collection[str] | None = None
    topic_key: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if self.countries:
            clauses.append(_t.c.country.in_(sorted(self.countries)))
        if self.topic_key is not None:
            clauses.append(_t.c.topic_key == self.topic_key)
        if self.since is not None:
            clauses.append(_t.c.timestamp >= self.since)
        if self.until is not None:
            clauses.append(_t.c.timestamp <= self.until)
        return clauses


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a batch becomes columns: tens of thousands
    of short-lived objects, no cycles, and full collections would otherwise run several times
    per batch (graph.core.batches pauses it the same way while validating)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# A record's natural key, and its staging table columns in order, each read in one C call.
_natural_key = operator.attrgetter("country", "topic_key", "timestamp")
_staging_values = operator.attrgetter(*_PG_STAGING_COLUMNS)


def dedupe(rows: Sequence[_R]) -> list[_R]:
    """The rows with one per natural key, the last one winning (as if upserted in order)."""
    by_key = {_natural_key(r): r for r in rows}
    return list(by_key.values())


_T = TypeVar("_T")


class Maths(Protocol):
    """Runs CPU work whose input holds ``rows`` rows (graph.service.offload.maths: on a
    thread of its own when that is large, so the event loop keeps answering)."""

    def __call__(self, rows: int, fn: Callable[[], _T], /) -> Awaitable[_T]: ...


async def _here(rows: int, fn: Callable[[], _T], /) -> _T:
    """CPU work run where it is asked for."""
    return fn()


class TrendRepository:
    """The trend archive over one async engine (PostgreSQL or SQLite); ``maths`` runs a large
    window's CPU work once its rows are read and its connection returned."""

    def __init__(self, engine: AsyncEngine, *, maths: Maths = _here) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._rollup = rollup.RollupReader()
        self._maths = maths

    async def ping(self) -> None:
        """Raise StorageUnavailable if the database does not answer."""
        async with translated("ping"), self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def upsert(self, rows: Sequence[RecordLike]) -> UpsertResult:
        """Store a batch atomically: all of it or, on any error, none of it."""
        with _collector_paused():
            unique = dedupe(rows)
        if not unique:
            return UpsertResult(0, 0, len(rows))
        async with translated("ingest"), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                inserted, updated = await _upsert_postgresql(conn, unique)
            else:
                inserted, updated = await _upsert_sqlite(conn, unique)
        return UpsertResult(inserted, updated, len(rows) - inserted - updated)

    async def aggregate_window(
        self, previous_start: datetime, start: datetime, end: datetime
    ) -> AggregateColumns:
        """Per (country, topic key) sums over the window ``start < timestamp <= end``, with
        first sightings and previous volumes over ``previous_start < timestamp <= start``, in
        one pass over both, column by column."""
        if self.dialect == "postgresql":
            bounds = rollup.rollup_bounds(previous_start, start, end)
            async with translated("aggregate"), self.engine.connect() as conn, conn.begin():
                version = tuple((await conn.execute(_PG_PARTS_SETUP)).one()[3:])
                async with _driver(conn, "COPY (window parts) TO STDOUT") as driver:
                    read = await self._rollup.window(driver, version, bounds)
            columns, coded = await self._maths(read.size, read.columns)
            return AggregateColumns(*columns, coded=coded)
        async with translated("aggregate"), self.engine.connect() as conn:
            result = await conn.execute(_sqlite_aggregate(previous_start, start, end))
            table = AggregateColumns([], [], [], [], [], [], [], [])
            for c, k, label, n, w, ts, window_ts, previous in result:
                table.countries.append(c)
                table.topic_keys.append(k)
                table.labels.append(label)
                table.counts.append(int(n))
                table.weighted_confidences.append(float(w))
                table.first_seen_us.append((ts - _EPOCH) // _MICROSECOND)
                table.window_first_seen_us.append((window_ts - _EPOCH) // _MICROSECOND)
                table.previous_volumes.append(int(previous))
            return table

    async def page(
        self,
        where: RecordFilter,
        *,
        first: int,
        after: tuple[datetime, int] | None = None,
    ) -> RowPage:
        """Up to ``first`` records newest first, strictly after the cursor ``(timestamp, id)``."""
        clauses = where.clauses()
        stmt = sa.select(
            _t.c.id,
            _t.c.timestamp,
            _t.c.country,
            _t.c.topic_label,
            _t.c.count,
            _t.c.confidence,
            _t.c.sources,
        ).where(*clauses)
        if after is not None:
            ts, ident = after
            stmt = stmt.where(
                sa.or_(_t.c.timestamp < ts, sa.and_(_t.c.timestamp == ts, _t.c.id < ident))
            )
        stmt = stmt.order_by(_t.c.timestamp.desc(), _t.c.id.desc()).limit(first + 1)
        total = sa.select(sa.func.count()).select_from(_t).where(*clauses)
        async with translated("list trends"), self.engine.connect() as conn:
            rows: list[StoredRow] = [tuple(row) for row in await conn.execute(stmt)]
            total_count = int((await conn.execute(total)).scalar_one())
        return RowPage(rows[:first], len(rows) > first, total_count)


async def _aggregate_postgresql(
    engine: AsyncEngine, statement: sa.TextClause, bounds: dict[str, Any]
) -> AggregateColumns:
    """One aggregate on PostgreSQL, as eight arrays in one row."""
    async with translated("aggregate"), engine.connect() as conn, conn.begin():
        for setting in _PG_AGGREGATE_SETTINGS:
            await conn.execute(setting)
        columns = (await conn.execute(statement, bounds)).one()
    if columns[0] is None:  # no record in the window: array_agg of nothing
        return AggregateColumns([], [], [], [], [], [], [], [])
    return AggregateColumns(*(list(column) for column in columns))


async def _aggregate_from_archive(
    engine: AsyncEngine, previous_start: datetime, start: datetime, end: datetime
) -> AggregateColumns:
    """What :meth:`TrendRepository.aggregate_window` answers on PostgreSQL, computed from
    the archive alone, without the rollup: the reference the rollup is tested against."""
    bounds = {"previous_start": previous_start, "start": start, "end": end}
    return await _aggregate_postgresql(engine, _PG_AGGREGATE_RAW, bounds)


def _sqlite_aggregate(previous_start: datetime, start: datetime, end: datetime) -> sa.Select[Any]:
    """The window's sums over both windows in one pass, each country's previous volume by a
    window function over the groups, and the label through the natural key."""
    in_window = _t.c.timestamp > start
    groups = (
        sa.select(
            _t.c.country,
            _t.c.topic_key,
            sa.func.sum(sa.case((in_window, _t.c.count))).label("count"),
            sa.func.sum(sa.case((in_window, _t.c.count * _t.c.confidence))).label(
                "weighted_confidence"
            ),
            sa.func.min(_t.c.timestamp).label("first_seen"),
            sa.func.min(sa.case((in_window, _t.c.timestamp))).label("window_first_seen"),
            sa.func.sum(sa.case((in_window, 0), else_=_t.c.count)).label("previous_count"),
        )
        .where(_t.c.timestamp > previous_start, _t.c.timestamp <= end)
        .group_by(_t.c.country, _t.c.topic_key)
        .cte("groups")
    )
    totals = sa.select(
        groups,
        sa.func.sum(groups.c.previous_count)
        .over(partition_by=groups.c.country)
        .label("previous_volume"),
    ).cte("totals")
    first = _t.alias("first")
    return (
        sa.select(
            totals.c.country,
            totals.c.topic_key,
            first.c.topic_label,
            totals.c.count,
            totals.c.weighted_confidence,
            sa.type_coerce(totals.c.first_seen, _t.c.timestamp.type),
            sa.type_coerce(totals.c.window_first_seen, _t.c.timestamp.type),
            totals.c.previous_volume,
        )
        .join_from(
            totals,
            first,
            sa.and_(
                first.c.country == totals.c.country,
                first.c.topic_key == totals.c.topic_key,
                first.c.timestamp == totals.c.window_first_seen,
            ),
        )
        .where(totals.c.count.is_not(None))
    )


async def _upsert_postgresql(conn: AsyncConnection, rows: list[RecordLike]) -> tuple[int, int]:
    # Through SQLAlchemy first: that opens the transaction the COPY then joins.
    await conn.execute(_PG_CREATE_STAGING)
    with _collector_paused():
        # Only the sources change on the way: the jsonb column takes them as JSON text.
        records = [
            values if values[6] is None else (*values[:6], json.dumps(values[6]))
            for values in map(_staging_values, rows)
        ]
    await _copy(conn, _PG_STAGING, _PG_STAGING_COLUMNS, records)
    inserted, written = (await conn.execute(_PG_UPSERT)).one()
    return int(inserted), int(written) - int(inserted)


async def _copy(
    conn: AsyncConnection, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
) -> None:
    """Binary COPY of ``records`` into ``table`` on the connection's asyncpg connection, in
    its open transaction."""
    async with _driver(conn, f"COPY {table} FROM STDIN (FORMAT binary)") as driver:
        await driver.copy_records_to_table(table, records=records, columns=list(columns))


@contextlib.asynccontextmanager
async def _driver(conn: AsyncConnection, statement: str) -> AsyncIterator[Any]:
    """The connection's asyncpg connection, for what SQLAlchemy has no call for (COPY), in
    its open transaction. A failure comes out as SQLAlchemy would have raised it (an
    IntegrityError, a DataError, an invalidated connection), so callers and `db.errors` see
    one kind of exception whichever way a statement travelled."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        yield driver
    except Exception as exc:  # an asyncpg error: translate it as SQLAlchemy's adapter does
        closed = bool(driver.is_closed())
        try:
            raw.dbapi_connection._handle_exception(exc)  # type: ignore[union-attr]
        except conn.dialect.loaded_dbapi.Error as adapted:
            # Only a driver error is wrapped; anything else (an OSError, a TimeoutError, a
            # bug's ValueError) propagates as it is: DBAPIError.instance would make it a
            # StatementError, which db.errors cannot tell from a bug (a 500, not a 503).
            raise sa.exc.DBAPIError.instance(
                statement,
                None,
                adapted,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=closed,
                dialect=conn.dialect,
            ) from exc
        raise


async def _upsert_sqlite(conn: AsyncConnection, rows: list[RecordLike]) -> tuple[int, int]:
    inserted = updated = 0
    for start in range(0, len(rows), _SQLITE_ROWS_PER_STATEMENT):
        chunk = rows[start : start + _SQLITE_ROWS_PER_STATEMENT]
        keys = [(r.country, r.topic_key, r.timestamp) for r in chunk]
        # SQLite's RETURNING cannot tell an insert from an update: count existing keys first,
        # inside the same transaction.
        existing = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(_t).where(sa.tuple_(*_NATURAL_KEY).in_(keys))
            )
        ).scalar_one()
        insert = sqlite.insert(_t).values([_columns(r) for r in chunk])
        stmt = insert.on_conflict_do_update(
            index_elements=list(_NATURAL_KEY),
            set_={name: insert.excluded[name] for name in _PAYLOAD},
            where=sa.or_(
                *(_t.c[name].is_distinct_from(insert.excluded[name]) for name in _PAYLOAD)
            ),
        ).returning(_t.c.id)
        written = len((await conn.execute(stmt)).all())
        inserted += len(chunk) - int(existing)
        updated += written - (len(chunk) - int(existing))
    return inserted, updated


def _columns(row: RecordLike) -> dict[str, Any]:
    return {
        "timestamp": row.timestamp,
        "country": row.country,
        "topic_label": row.topic_label,
        "topic_key": row.topic_key,
        "count": row.count,
        "confidence": row.confidence,
        "sources": row.sources,
    }
