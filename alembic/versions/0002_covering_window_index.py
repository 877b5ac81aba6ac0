"""The window index carries the aggregate's columns, so a window is summed from the index alone.

On PostgreSQL ``idx_trends_timestamp`` becomes ``(timestamp) INCLUDE (country, topic_key,
count, confidence, topic_label)``: the window aggregation turns into an index-only scan instead
of a million random visits to the table. SQLite has no INCLUDE: there the index stays as it is.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported from db.tables: a migration must not change when the model does.
COVERED = ["country", "topic_key", "count", "confidence", "topic_label"]


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_index("idx_trends_timestamp", table_name="trends_archive")
    op.create_index(
        "idx_trends_timestamp",
        "trends_archive",
        ["timestamp"],
        postgresql_include=COVERED,
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.drop_index("idx_trends_timestamp", table_name="trends_archive")
    op.create_index("idx_trends_timestamp", "trends_archive", ["timestamp"])
