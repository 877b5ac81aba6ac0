"""A deliberately naive model of DESIGN.md's definitions, to check the real code against.

Plain dicts and loops over pairs, ``statistics.median``, tf-idf by its formula: slow and
obviously right. Used by the core's unit tests and the whole-stack tests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graph.core.aggregates import AggregateRow
from graph.core.flows import Flow
from graph.core.hotspots import Hotspot, TopTopic
from graph.core.records import Record, validate_batch
from graph.core.windows import Span


@dataclass(frozen=True)
class Expected:
    heat: float
    similarity: float
    hours: float
    shared: tuple[str, ...]


def naive_hotspots(aggregates: list[AggregateRow]) -> dict[str, Hotspot]:
    rows: dict[str, list[AggregateRow]] = {}
    for a in aggregates:
        rows.setdefault(a.country, []).append(a)
    stats = {}
    for country, items in rows.items():
        volume = sum(a.count for a in items)
        velocity = 2 * sum(a.recent_count for a in items) / volume
        confidence = sum(a.weighted_confidence for a in items) / volume
        stats[country] = (volume, velocity, confidence, volume * velocity * confidence)
    top = max(s[3] for s in stats.values())
    result = {}
    for country, (volume, velocity, confidence, raw) in stats.items():
        items = sorted(rows[country], key=lambda a: (-a.count, a.label))
        result[country] = Hotspot(
            country=country,
            intensity=raw / top if top > 0 else 0.0,
            topic_count=len({a.topic_key for a in rows[country]}),
            volume=volume,
            velocity=velocity,
            avg_confidence=confidence,
            top_topics=tuple(
                TopTopic(a.label, a.count, a.weighted_confidence / a.count) for a in items[:5]
            ),
        )
    return result


def naive_flows(
    aggregates: list[AggregateRow], halflife: float, countries: set[str] | None
) -> dict[tuple[str, str], Expected]:
    """Every pair with a shared topic, whatever its heat, keyed (from, to)."""
    counts: dict[str, dict[str, int]] = {}
    first: dict[str, dict[str, datetime]] = {}
    display: dict[str, tuple[datetime, str]] = {}
    for r in aggregates:
        counts.setdefault(r.country, {})[r.topic_key] = r.count
        first.setdefault(r.country, {})[r.topic_key] = r.first_seen
        earliest = (r.first_seen, r.label)
        display[r.topic_key] = min(display.get(r.topic_key, earliest), earliest)
    n = len(counts)
    df: dict[str, int] = {}
    for row in counts.values():
        for t in row:
            df[t] = df.get(t, 0) + 1
    vectors = {}
    for c, row in counts.items():
        w = {t: (1 + math.log(v)) * (math.log((1 + n) / (1 + df[t])) + 1) for t, v in row.items()}
        norm = math.sqrt(sum(x * x for x in w.values()))
        vectors[c] = {t: x / norm for t, x in w.items()}
    result = {}
    names = sorted(counts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if countries is not None and not {a, b} <= countries:
                continue
            shared = set(counts[a]) & set(counts[b])
            if not shared:
                continue
            dot = sum(vectors[a][t] * vectors[b][t] for t in shared)
            similarity = min(1.0, max(0.0, dot))
            lags = [(first[b][t] - first[a][t]).total_seconds() / 3600 for t in shared]
            m = statistics.median(lags)
            ordered = sorted(
                shared, key=lambda t: (-(counts[a][t] + counts[b][t]), display[t][1], t)
            )
            key = (b, a) if m < 0 else (a, b)
            result[key] = Expected(
                heat=similarity * 0.5 ** (abs(m) / halflife),
                similarity=similarity,
                hours=abs(m),
                shared=tuple(display[t][1] for t in ordered[:10]),
            )
    return result


def assert_flows_match(
    flows: list[Flow], expected: dict[tuple[str, str], Expected], threshold: float
) -> None:
    """Equal to the reference, except pairs whose heat is within 1e-6 of the threshold."""
    sure = {k for k, e in expected.items() if e.heat >= threshold + 1e-6}
    unsure = {k for k, e in expected.items() if abs(e.heat - threshold) < 1e-6}
    got = {(f.from_country, f.to_country): f for f in flows}
    assert len(got) == len(flows)
    assert sure <= set(got) <= sure | unsure
    for key, flow in got.items():
        e = expected[key]
        assert math.isclose(flow.heat, e.heat, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(flow.similarity_score, e.similarity, rel_tol=1e-9)
        assert math.isclose(flow.time_delta_hours, e.hours, rel_tol=1e-9, abs_tol=1e-12)
        assert flow.shared_topics == e.shared


def assert_hotspots_match(hotspots: list[Hotspot], expected: dict[str, Hotspot]) -> None:
    assert sorted(h.country for h in hotspots) == sorted(expected)
    for h in hotspots:
        e = expected[h.country]
        assert (h.topic_count, h.volume) == (e.topic_count, e.volume)
        for got, want in [
            (h.intensity, e.intensity),
            (h.velocity, e.velocity),
            (h.avg_confidence, e.avg_confidence),
        ]:
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15)
        assert [(t.label, t.count) for t in h.top_topics] == [
            (t.label, t.count) for t in e.top_topics
        ]
        for got_topic, want_topic in zip(h.top_topics, e.top_topics, strict=True):
            assert math.isclose(got_topic.confidence, want_topic.confidence, rel_tol=1e-9)


def naive_aggregates(
    rows: Iterable[Record], start: datetime, end: datetime, recent_after: datetime
) -> list[AggregateRow]:
    """What the SQL aggregation must give: per (country, topic key) in start < t <= end."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for row in rows:
        if start < row.timestamp <= end:
            groups.setdefault((row.country, row.topic_key), []).append(row)
    out = []
    for (country, key), members in groups.items():
        first = min(members, key=lambda r: r.timestamp)
        out.append(
            AggregateRow(
                country,
                key,
                first.topic_label,
                sum(r.count for r in members),
                sum(r.count * r.confidence for r in members),
                first.timestamp,
                sum(r.count for r in members if r.timestamp > recent_after),
            )
        )
    return out


def naive_window(records: list[dict[str, Any]], span: Span) -> list[AggregateRow]:
    """The window's aggregates from raw records; later duplicates replace earlier ones."""
    latest = {(r.country, r.topic_key, r.timestamp): r for r in validate_batch(records)}
    return naive_aggregates(latest.values(), span.start, span.as_of, span.recent_after)
