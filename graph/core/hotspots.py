"""Hotspots: how hot each country is in a window, from its topic totals.

For each country with a record in the window: volume V = sum(count), previous P = its summed
count in the window just before, velocity v = 2V/(V+P) in (0, 2] (2 all new, 1 steady, towards
0 fading), average confidence a = sum(count * confidence) / V, score = V * v * a (comparable
across instants), and intensity = score / max(score) (the hottest country is 1.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from graph.core.aggregates import (
    KEY_LIMIT,
    AggregateRow,
    Columns,
    IntArray,
    cell_order,
    check_counts,
    columns,
)

__all__ = ["TOP_TOPICS", "Hotspot", "TopTopic", "compute_hotspots"]

TOP_TOPICS = 5


@dataclass(frozen=True, slots=True)
class TopTopic:
    label: str = field(
        metadata={"description": "The label of the topic's earliest record in the country."}
    )
    count: int = field(metadata={"description": "Summed count in the window."})
    confidence: float = field(metadata={"description": "Count-weighted mean confidence."})


@dataclass(frozen=True, slots=True)
class Hotspot:
    # The descriptions are the GraphQL and OpenAPI ones.
    country: str = field(metadata={"description": "ISO 3166-1 alpha-2 code."})
    intensity: float = field(
        metadata={"description": "score / the hottest country's score in the window (0 to 1)."}
    )
    score: float = field(metadata={"description": "volume x velocity x avgConfidence."})
    topic_count: int = field(metadata={"description": "Distinct topics in the window."})
    volume: int = field(metadata={"description": "Summed count in the window."})
    velocity: float = field(
        metadata={
            "description": "2V / (V + P), P the previous window's volume: 2 all new, 1 steady,"
            " towards 0 fading."
        }
    )
    avg_confidence: float = field(metadata={"description": "Count-weighted mean confidence."})
    top_topics: tuple[TopTopic, ...] = field(
        metadata={"description": "The five most counted topics (ties: by label)."}
    )


def compute_hotspots(aggregates: Sequence[AggregateRow]) -> list[Hotspot]:
    """Every country present, ordered intensity desc then country asc."""
    if not aggregates:
        return []
    cols = columns(aggregates)
    country, names, topic = cols.country, cols.names, cols.topic
    count, weighted = cols.count, cols.weighted
    check_counts(count)
    cell_order(country, topic, names)

    n_countries = len(names)
    volume = np.zeros(n_countries, np.int64)
    np.add.at(volume, country, count)
    previous = previous_volumes(cols, n_countries)
    velocity = 2.0 * volume / (volume + previous)
    avg_confidence = np.bincount(country, weights=weighted, minlength=n_countries) / volume
    score = volume * velocity * avg_confidence
    top = float(score.max())
    # The hottest country is exactly 1.0.
    intensity = score / top if top > 0 else np.zeros(n_countries)
    topic_count = np.bincount(country, minlength=n_countries)
    top_topics = _top_topics(cols, n_countries)

    hotspots = [
        Hotspot(
            country=names[c],
            intensity=float(intensity[c]),
            score=float(score[c]),
            topic_count=int(topic_count[c]),
            volume=int(volume[c]),
            velocity=float(velocity[c]),
            avg_confidence=float(avg_confidence[c]),
            top_topics=top_topics[c],
        )
        for c in range(n_countries)
    ]
    hotspots.sort(key=lambda h: (-h.intensity, h.country))
    return hotspots


def previous_volumes(cols: Columns, n_countries: int) -> IntArray:
    """Each country's previous-window volume, which every one of its rows carries."""
    low = np.full(n_countries, np.iinfo(np.int64).max, np.int64)
    high = np.full(n_countries, -1, np.int64)
    np.minimum.at(low, cols.country, cols.previous)
    np.maximum.at(high, cols.country, cols.previous)
    if np.any(low < 0):
        raise ValueError("previous_volume must be >= 0")
    differ = np.flatnonzero(low != high)
    if len(differ):
        raise ValueError(f"rows of {cols.names[differ[0]]} disagree on previous_volume")
    return high


def _top_topics(cols: Columns, n_countries: int) -> list[tuple[TopTopic, ...]]:
    """Per country, its TOP_TOPICS largest counts, ties by label (then topic key)."""
    country, count = cols.country, cols.count
    cap = int(count.max()) + 1
    if n_countries * cap < KEY_LIMIT:
        order = np.argsort(country * cap + (cap - 1 - count))
    else:
        order = np.lexsort((-count, country))
    bounds = np.concatenate(([0], np.cumsum(np.bincount(country, minlength=n_countries))))
    result = []
    for c in range(n_countries):
        group = order[bounds[c] : bounds[c + 1]]
        descending = count[group]
        if len(group) > TOP_TOPICS:
            # Everything tied with the last place is a candidate; labels settle the ties.
            cut = descending[TOP_TOPICS - 1]
            group = group[: np.searchsorted(-descending, -cut, side="right")]
        ranked = sorted(
            (
                -int(count[i]),
                cols.labels[i],
                cols.keys[cols.topic[i]],
                float(cols.weighted[i]) / int(count[i]),
            )
            for i in group.tolist()
        )
        result.append(
            tuple(
                TopTopic(label=label, count=-negative, confidence=confidence)
                for negative, label, _, confidence in ranked[:TOP_TOPICS]
            )
        )
    return result
