"""The answer to a flows or hotspots query, whether computed now or read from the cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from graph.core.windows import Span

__all__ = ["Answer"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A computed (or cached) answer: a JSON array in the REST shape, and how it was made."""

    payload: bytes
    count: int
    span: Span
    computed_at: datetime
    cache_hit: bool
    warnings: tuple[str, ...]
    # What the answer says beside its items, snake_case (flows: max_heat and pairs).
    metadata: dict[str, Any] = field(default_factory=dict)
    # The cache generation it was computed under (decimal), or another label when it was
    # computed without the store (graph.cache.response_cache): what its ETag derives from.
    generation: str = ""

    def items(self) -> list[dict[str, Any]]:
        """The payload's items as dicts (snake_case keys)."""
        items: list[dict[str, Any]] = orjson.loads(self.payload)
        return items
