"""Queries for exploring the archive: its extent, and per (country, topic key) cells of a span.

Plain rows out, the same on PostgreSQL and SQLite. A cell's label is the label of its earliest
record, found through the natural key (a country holds one record per topic and instant).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from db.errors import translated
from db.tables import trends_table

__all__ = ["CellRow", "ExploringRepository", "RecordRow", "SpanRow"]

_t = trends_table

# first timestamp, last timestamp, records, distinct countries (None, None, 0, 0 when empty)
SpanRow = tuple[datetime | None, datetime | None, int, int]
# country, topic key, earliest record's label, summed count, summed count x confidence,
# first timestamp, last timestamp
CellRow = tuple[str, str, str, int, float, datetime, datetime]
# timestamp, topic key, count, confidence
RecordRow = tuple[datetime, str, int, float]


class ExploringRepository:
    """Read-only questions about the trend archive over one async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def span(self) -> SpanRow:
        """The earliest and latest timestamp, the number of records and of countries."""
        stmt = sa.select(
            sa.func.min(_t.c.timestamp),
            sa.func.max(_t.c.timestamp),
            sa.func.count(),
            sa.func.count(sa.distinct(_t.c.country)),
        )
        async with translated("data span"), self.engine.connect() as conn:
            first, last, records, countries = (await conn.execute(stmt)).one()
        return first, last, int(records), int(countries)

    async def window_cells(
        self, start: datetime, end: datetime, needle: str | None = None
    ) -> list[CellRow]:
        """Cells over ``start < timestamp <= end``; with a needle, only topic keys holding it."""
        clauses = [_t.c.timestamp > start, _t.c.timestamp <= end]
        if needle is not None:
            clauses.append(self._holds(needle))
        return await self._cells(clauses, "topics")

    async def topic_cells(self, key: str, since: datetime, until: datetime) -> list[CellRow]:
        """One topic key's cells over ``since <= timestamp <= until``."""
        clauses = [_t.c.topic_key == key, _t.c.timestamp >= since, _t.c.timestamp <= until]
        return await self._cells(clauses, "topic spread")

    async def country_records(
        self, country: str, start: datetime, end: datetime
    ) -> list[RecordRow]:
        """One country's records over ``start < timestamp <= end``, oldest first."""
        stmt = (
            sa.select(_t.c.timestamp, _t.c.topic_key, _t.c.count, _t.c.confidence)
            .where(_t.c.country == country, _t.c.timestamp > start, _t.c.timestamp <= end)
            .order_by(_t.c.timestamp, _t.c.topic_key)
        )
        async with translated("hotspot history"), self.engine.connect() as conn:
            result = await conn.execute(stmt)
            return [(moment, key, int(n), float(c)) for moment, key, n, c in result]

    def _holds(self, needle: str) -> sa.ColumnElement[bool]:
        """The topic key contains ``needle`` as it is (no LIKE wildcards, no case rules)."""
        if self.dialect == "postgresql":
            return sa.func.strpos(_t.c.topic_key, needle) > 0
        return sa.func.instr(_t.c.topic_key, needle) > 0

    async def _cells(self, clauses: list[sa.ColumnElement[bool]], action: str) -> list[CellRow]:
        async with translated(action), self.engine.connect() as conn:
            result = await conn.execute(_cells_select(clauses))
            return [
                (country, key, label, int(n), float(w), first, last)
                for country, key, label, n, w, first, last in result
            ]


def _cells_select(clauses: list[sa.ColumnElement[bool]]) -> sa.Select[Any]:
    agg = (
        sa.select(
            _t.c.country,
            _t.c.topic_key,
            sa.func.sum(_t.c.count).label("count"),
            sa.func.sum(_t.c.count * _t.c.confidence).label("weighted_confidence"),
            sa.func.min(_t.c.timestamp).label("first_seen"),
            sa.func.max(_t.c.timestamp).label("last_seen"),
        )
        .where(*clauses)
        .group_by(_t.c.country, _t.c.topic_key)
        .cte("cells")
    )
    first = _t.alias("first")
    return sa.select(
        agg.c.country,
        agg.c.topic_key,
        first.c.topic_label,
        agg.c.count,
        agg.c.weighted_confidence,
        agg.c.first_seen,
        agg.c.last_seen,
    ).join_from(
        agg,
        first,
        sa.and_(
            first.c.country == agg.c.country,
            first.c.topic_key == agg.c.topic_key,
            first.c.timestamp == agg.c.first_seen,
        ),
    )
