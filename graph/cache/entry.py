"""A cached answer (:class:`Entry`) and its byte encoding in the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

FORMAT = 2
"""The layout of payloads: raised when they change shape (2: hotspot scores, simultaneous
flows, flow stats, aggregates over two windows). An entry of another format decodes with no
generation, so it is never a hit and is recomputed."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A computed answer: the payload bytes and what they were computed from."""

    generation: str
    as_of: datetime
    computed_at: datetime
    payload: bytes
    warnings: tuple[str, ...] = ()
    count: int = 0
    # What an answer says beside its items (a flows answer's max_heat and pairs), as JSON.
    metadata: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """A JSON header line, then the payload as it is (it is served without re-encoding)."""
        header = orjson.dumps(
            {
                "generation": self.generation,
                "as_of": self.as_of.isoformat(),
                "computed_at": self.computed_at.isoformat(),
                "warnings": list(self.warnings),
                "count": self.count,
                "metadata": self.metadata,
                "format": FORMAT,
            }
        )
        return header + b"\n" + self.payload

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        header, _, payload = raw.partition(b"\n")
        meta: dict[str, Any] = orjson.loads(header)
        current = meta.get("format") == FORMAT
        return cls(
            generation=meta["generation"] if current else "",
            as_of=datetime.fromisoformat(meta["as_of"]),
            computed_at=datetime.fromisoformat(meta["computed_at"]),
            payload=payload,
            warnings=tuple(meta["warnings"]),
            count=meta["count"],
            metadata=meta.get("metadata", {}),
        )
