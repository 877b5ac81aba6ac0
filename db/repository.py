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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
# A window from the hourly rollup (migration 0003): the rollup rows of the whole hours in
# ``previous_start < timestamp <= end`` that lie on one side of ``start``, plus the archive's
# rows in the partial hours at the three edges (none when the window ends on the hour), as
# one stream of (series, in the window?, count, weighted, first microseconds, first record),
# grouped by the integer series id. Counts are summed as float8, exact below 2^53 and much
# cheaper than bigint's numeric sum. The label of a series' earliest record in the window
# comes from the smallest "first record" key, {first_key}: either one bigint, microseconds
# after ``previous_start`` times ``label_shift`` plus the label id (when every label id is
# below the shift: the cheap case), or an [microseconds, label id] array. Timestamps are
# unique within a series, so the label never decides. A country's previous volume is a
# second, small GROUP BY over the groups, before those with no record in the window go.
_PG_ROLLUP_AGGREGATE = """
    WITH parts AS (
        SELECT r.series_id, r.hour > :start AS in_window, r.count_sum::float8 AS count_sum,
               r.weighted_sum, r.first_us, {rollup_key} AS first_key
        FROM trends_rollup_hourly AS r
        WHERE r.hour > :whole_from AND r.hour <= :whole_to AND r.hour <> :straddled
        UNION ALL
        SELECT e.series_id, e.in_window, e.count_sum, e.weighted_sum, e.first_us,
               {edge_key}
        FROM (
            SELECT s.id AS series_id, a.timestamp > :start AS in_window,
                   a.count::float8 AS count_sum, a.count * a.confidence AS weighted_sum,
                   (extract(epoch FROM a.timestamp) * 1000000)::bigint AS first_us,
                   l.id AS first_label_id
            FROM trends_archive AS a
            JOIN trends_series AS s ON s.country = a.country AND s.topic_key = a.topic_key
            JOIN trends_labels AS l ON l.label = a.topic_label
            WHERE a.timestamp > :previous_start AND a.timestamp <= :end
              AND ((a.timestamp > :previous_start AND a.timestamp <= :whole_from)
               OR (a.timestamp > :straddled_from AND a.timestamp <= :straddled)
               OR (a.timestamp > :whole_to AND a.timestamp <= :end))
        ) AS e
    ), groups AS MATERIALIZED (
        SELECT s.country, s.topic_key, g.*
        FROM (
            SELECT series_id,
                   sum(count_sum) FILTER (WHERE in_window) AS count,
                   sum(weighted_sum) FILTER (WHERE in_window) AS weighted_confidence,
                   min(first_us) AS first_seen,
                   min(first_key) FILTER (WHERE in_window) AS window_first,
                   coalesce(sum(count_sum) FILTER (WHERE NOT in_window), 0) AS previous_count
            FROM parts
            GROUP BY series_id
        ) AS g
        JOIN trends_series AS s ON s.id = g.series_id
    ), volumes AS (
        SELECT country, sum(previous_count)::bigint AS previous_volume
        FROM groups GROUP BY country
    )
    SELECT array_agg(country), array_agg(topic_key), array_agg(label), array_agg(count),
           array_agg(weighted_confidence), array_agg(first_seen), array_agg(window_first_us),
           array_agg(previous_volume)
    FROM (
        SELECT g.country, g.topic_key, l.label, g.count::bigint AS count,
               g.weighted_confidence, g.first_seen, {window_first_us} AS window_first_us,
               v.previous_volume
        FROM groups AS g
        JOIN volumes AS v ON v.country = g.country
        JOIN trends_labels AS l ON l.id = {window_first_label}
        WHERE g.count IS NOT NULL
        ORDER BY g.country COLLATE "C", g.topic_key COLLATE "C"
    ) AS rows
"""
_PG_AGGREGATE_PACKED = sa.text(
    _PG_ROLLUP_AGGREGATE.format(
        first_key="packed",
        rollup_key="(r.first_us - :base_us) * :label_shift + r.first_label_id",
        edge_key="(e.first_us - :base_us) * :label_shift + e.first_label_id",
        window_first_us="g.window_first / :label_shift + :base_us",
        window_first_label="g.window_first % :label_shift",
    )
)
_PG_AGGREGATE_ARRAY = sa.text(
    _PG_ROLLUP_AGGREGATE.format(
        first_key="array",
        rollup_key="ARRAY[r.first_us, r.first_label_id::bigint]",
        edge_key="ARRAY[e.first_us, e.first_label_id::bigint]",
        window_first_us="g.window_first[1]",
        window_first_label="g.window_first[2]",
    )
)
# The largest label id, to choose between the two.
_PG_MAX_LABEL = sa.text("SELECT coalesce(max(id), 0) FROM trends_labels")
_HOUR = timedelta(hours=1)


def _hour_floor(moment: datetime) -> datetime:
    """The whole hour at or before ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_end(moment: datetime) -> datetime:
    """The end of the rollup hour ``moment`` falls in (hour - 1 h < moment <= hour)."""
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + _HOUR


def _rollup_bounds(previous_start: datetime, start: datetime, end: datetime) -> dict[str, Any]:
    """Where a window's whole hours are: rollup hours in ``(whole_from, whole_to]`` except
    ``straddled`` (the hour ``start`` cuts in two, when it is not on the hour); the archive
    gives the rest of ``(previous_start, end]``: ``(previous_start, whole_from]``, the
    straddled hour and ``(whole_to, end]`` (empty when a bound is on the hour)."""
    span_bits = max(0, (end - previous_start) // _MICROSECOND).bit_length()
    whole_from = _hour_end(previous_start)
    whole_to = max(whole_from, _hour_floor(end))
    cut = _hour_end(start)
    # When no rollup hour is cut, name one outside the rollup's range: its raw range then
    # lies within (previous_start, whole_from], read already.
    straddled = cut if cut != start and whole_from < cut <= whole_to else whole_from
    return {
        "previous_start": previous_start,
        "start": start,
        "end": end,
        "whole_from": whole_from,
        "whole_to": whole_to,
        "straddled": straddled,
        "straddled_from": straddled - _HOUR,
        # Microseconds after previous_start fit in span_bits; the label id gets the rest of
        # a bigint (62 bits, so that the product stays positive and below 2^63).
        "base_us": (previous_start - _EPOCH) // _MICROSECOND,
        "label_shift": 1 << max(0, 62 - span_bits),
    }


# For the aggregate's transaction only: timestamp text in ISO and UTC (the raw query's label
# trick relies on it), and memory enough to hash a million rows without spilling to disk.
_PG_AGGREGATE_SETTINGS = (
    sa.text("SET LOCAL timezone = 'UTC'"),
    sa.text("SET LOCAL datestyle = 'ISO, YMD'"),
    sa.text("SET LOCAL work_mem = '256MB'"),
    # Compiling the expressions costs more than it saves on a scan this simple.
    sa.text("SET LOCAL jit = off"),
    # The planner cannot estimate the rollup's groups and would look a million of them up
    # one by one through the dictionaries' indexes.
    sa.text("SET LOCAL enable_nestloop = off"),
    # One process sums every group, in one order: the same window gives the same floats
    # (and rows in the same order) every time; parallel partial sums differ in the last bit.
    sa.text("SET LOCAL max_parallel_workers_per_gather = 0"),
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


class AggregateColumns(NamedTuple):
    """A window's per (country, topic key) sums, column by column, for each topic a country
    has in the window: its label, count and weighted confidence there, its first sighting over
    the window and the one before it (``first_seen_us``), its earliest record in the window
    (``window_first_seen_us``, whose label it is), and the country's summed count in the window
    before (``previous_volumes``, the same on every row of a country). Times are microseconds
    since the Unix epoch (UTC)."""

    countries: list[str]
    topic_keys: list[str]
    labels: list[str]
    counts: list[int]
    weighted_confidences: list[float]
    first_seen_us: list[int]
    window_first_seen_us: list[int]
    previous_volumes: list[int]


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


class TrendRepository:
    """The trend archive over one async engine (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

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
            bounds = _rollup_bounds(previous_start, start, end)
            return await _aggregate_postgresql(self.engine, None, bounds)
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
    engine: AsyncEngine, statement: sa.TextClause | None, bounds: dict[str, Any]
) -> AggregateColumns:
    """One aggregate on PostgreSQL; ``None``: from the rollup, packed keys when they fit."""
    async with translated("aggregate"), engine.connect() as conn, conn.begin():
        for setting in _PG_AGGREGATE_SETTINGS:
            await conn.execute(setting)
        if statement is None:
            largest = int((await conn.execute(_PG_MAX_LABEL)).scalar_one())
            packed = largest < bounds["label_shift"] and bounds["label_shift"] > 1
            statement = _PG_AGGREGATE_PACKED if packed else _PG_AGGREGATE_ARRAY
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
    its open transaction. A failure comes out as SQLAlchemy would have raised it (an
    IntegrityError, a DataError, an invalidated connection), so callers and `db.errors` see
    one kind of exception whichever way a statement travelled."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        await driver.copy_records_to_table(table, records=records, columns=list(columns))
    except Exception as exc:  # an asyncpg error: translate it as SQLAlchemy's adapter does
        closed = bool(driver.is_closed())
        try:
            raw.dbapi_connection._handle_exception(exc)  # type: ignore[union-attr]
        except Exception as adapted:
            raise sa.exc.DBAPIError.instance(
                f"COPY {table} FROM STDIN (FORMAT binary)",
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
