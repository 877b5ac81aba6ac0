"""An hourly rollup of the archive per (country, topic key), kept exact by triggers.

PostgreSQL only: SQLite keeps aggregating the archive itself (an embedded database holds far
fewer records, and both give the same answers). ``trends_rollup_hourly`` holds, per hour and
series, the summed count, the summed count x confidence, the earliest timestamp and that
record's label; a window reads its whole hours from it and only the partial hours at its edges
from the archive (db.repository).

Statement-level triggers with transition tables keep it exact for every writer (the ingest's
upsert, a COPY, a hand-written UPDATE or DELETE, a TRUNCATE), in the writer's transaction:
inserted rows add to their hours, updated rows add new minus old (their timestamps, part of
the natural key, do not move) and take over the hour's label when they are its earliest
record; a DELETE, or an UPDATE that moves a record to another key, recomputes the hours it
touched from the archive. A statement that writes no row (an unchanged re-ingest) does nothing.
The triggers of concurrent transactions take one advisory lock, held to commit, before they
touch the rollup or its dictionaries: the rollup's rows and the dictionaries' new entries are
then never locked in two orders at once, so concurrent ingests cannot deadlock there (the
archive rows themselves are still written in parallel).

The upgrade locks the archive against writes (reads go on), creates and backfills the rollup
in one pass over the archive, and installs the triggers before the lock goes: no write can fall
between the backfill and the triggers. Writes wait for the backfill: 20 s for a million
records on the (shared, busy) 2-core benchmark machine, and proportionally more on a bigger
archive; run it in a quiet moment, or backfill in batches first if that is too long.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from db.tables import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported from db: a migration must not change when the code does.
ROLLUP_LOCK_ID = 0x74726E64726F6C6C  # "trndroll"
# The end of the hour a timestamp falls in (hour - 1 h < timestamp <= hour), in UTC whatever
# the session's time zone; and a timestamp as microseconds since the epoch (exact: numeric).
HOUR = "(date_trunc('hour', {ts} - interval '1 microsecond', 'UTC') + interval '1 hour')"
MICROS = "(extract(epoch FROM {ts}) * 1000000)::bigint"


def _hour(ts: str) -> str:
    return HOUR.format(ts=ts)


def _micros(ts: str) -> str:
    return MICROS.format(ts=ts)


# New series and labels of a set of archive rows ``{rows}``, in the dictionaries. Most of a
# batch's series exist already: looking them up is cheaper than letting each conflict. Sorted,
# so that (with the advisory lock) no two writers wait on each other's new entries.
def _dictionaries(rows: str) -> str:
    return f"""
    INSERT INTO trends_series (country, topic_key)
    SELECT n.country, n.topic_key FROM (SELECT DISTINCT country, topic_key FROM {rows}) AS n
    WHERE NOT EXISTS (
        SELECT 1 FROM trends_series AS s WHERE s.country = n.country AND s.topic_key = n.topic_key
    )
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    INSERT INTO trends_labels (label)
    SELECT n.topic_label FROM (SELECT DISTINCT topic_label FROM {rows}) AS n
    WHERE NOT EXISTS (SELECT 1 FROM trends_labels AS l WHERE l.label = n.topic_label)
    ORDER BY 1
    ON CONFLICT DO NOTHING;
    """


# Rollup rows of a set of archive rows: the hour's earliest record is the smallest
# [microseconds, label id] (timestamps are unique within a series, so the label never decides).
def _rollup_rows(rows: str) -> str:
    return f"""
    SELECT g.hour, g.series_id, g.count_sum, g.weighted_sum, g.first[1], g.first[2]
    FROM (
        SELECT {_hour("a.timestamp")} AS hour, s.id AS series_id,
               sum(a.count) AS count_sum, sum(a.count * a.confidence) AS weighted_sum,
               min(ARRAY[{_micros("a.timestamp")}, l.id::bigint]) AS first
        FROM {rows} AS a
        JOIN trends_series AS s ON s.country = a.country AND s.topic_key = a.topic_key
        JOIN trends_labels AS l ON l.label = a.topic_label
        GROUP BY 1, 2
    ) AS g
    """


_ROLLUP_COLUMNS = "(hour, series_id, count_sum, weighted_sum, first_us, first_label_id)"

# Recompute from the archive every (hour, series) that ``{touched}`` (rows with hour, country,
# topic_key) names: for what cannot be added up (a deleted record, a record moved to another
# key; its hour may lose its earliest record).
_REBUILD = """
    DELETE FROM trends_rollup_hourly AS r
    USING (SELECT DISTINCT t.hour, s.id FROM ({touched}) AS t
           JOIN trends_series AS s ON s.country = t.country AND s.topic_key = t.topic_key) AS t
    WHERE r.hour = t.hour AND r.series_id = t.id;
    INSERT INTO trends_rollup_hourly {columns}
    SELECT g.hour, g.series_id, g.count_sum, g.weighted_sum, g.first[1], g.first[2]
    FROM (
        SELECT t.hour, s.id AS series_id,
               sum(a.count) AS count_sum, sum(a.count * a.confidence) AS weighted_sum,
               min(ARRAY[{micros}, l.id::bigint]) AS first
        FROM (SELECT DISTINCT * FROM ({touched}) AS d) AS t
        JOIN trends_series AS s ON s.country = t.country AND s.topic_key = t.topic_key
        JOIN trends_archive AS a ON a.country = t.country AND a.topic_key = t.topic_key
             AND a.timestamp > t.hour - interval '1 hour' AND a.timestamp <= t.hour
        JOIN trends_labels AS l ON l.label = a.topic_label
        GROUP BY 1, 2
    ) AS g;
"""


def _touched(rows: str) -> str:
    return f"SELECT {_hour('timestamp')} AS hour, country, topic_key FROM {rows}"


def _rebuild(touched: str) -> str:
    return _REBUILD.format(touched=touched, columns=_ROLLUP_COLUMNS, micros=_micros("a.timestamp"))


_LOCK = f"PERFORM pg_advisory_xact_lock({ROLLUP_LOCK_ID});"

_FUNCTIONS = {
    "trends_rollup_on_insert": f"""
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
        {_LOCK}
        {_dictionaries("new_rows")}
        INSERT INTO trends_rollup_hourly AS r {_ROLLUP_COLUMNS}
        {_rollup_rows("new_rows")}
        ON CONFLICT (hour, series_id) DO UPDATE SET
            count_sum = r.count_sum + EXCLUDED.count_sum,
            weighted_sum = r.weighted_sum + EXCLUDED.weighted_sum,
            first_us = least(r.first_us, EXCLUDED.first_us),
            first_label_id = CASE WHEN EXCLUDED.first_us < r.first_us
                                  THEN EXCLUDED.first_label_id ELSE r.first_label_id END;
        RETURN NULL;
    END
    """,
    # Updated rows add new minus old to their hour; one that is its hour's earliest record
    # (same timestamp as first_us) brings its label along.
    "trends_rollup_on_update": f"""
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
        {_LOCK}
        {_dictionaries("new_rows")}
        IF (SELECT count(*) FROM new_rows) <> (
            SELECT count(*) FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id
            AND n.country = o.country AND n.topic_key = o.topic_key
            AND n.timestamp = o.timestamp
        ) THEN
            {_rebuild(f"{_touched('old_rows')} UNION ALL {_touched('new_rows')}")}
            RETURN NULL;
        END IF;
        INSERT INTO trends_rollup_hourly AS r {_ROLLUP_COLUMNS}
        SELECT g.hour, g.series_id, g.count_sum, g.weighted_sum, g.first[1], g.first[2]
        FROM (
            SELECT {_hour("n.timestamp")} AS hour, s.id AS series_id,
                   sum(n.count - o.count) AS count_sum,
                   sum(n.count * n.confidence - o.count * o.confidence) AS weighted_sum,
                   min(ARRAY[{_micros("n.timestamp")}, l.id::bigint]) AS first
            FROM new_rows AS n
            JOIN old_rows AS o ON o.id = n.id
            JOIN trends_series AS s ON s.country = n.country AND s.topic_key = n.topic_key
            JOIN trends_labels AS l ON l.label = n.topic_label
            GROUP BY 1, 2
        ) AS g
        ON CONFLICT (hour, series_id) DO UPDATE SET
            count_sum = r.count_sum + EXCLUDED.count_sum,
            weighted_sum = r.weighted_sum + EXCLUDED.weighted_sum,
            first_label_id = CASE WHEN EXCLUDED.first_us = r.first_us
                                  THEN EXCLUDED.first_label_id ELSE r.first_label_id END;
        RETURN NULL;
    END
    """,
    "trends_rollup_on_delete": f"""
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
        {_LOCK}
        {_rebuild(_touched("old_rows"))}
        RETURN NULL;
    END
    """,
    "trends_rollup_on_truncate": """
    BEGIN
        TRUNCATE trends_rollup_hourly;
        RETURN NULL;
    END
    """,
}

_TRIGGERS = {
    "trends_rollup_insert": (
        "AFTER INSERT ON trends_archive REFERENCING NEW TABLE AS new_rows",
        "trends_rollup_on_insert",
    ),
    "trends_rollup_update": (
        "AFTER UPDATE ON trends_archive REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "trends_rollup_on_update",
    ),
    "trends_rollup_delete": (
        "AFTER DELETE ON trends_archive REFERENCING OLD TABLE AS old_rows",
        "trends_rollup_on_delete",
    ),
    "trends_rollup_truncate": ("AFTER TRUNCATE ON trends_archive", "trends_rollup_on_truncate"),
}


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # Writes wait from here to the commit; reads (and the windows, from the archive) go on.
    op.execute("LOCK TABLE trends_archive IN SHARE ROW EXCLUSIVE MODE")
    op.create_table(
        "trends_series",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("topic_key", sa.Text(), nullable=False),
        sa.UniqueConstraint("country", "topic_key", name="uq_trends_series"),
    )
    op.create_table(
        "trends_labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.UniqueConstraint("label", name="uq_trends_labels"),
    )
    op.create_table(
        "trends_rollup_hourly",
        sa.Column("hour", UTCDateTime(), primary_key=True),
        sa.Column("series_id", sa.Integer(), primary_key=True),
        sa.Column("count_sum", sa.BigInteger(), nullable=False),
        sa.Column("weighted_sum", sa.Float(), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("first_label_id", sa.Integer(), nullable=False),
    )
    op.execute("SET LOCAL work_mem = '256MB'")
    for statement in _dictionaries("trends_archive").split(";"):
        if statement.strip():
            op.execute(statement)
    op.execute(
        f"INSERT INTO trends_rollup_hourly {_ROLLUP_COLUMNS} {_rollup_rows('trends_archive')}"
    )
    for name, body in _FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body${body}$body$"
        )
    for name, (when, function) in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    op.execute("ANALYZE trends_series, trends_labels, trends_rollup_hourly")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON trends_archive")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("trends_rollup_hourly")
    op.drop_table("trends_labels")
    op.drop_table("trends_series")
