"""CacheBounds: how much the response cache may hold, and which explicit instants it keeps.

Clients choose what they ask (instants to the microsecond, thresholds, filters), so without
bounds every distinct question would be a new entry. Three rules keep the memory bounded:

- the store keeps at most ``max_entries`` entries and ``max_bytes`` bytes of them (in Redis
  for every worker together, in process per worker), dropping the oldest first;
- each worker's local copy keeps at most as many;
- an answer for an explicit instant (``as_of``, ``since``, ``until``) is kept only when the
  instant is a whole multiple of ``as_of_resolution_seconds`` since the epoch. Any other
  instant is computed exactly and answered, but not kept: rounding it would change the answer
  whenever a record sits between the instant and its rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from graph.stores import Budget

__all__ = ["CacheBounds"]

_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class CacheBounds:
    """The response cache's limits (``CACHE_MAX_ENTRIES``, ``CACHE_MAX_BYTES``,
    ``CACHE_AS_OF_RESOLUTION_SECONDS``); the defaults are the settings' defaults."""

    max_entries: int = 20_000
    max_bytes: int = 64 * 1024 * 1024
    as_of_resolution_seconds: int = 60

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_bytes < 1 or self.as_of_resolution_seconds < 1:
            raise ValueError(f"cache bounds must be positive, not {self!r}")

    @property
    def budget(self) -> Budget:
        """What the store may keep of the cache's entries."""
        return Budget(self.max_entries, self.max_bytes)

    def keeps(self, *instants: datetime | None) -> bool:
        """Whether an answer for these explicit instants is kept (None is "now": always)."""
        return all(moment is None or self._aligned(moment) for moment in instants)

    def _aligned(self, moment: datetime) -> bool:
        if moment.microsecond:
            return False
        offset = moment.utcoffset() or timedelta(0)
        # Whole seconds since the epoch in integers: float timestamps lose exactness far out.
        naive = moment.replace(tzinfo=None) - offset
        days = naive.toordinal() - _EPOCH_ORDINAL
        seconds = days * 86_400 + naive.hour * 3600 + naive.minute * 60 + naive.second
        return seconds % self.as_of_resolution_seconds == 0
