"""The command's common mistakes as one line each: a bad setting, a missing database or role,
an unknown migration revision (db.failures). Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import pydantic

from db.failures import DATABASE_ERRORS, describe

# What main() turns into one line and exit status 2, beside the project's own errors.
KNOWN: tuple[type[Exception], ...] = (pydantic.ValidationError, *DATABASE_ERRORS)


def one_line(exc: Exception, database_url: str | None) -> str:
    """What went wrong, naming the setting or resource, on one line."""
    if isinstance(exc, pydantic.ValidationError):
        problems = [
            f"setting {'.'.join(str(p) for p in error['loc']).upper() or 'unknown'}:"
            f" {error['msg']} (got {error.get('input')!r})"
            for error in exc.errors(include_url=False)
        ]
        return "; ".join(problems)
    if isinstance(exc, DATABASE_ERRORS):
        return describe(exc, database_url or "")
    return str(exc)
