"""Hotspots: how hot each country is in a window, from its topic totals.

For each country, volume V = sum(count), recent R = the part of V in the newer half of the
window, velocity v = 2R/V in [0, 2] (1 steady, 2 all new, 0 fading), average confidence
a = sum(count * confidence) / V, raw = V * v * a, and intensity = raw / max(raw).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from graph.core.aggregates import (
    KEY_LIMIT,
    AggregateRow,
    Columns,
    cell_order,
    check_counts,
    columns,
)

__all__ = ["TOP_TOPICS", "Hotspot", "TopTopic", "compute_hotspots"]

TOP_TOPICS = 5


@dataclass(frozen=True, slots=True)
class TopTopic:
    label: str
    count: int
    confidence: float


@dataclass(frozen=True, slots=True)
class Hotspot:
    country: str
    intensity: float
    topic_count: int
    volume: int
    velocity: float
    avg_confidence: float
    top_topics: tuple[TopTopic, ...]


def compute_hotspots(aggregates: Sequence[AggregateRow]) -> list[Hotspot]:
    """Every country present, ordered intensity desc then country asc."""
    if not aggregates:
        return []
    cols = columns(aggregates)
    country, names, topic = cols.country, cols.names, cols.topic
    count, recent, weighted = cols.count, cols.recent, cols.weighted
    check_counts(count)
    if np.any((recent < 0) | (recent > count)):
        raise ValueError("recent_count must be within [0, count]")
    cell_order(country, topic, names)

    n_countries = len(names)
    volume = np.zeros(n_countries, np.int64)
    np.add.at(volume, country, count)
    recent_total = np.zeros(n_countries, np.int64)
    np.add.at(recent_total, country, recent)
    velocity = 2.0 * recent_total / volume
    avg_confidence = np.bincount(country, weights=weighted, minlength=n_countries) / volume
    raw = volume * velocity * avg_confidence
    top = float(raw.max())
    # The hottest country is exactly 1.0.
    intensity = raw / top if top > 0 else np.zeros(n_countries)
    topic_count = np.bincount(country, minlength=n_countries)
    top_topics = _top_topics(cols, n_countries)

    hotspots = [
        Hotspot(
            country=names[c],
            intensity=float(intensity[c]),
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
