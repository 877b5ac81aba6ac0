"""The trend archive table.

Columns and the ``(country, timestamp)`` index are the seed's ``trends_archive``; trendmap adds
``topic_key`` (the topic's identity) and a unique natural key ``(country, topic_key, timestamp)``
so that re-ingesting a record replaces it instead of duplicating it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``TIMESTAMPTZ``. SQLite has no time zones, so values are stored as naive
    UTC text in a fixed-width format, which keeps string order equal to time order.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: trendmap stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SOURCES_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WINDOW_INDEX_COLUMNS = ("country", "topic_key", "count", "confidence", "topic_label")


class TrendRecord(SQLModel, table=True):
    """One observation: how much a topic trended in a country at a moment."""

    __tablename__ = "trends_archive"
    __table_args__ = (
        sa.UniqueConstraint("country", "topic_key", "timestamp", name="uq_trends_natural_key"),
        sa.Index("idx_trends_country_timestamp", "country", "timestamp"),
        # Window scans read every column they sum from this index (PostgreSQL INCLUDE).
        sa.Index(
            "idx_trends_timestamp", "timestamp", postgresql_include=list(WINDOW_INDEX_COLUMNS)
        ),
        sa.CheckConstraint("count >= 1", name="ck_trends_count_positive"),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name="ck_trends_confidence_range"
        ),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(ID_TYPE, primary_key=True))
    timestamp: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    country: str = Field(sa_column=sa.Column(sa.String(2), nullable=False))
    topic_label: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    topic_key: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    count: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    confidence: float = Field(sa_column=sa.Column(sa.Float(), nullable=False))
    sources: list[str] | None = Field(default=None, sa_column=sa.Column(SOURCES_TYPE))


trends_table: sa.Table = TrendRecord.__table__  # type: ignore[attr-defined]
metadata: sa.MetaData = SQLModel.metadata


# The hourly rollup (PostgreSQL only; migration 0003 creates it with the triggers that keep it
# exact, SQLite aggregates the archive itself). A series is one (country, topic key) and a
# label is one spelling, each under a small integer: a window groups integers, not text.
# ``hour`` is the end of the hour a record falls in, ``hour - 1 h < timestamp <= hour``,
# the same left-open intervals as the windows, so whole hours of a window are whole rows.
# ``first_us`` is the hour's earliest timestamp (microseconds since the epoch) and
# ``first_label_id`` the label of the record there. No foreign keys: only the triggers write
# these tables, and a key check per rollup row would cost every ingest.
POSTGRESQL_ONLY_TABLES = (
    "trends_series",
    "trends_labels",
    "trends_rollup_hourly",
    "trends_rollup_blocks",
    "trends_rollup_block_state",
)

series_table = sa.Table(
    "trends_series",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("topic_key", sa.Text(), nullable=False),
    sa.UniqueConstraint("country", "topic_key", name="uq_trends_series"),
)
labels_table = sa.Table(
    "trends_labels",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("label", sa.Text(), nullable=False),
    sa.UniqueConstraint("label", name="uq_trends_labels"),
)


def _sums_table(name: str, period: str) -> sa.Table:
    """A rollup's table: per period (the end of its span) and series, the sums of its records."""
    return sa.Table(
        name,
        metadata,
        sa.Column(period, UTCDateTime(), primary_key=True),
        sa.Column("series_id", sa.Integer(), primary_key=True),
        sa.Column("count_sum", sa.BigInteger(), nullable=False),
        sa.Column("weighted_sum", sa.Float(), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("first_label_id", sa.Integer(), nullable=False),
    )


rollup_table = _sums_table("trends_rollup_hourly", "hour")

# Migration 0004's six-hour blocks over the hourly rollup, built in the background (db.blocks):
# ``block`` is the end of its six hours (00, 06, 12, 18 UTC). A window reads a block's rows only
# while ``built`` equals ``changes``, the count of writes the archive's triggers noted in it.
blocks_table = _sums_table("trends_rollup_blocks", "block")
block_state_table = sa.Table(
    "trends_rollup_block_state",
    metadata,
    sa.Column("block", UTCDateTime(), primary_key=True),
    sa.Column("changes", sa.BigInteger(), nullable=False),
    sa.Column("built", sa.BigInteger(), nullable=False),
    sa.Column("changed_at", UTCDateTime(), nullable=False),
)
