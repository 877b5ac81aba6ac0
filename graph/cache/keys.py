"""Where the cache keeps things: the generation counter, its channel, entry keys and their TTL."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

# The generation: a counter (INCR) raised after every ingest that changed data. It is the one
# key without an expiry, so it always outlives the entries labelled with its values (a counter
# that expired could count up to an old entry's label again).
GENERATION_KEY = "trendmap:generation:counter"
# Each new generation is published here (decimal); every worker drops its local copy on it.
GENERATION_CHANNEL = "trendmap:generation"
TTL_SECONDS = 24 * 3600


def countries_hash(countries: Sequence[str] | None) -> str:
    """``all`` without a filter, else a digest of the sorted, de-duplicated upper-case codes."""
    if not countries:
        return "all"
    canonical = ",".join(sorted({c.strip().upper() for c in countries}))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flows_key(window: str, countries: Sequence[str] | None) -> str:
    return f"flows:{window}:{countries_hash(countries)}"


def hotspots_key(window: str, countries: Sequence[str] | None) -> str:
    return f"hotspots:{window}:{countries_hash(countries)}"


def trends_key(country: str, as_of: datetime) -> str:
    """Where one country's aggregates for windows ending at ``as_of`` live (field: window)."""
    return f"trends:{country}:{as_of.isoformat()}"


def trends_roster_key(as_of: datetime) -> str:
    """Which countries had data in windows ending at ``as_of`` (field: window)."""
    return f"trends:countries:{as_of.isoformat()}"


def digest(text: str) -> str:
    """A short fixed-length stand-in for client text (a search, a topic) inside keys."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def span_key() -> str:
    """The archive's extent (field: ``now``)."""
    return "span:all"


def topics_key(window: str, countries: Sequence[str] | None) -> str:
    """A window's topic summaries (field: as_of, search digest and limit)."""
    return f"topics:{window}:{countries_hash(countries)}"


def spread_key(topic_key: str) -> str:
    """One topic's spread (field: since and until)."""
    return f"spread:{digest(topic_key)}"


def history_key(country: str, window: str) -> str:
    """One country's hotspot history in a window (field: since, until and step)."""
    return f"history:{country}:{window}"
