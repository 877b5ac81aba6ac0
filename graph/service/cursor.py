"""Trend page cursors: opaque to clients, a keyset position ``(timestamp, id)`` to us."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from graph.core.errors import InvalidParameter
from graph.core.records import parse_timestamp

# Ids are BIGINT: a larger one would overflow the database's parameter, not miss a row.
_MAX_ID = 2**63 - 1

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(timestamp: datetime, ident: int) -> str:
    raw = json.dumps([timestamp.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, field: str = "after") -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, ident = json.loads(raw)
        moment = parse_timestamp(stamp)  # aware, in UTC, or ValueError
        if type(ident) is not int or not 0 <= ident <= _MAX_ID:
            raise ValueError("bad cursor")
    # RecursionError: JSON nested deeper than the parser recurses.
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise InvalidParameter(field, "not a cursor this service issued") from None
    return moment, ident
