"""Credentials: ``Authorization: Bearer <key>`` against ``API_KEYS`` and ``READ_API_KEYS``."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from graph.errors import Forbidden, Unauthenticated


def bearer_token(authorization: str | None) -> str | None:
    """The token of a ``Bearer`` header, or None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use 'Authorization: Bearer <key>'")
    return token.strip()


def matches_any(token: str, keys: Sequence[str]) -> bool:
    """Constant-time membership: every key is compared, whichever matches."""
    given = token.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def require_write(
    authorization: str | None, write_keys: Sequence[str], read_keys: Sequence[str] = ()
) -> None:
    """Let a write through only with one of the write keys (a read key gets 403)."""
    if not write_keys:
        raise Forbidden("writes are disabled on this server: it has no API_KEYS configured")
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("writes need a credential: 'Authorization: Bearer <key>'")
    if matches_any(token, write_keys):
        return
    if matches_any(token, read_keys):
        raise Forbidden("this credential may read but not write")
    raise Unauthenticated("the credential is not valid")


def require_read(
    authorization: str | None, read_keys: Sequence[str], write_keys: Sequence[str]
) -> None:
    """Reads are public unless read keys are configured; then a read or write key is needed."""
    if not read_keys:
        return
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("reads need a credential: 'Authorization: Bearer <key>'")
    if not (matches_any(token, read_keys) | matches_any(token, write_keys)):
        raise Unauthenticated("the credential is not valid")
