"""Database mistakes a command reports in one line: a missing database or role, an unknown
migration revision, a SQLite file that is not there. (``graph`` never sees SQLAlchemy.)"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy.exc
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from db import migrate

# The exceptions :func:`describe` reads.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlalchemy.exc.DBAPIError, CommandError)


def shown_url(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "DATABASE_URL"


def describe(exc: Exception, database_url: str) -> str:
    """One of DATABASE_ERRORS on one line, naming the database or the revision."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        lines = str(exc.orig).strip().splitlines() if exc.orig else []
        reason = lines[0] if lines else type(exc).__name__
        return f"database {shown_url(database_url)} (DATABASE_URL): {reason}"
    return f"migration: {exc} (head is {migrate.head_revision()})"


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (None for other databases)."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database or "")
    return None if path.exists() else path
