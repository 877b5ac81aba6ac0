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
        # so is one the server closed before it answered (a login cut short by a restart),
        # PostgreSQL refusing for operator intervention (starting up, shutting down) or
        # because every connection slot is taken (too many clients, for now), or cancelling a
        # statement that ran past the statement timeout (stuck behind a lock).
        if not (
            exc.connection_invalidated
            or _connection_exception(exc)
            or _operator_intervention(exc)
            or _sqlstate(exc) == _TOO_MANY_CONNECTIONS
            or _timed_out(exc)
        ):
            raise
        raise StorageUnavailable(action) from exc


_TOO_MANY_CONNECTIONS = "53300"


def _sqlstate(exc: sqlalchemy.exc.DBAPIError) -> str:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else ""


def _connection_exception(exc: sqlalchemy.exc.DBAPIError) -> bool:
    """SQLSTATE class 08 (connection exception). asyncpg raises ConnectionDoesNotExistError
    (08003) when the server closes a connection in the middle of an operation, its login
    included: a server stopped or restarting does that to the connections it had just
    accepted. It is a PostgresError, not an InterfaceError, so SQLAlchemy wraps it in a plain
    DBAPIError, and at connect time (a new connection, or the pre-ping's reconnect) there is
    no connection to ask whether it closed: ``connection_invalidated`` stays False."""
    return _sqlstate(exc).startswith("08")


def _operator_intervention(exc: sqlalchemy.exc.DBAPIError) -> bool:
    """SQLSTATE class 57P (admin or crash shutdown, cannot connect now, ...): asyncpg raises
    these as plain PostgresErrors, which SQLAlchemy wraps in neither OperationalError nor
    InterfaceError."""
    return _sqlstate(exc).startswith("57P")


def _timed_out(exc: sqlalchemy.exc.DBAPIError) -> bool:
    """SQLSTATE 57014, query_canceled: the statement timeout (or a lock timeout, or an
    operator's pg_cancel_backend) cut the statement short. The connection is still good."""
    return _sqlstate(exc) == "57014"
