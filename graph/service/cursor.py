"""Trend page cursors: opaque to clients, a keyset position ``(timestamp, id)`` to us."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from graph.core.errors import InvalidParameter

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(timestamp: datetime, ident: int) -> str:
    raw = json.dumps([timestamp.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, field: str = "after") -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, ident = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None or not isinstance(ident, int):
            raise ValueError("bad cursor")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidParameter(field, "not a cursor this service issued") from None
    return moment, ident
