"""The trend archive: the seed's columns and index, plus topic key and natural key.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from db.tables import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trends_archive",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
        ),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("topic_label", sa.Text(), nullable=False),
        sa.Column("topic_key", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("sources", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.UniqueConstraint("country", "topic_key", "timestamp", name="uq_trends_natural_key"),
        sa.CheckConstraint("count >= 1", name="ck_trends_count_positive"),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name="ck_trends_confidence_range"
        ),
    )
    op.create_index("idx_trends_country_timestamp", "trends_archive", ["country", "timestamp"])
    op.create_index("idx_trends_timestamp", "trends_archive", ["timestamp"])


def downgrade() -> None:
    op.drop_index("idx_trends_timestamp", table_name="trends_archive")
    op.drop_index("idx_trends_country_timestamp", table_name="trends_archive")
    op.drop_table("trends_archive")
