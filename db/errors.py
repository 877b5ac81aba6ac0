"""What `db` raises: every SQLAlchemy or driver failure is translated here, at the boundary.

    StorageUnavailable: the database cannot be reached, stopped answering, or did not finish
        a statement within the statement timeout (retry later)

Any other database error is a bug (a constraint the validation should have caught, bad SQL)
and propagates as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import sqlalchemy.exc


class StorageUnavailable(Exception):
    """The database is unreachable, starting up, shutting down, or dropped the connection."""

    def __init__(self, action: str) -> None:
        super().__init__(f"the database is unavailable ({action}); retry later")
        self.action = action


_OUTAGES = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    OSError,
    TimeoutError,
)


@contextlib.asynccontextmanager
async def translated(action: str) -> AsyncIterator[None]:
    """Run a database call; an outage comes out as :class:`StorageUnavailable`."""
    try:
        yield
    except _OUTAGES as exc:
        raise StorageUnavailable(action) from exc
    except sqlalchemy.exc.DBAPIError as exc:
        # A connection that died mid-statement (the server went away) is an outage too, and
        # so is PostgreSQL refusing for operator intervention (starting up, shutting down) or
        # cancelling a statement that ran past the statement timeout (stuck behind a lock).
        if not (exc.connection_invalidated or _operator_intervention(exc) or _timed_out(exc)):
            raise
        raise StorageUnavailable(action) from exc


def _operator_intervention(exc: sqlalchemy.exc.DBAPIError) -> bool:
    """SQLSTATE class 57P (admin or crash shutdown, cannot connect now, ...): asyncpg raises
    these as plain PostgresErrors, which SQLAlchemy wraps in neither OperationalError nor
    InterfaceError."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("57P")


def _timed_out(exc: sqlalchemy.exc.DBAPIError) -> bool:
    """SQLSTATE 57014, query_canceled: the statement timeout (or a lock timeout, or an
    operator's pg_cancel_backend) cut the statement short. The connection is still good."""
    return getattr(exc.orig, "sqlstate", None) == "57014"
