"""Six-hour blocks over the hourly rollup, built in the background, used once current.

PostgreSQL only. A large window is as slow as the rows PostgreSQL sends for it: a 24 h window
reads 48 hours (the window and the one before it), and with 10 million records in it that is
3.7 million hourly rows, about a second of PostgreSQL's time. ``trends_rollup_blocks`` holds
the same sums per six hours (blocks ending at 00, 06, 12 and 18 UTC) and series: 44% fewer
rows on that window.

Unlike the hourly rollup, the blocks are not kept in the writer's transaction (a second
upsert per ingest would cost the ingest as much as the first). Instead, each write notes the
blocks it touched: ``trends_rollup_block_state`` counts the writes per block (``changes``),
bumped by statement-level triggers in the writer's transaction, and records which count the
block's rows were built at (``built``). A window reads a block's rows only when the two are
equal, in the same statement (the same snapshot) as everything else it reads; any other block
is read hour by hour, as before. So a window's answer is the same whether its blocks are
built or not, and an ingest costs one more tiny upsert (the few blocks a batch touches).

db.blocks builds the blocks whose writes have settled, in the background. The upgrade takes
the archive's write lock only to note every block the rollup holds as not built (a scan of
the hourly rollup: about a second per 10 million records); building them is db.blocks' work.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from db.tables import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported from db: a migration must not change when the code does. The
# rollup's own lock (migration 0003): the blocks' notes are taken in the same order as the
# rollup's rows, so concurrent writers cannot deadlock over them.
ROLLUP_LOCK_ID = 0x74726E64726F6C6C  # "trndroll"
# The end of the six-hour block a timestamp falls in (block - 6 h < timestamp <= block), in
# UTC whatever the session's time zone (date_bin counts from an absolute origin).
BLOCK = (
    "(date_bin(interval '6 hours', {ts} - interval '1 microsecond', timestamptz 'epoch')"
    " + interval '6 hours')"
)


def _note(*tables: str) -> str:
    """A trigger function's body: note each block that ``tables``' rows fall in."""
    blocks = " UNION ".join(
        f"SELECT DISTINCT {BLOCK.format(ts='timestamp')} FROM {t}" for t in tables
    )
    return f"""
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM {tables[-1]}) THEN RETURN NULL; END IF;
        PERFORM pg_advisory_xact_lock({ROLLUP_LOCK_ID});
        INSERT INTO trends_rollup_block_state AS s (block, changes, built, changed_at)
        SELECT b.block, 1, 0, clock_timestamp() FROM ({blocks}) AS b(block)
        ORDER BY 1
        ON CONFLICT (block) DO UPDATE SET changes = s.changes + 1, changed_at = clock_timestamp();
        RETURN NULL;
    END
    """


_FUNCTIONS = {
    "trends_blocks_on_insert": _note("new_rows"),
    "trends_blocks_on_update": _note("old_rows", "new_rows"),
    "trends_blocks_on_delete": _note("old_rows"),
    "trends_blocks_on_truncate": """
    BEGIN
        TRUNCATE trends_rollup_blocks, trends_rollup_block_state;
        RETURN NULL;
    END
    """,
}

# Named to sort before 0003's triggers, which PostgreSQL fires after these (by name).
_TRIGGERS = {
    "trends_blocks_insert": (
        "AFTER INSERT ON trends_archive REFERENCING NEW TABLE AS new_rows",
        "trends_blocks_on_insert",
    ),
    "trends_blocks_update": (
        "AFTER UPDATE ON trends_archive REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "trends_blocks_on_update",
    ),
    "trends_blocks_delete": (
        "AFTER DELETE ON trends_archive REFERENCING OLD TABLE AS old_rows",
        "trends_blocks_on_delete",
    ),
    "trends_blocks_truncate": ("AFTER TRUNCATE ON trends_archive", "trends_blocks_on_truncate"),
}


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # Writes wait from here to the commit (reads go on): none may fall between the notes
    # below and the triggers.
    op.execute("LOCK TABLE trends_archive IN SHARE ROW EXCLUSIVE MODE")
    op.create_table(
        "trends_rollup_blocks",
        sa.Column("block", UTCDateTime(), primary_key=True),
        sa.Column("series_id", sa.Integer(), primary_key=True),
        sa.Column("count_sum", sa.BigInteger(), nullable=False),
        sa.Column("weighted_sum", sa.Float(), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("first_label_id", sa.Integer(), nullable=False),
    )
    op.create_table(
        "trends_rollup_block_state",
        sa.Column("block", UTCDateTime(), primary_key=True),
        # Writes noted in the block, and how many of them its rows were built from.
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("built", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO trends_rollup_block_state (block, changes, built, changed_at)"
        f" SELECT DISTINCT {BLOCK.format(ts='hour')}, 1, 0, now() FROM trends_rollup_hourly"
    )
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}$body$"
        )
    for name, (when, function) in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    op.execute("ANALYZE trends_rollup_block_state")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON trends_archive")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("trends_rollup_block_state")
    op.drop_table("trends_rollup_blocks")
