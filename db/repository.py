"""Queries over the trend archive: bulk upsert, window aggregation and keyset pages.

Everything heavy happens in SQL. The aggregation returns one row per (country, topic key) in a
window, never the raw records, and the upsert writes a whole batch in one statement.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.models import trends_table

_t = trends_table
_NATURAL_KEY = (_t.c.country, _t.c.topic_key, _t.c.timestamp)
_PAYLOAD = ("topic_label", "count", "confidence", "sources")
# SQLite allows 32,766 bound variables per statement; 7 columns a row stays below it.
_SQLITE_ROWS_PER_STATEMENT = 4_000

# One statement for a whole batch however large: the columns travel as seven arrays.
_PG_UPSERT = sa.text(
    """
    INSERT INTO trends_archive
        (timestamp, country, topic_label, topic_key, count, confidence, sources)
    SELECT r.timestamp, r.country, r.topic_label, r.topic_key, r.count, r.confidence,
           r.sources::jsonb
    FROM unnest(
        CAST(:timestamp AS timestamptz[]), CAST(:country AS varchar[]),
        CAST(:topic_label AS text[]), CAST(:topic_key AS text[]),
        CAST(:count AS integer[]), CAST(:confidence AS float8[]), CAST(:sources AS text[])
    ) AS r(timestamp, country, topic_label, topic_key, count, confidence, sources)
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
    """
)


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A validated record ready to store (timestamp aware UTC, country upper case)."""

    timestamp: datetime
    country: str
    topic_label: str
    topic_key: str
    count: int
    confidence: float
    sources: list[str] | None


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """One country's activity on one topic key inside a window."""

    country: str
    topic_key: str
    label: str
    count: int
    weighted_confidence: float
    first_seen: datetime
    recent_count: int


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as stored, with its id."""

    id: int
    timestamp: datetime
    country: str
    topic_label: str
    count: int
    confidence: float
    sources: list[str] | None


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What a batch did: new natural keys, changed records, and records already identical."""

    inserted: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records, newest first, and whether more follow."""

    records: list[StoredRecord]
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


def dedupe(rows: Sequence[RecordRow]) -> list[RecordRow]:
    """The rows with one per natural key, the last one winning (as if upserted in order)."""
    by_key = {(r.country, r.topic_key, r.timestamp): r for r in rows}
    return list(by_key.values())


class TrendRepository:
    """The trend archive over one async engine (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def upsert(self, rows: Sequence[RecordRow]) -> UpsertResult:
        """Store a batch atomically: all of it or, on any error, none of it."""
        unique = dedupe(rows)
        if not unique:
            return UpsertResult(0, 0, len(rows))
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                inserted, updated = await _upsert_postgresql(conn, unique)
            else:
                inserted, updated = await _upsert_sqlite(conn, unique)
        return UpsertResult(inserted, updated, len(rows) - inserted - updated)

    async def aggregate_window(
        self, start: datetime, end: datetime, recent_after: datetime
    ) -> list[AggregateRow]:
        """Per (country, topic key) sums over ``start < timestamp <= end``."""
        agg = (
            sa.select(
                _t.c.country,
                _t.c.topic_key,
                sa.func.sum(_t.c.count).label("count"),
                sa.func.sum(_t.c.count * _t.c.confidence).label("weighted_confidence"),
                sa.func.min(_t.c.timestamp).label("first_seen"),
                sa.func.sum(sa.case((_t.c.timestamp > recent_after, _t.c.count), else_=0)).label(
                    "recent_count"
                ),
            )
            .where(_t.c.timestamp > start, _t.c.timestamp <= end)
            .group_by(_t.c.country, _t.c.topic_key)
            .cte("agg")
        )
        # The label shown for a topic is its earliest record's: found through the natural key.
        first = _t.alias("first")
        stmt = sa.select(
            agg.c.country,
            agg.c.topic_key,
            first.c.topic_label,
            agg.c.count,
            agg.c.weighted_confidence,
            agg.c.first_seen,
            agg.c.recent_count,
        ).join_from(
            agg,
            first,
            sa.and_(
                first.c.country == agg.c.country,
                first.c.topic_key == agg.c.topic_key,
                first.c.timestamp == agg.c.first_seen,
            ),
        )
        async with self.engine.connect() as conn:
            result = await conn.execute(stmt)
            return [
                AggregateRow(c, k, label, int(n), float(w), ts, int(r))
                for c, k, label, n, w, ts, r in result
            ]

    async def page(
        self,
        where: RecordFilter,
        *,
        first: int,
        after: tuple[datetime, int] | None = None,
    ) -> Page:
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
        async with self.engine.connect() as conn:
            rows = [StoredRecord(*row) for row in await conn.execute(stmt)]
            total_count = int((await conn.execute(total)).scalar_one())
        return Page(rows[:first], len(rows) > first, total_count)


async def _upsert_postgresql(conn: AsyncConnection, rows: list[RecordRow]) -> tuple[int, int]:
    params: dict[str, list[Any]] = {
        "timestamp": [r.timestamp for r in rows],
        "country": [r.country for r in rows],
        "topic_label": [r.topic_label for r in rows],
        "topic_key": [r.topic_key for r in rows],
        "count": [r.count for r in rows],
        "confidence": [r.confidence for r in rows],
        "sources": [None if r.sources is None else json.dumps(r.sources) for r in rows],
    }
    flags = (await conn.execute(_PG_UPSERT, params)).scalars().all()
    inserted = sum(1 for f in flags if f)
    return inserted, len(flags) - inserted


async def _upsert_sqlite(conn: AsyncConnection, rows: list[RecordRow]) -> tuple[int, int]:
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


def _columns(row: RecordRow) -> dict[str, Any]:
    return {
        "timestamp": row.timestamp,
        "country": row.country,
        "topic_label": row.topic_label,
        "topic_key": row.topic_key,
        "count": row.count,
        "confidence": row.confidence,
        "sources": row.sources,
    }
