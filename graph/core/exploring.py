"""Exploring the archive: its extent, the topics of a window, and how one topic spread.

The answers are built from per (country, topic key) cells over a span of time. A topic's label
is the label of its earliest record in the span (ties: the smallest label), as for flows;
country lists are sorted codes; confidences are count-weighted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "DataSpan",
    "TopicCell",
    "TopicCountry",
    "TopicSpread",
    "TopicSummary",
    "summarise_topics",
    "topic_spread",
]


@dataclass(frozen=True, slots=True)
class DataSpan:
    """The archive's earliest and latest record (None when empty), records and countries."""

    first: datetime | None
    last: datetime | None
    records: int
    countries: int


@dataclass(frozen=True, slots=True)
class TopicSummary:
    """A topic seen in a window (field order is the REST wire order)."""

    key: str
    label: str
    count: int
    country_count: int
    countries: tuple[str, ...]
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class TopicCountry:
    """One topic in one country over a span."""

    country: str
    first_seen: datetime
    last_seen: datetime
    count: int
    confidence: float


@dataclass(frozen=True, slots=True)
class TopicSpread:
    """Every country that saw one topic over a span, by first sighting."""

    key: str
    label: str
    countries: tuple[TopicCountry, ...]


@dataclass(frozen=True, slots=True)
class TopicCell:
    """One topic's records in one country over a span: ``label`` is its earliest record's."""

    country: str
    key: str
    label: str
    count: int
    weighted_confidence: float
    first_seen: datetime
    last_seen: datetime


def _earliest(cells: Iterable[TopicCell]) -> tuple[datetime, str]:
    """The topic's first sighting and its label (ties between countries: the smallest)."""
    return min((c.first_seen, c.label) for c in cells)


def summarise_topics(
    cells: Iterable[TopicCell], countries: Collection[str] | None, limit: int
) -> list[TopicSummary]:
    """The ``limit`` topics seen in the most countries, then with the largest count, then by
    label. ``count`` and ``countries`` cover the ``countries`` filter; the label and first
    sighting are the topic's over every country."""
    by_key: dict[str, list[TopicCell]] = {}
    for cell in cells:
        by_key.setdefault(cell.key, []).append(cell)
    wanted = None if countries is None else frozenset(countries)
    summaries = []
    for key, group in by_key.items():
        chosen = group if wanted is None else [c for c in group if c.country in wanted]
        if not chosen:
            continue
        first_seen, label = _earliest(group)
        codes = tuple(sorted({c.country for c in chosen}))
        total = sum(c.count for c in chosen)
        summaries.append(TopicSummary(key, label, total, len(codes), codes, first_seen))
    summaries.sort(key=lambda s: (-s.country_count, -s.count, s.label, s.key))
    return summaries[:limit]


def topic_spread(key: str, cells: Iterable[TopicCell]) -> TopicSpread | None:
    """Where the topic ``key`` was seen, in order of first sighting (then country code); None
    when it was seen nowhere."""
    group = [c for c in cells if c.key == key]
    if not group:
        return None
    _, label = _earliest(group)
    ordered = sorted(group, key=lambda c: (c.first_seen, c.country))
    return TopicSpread(
        key=key,
        label=label,
        countries=tuple(
            TopicCountry(
                country=c.country,
                first_seen=c.first_seen,
                last_seen=c.last_seen,
                count=c.count,
                confidence=c.weighted_confidence / c.count,
            )
            for c in ordered
        ),
    )
