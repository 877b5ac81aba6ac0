"""A deliberately naive model of DESIGN.md's definitions, to check the real code against.

Plain dicts and loops over pairs, ``statistics.median``, tf-idf by its formula: slow and
obviously right. Used by the core's unit tests and the whole-stack tests.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from graph.core.aggregates import AggregateRow
from graph.core.flows import Flow, FlowStats
from graph.core.hotspots import Hotspot, TopTopic
from graph.core.records import Record, validate_batch
from graph.core.windows import Span


@dataclass(frozen=True)
class Expected:
    heat: float
    similarity: float
    hours: float
    shared: tuple[str, ...]
    simultaneous: bool


def naive_hotspots(aggregates: list[AggregateRow]) -> dict[str, Hotspot]:
    rows: dict[str, list[AggregateRow]] = {}
    for a in aggregates:
        rows.setdefault(a.country, []).append(a)
    stats = {}
    for country, items in rows.items():
        volume = sum(a.count for a in items)
        previous = items[0].previous_volume
        velocity = 2 * volume / (volume + previous)
        confidence = sum(a.weighted_confidence for a in items) / volume
        stats[country] = (volume, velocity, confidence, volume * velocity * confidence)
    top = max(s[3] for s in stats.values())
    result = {}
    for country, (volume, velocity, confidence, score) in stats.items():
        items = sorted(rows[country], key=lambda a: (-a.count, a.label))
        result[country] = Hotspot(
            country=country,
            intensity=score / top if top > 0 else 0.0,
            score=score,
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
    aggregates: list[AggregateRow],
    halflife: float,
    countries: set[str] | None,
    min_lag_hours: float = 0.5,
) -> dict[tuple[str, str], Expected]:
    """Every pair with a shared topic, whatever its heat, keyed (from, to)."""
    counts: dict[str, dict[str, int]] = {}
    first: dict[str, dict[str, datetime]] = {}
    display: dict[str, tuple[datetime, str]] = {}
    for r in aggregates:
        counts.setdefault(r.country, {})[r.topic_key] = r.count
        first.setdefault(r.country, {})[r.topic_key] = r.first_seen
        earliest = (r.window_first_seen, r.label)
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
            # In whole microseconds (as stored), so that a median on the minimum lag is exact.
            lags = [(first[b][t] - first[a][t]) // timedelta(microseconds=1) for t in shared]
            m = statistics.median(lags) / 3.6e9
            ordered = sorted(
                shared, key=lambda t: (-(counts[a][t] + counts[b][t]), display[t][1], t)
            )
            simultaneous = abs(m) < min_lag_hours
            key = (b, a) if m < 0 and not simultaneous else (a, b)
            result[key] = Expected(
                heat=similarity * 0.5 ** (abs(m) / halflife),
                similarity=similarity,
                hours=abs(m),
                shared=tuple(display[t][1] for t in ordered[:10]),
                simultaneous=simultaneous,
            )
    return result


def naive_flow_stats(expected: dict[tuple[str, str], Expected]) -> FlowStats:
    """The hottest pair (ties: from, then to) and the number of pairs, from naive_flows."""
    if not expected:
        return FlowStats(None, None, None, 0)
    (a, b), e = min(expected.items(), key=lambda item: (-item[1].heat, item[0]))
    return FlowStats(e.heat, a, b, len(expected))


def assert_stats_match(got: FlowStats, want: FlowStats) -> None:
    assert (got.from_country, got.to_country, got.pairs) == (
        want.from_country,
        want.to_country,
        want.pairs,
    )
    if want.max_heat is None:
        assert got.max_heat is None
    else:
        assert got.max_heat is not None
        assert math.isclose(got.max_heat, want.max_heat, rel_tol=1e-9, abs_tol=1e-15)


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
        assert flow.simultaneous == e.simultaneous


def assert_hotspots_match(hotspots: list[Hotspot], expected: dict[str, Hotspot]) -> None:
    assert sorted(h.country for h in hotspots) == sorted(expected)
    for h in hotspots:
        e = expected[h.country]
        assert (h.topic_count, h.volume) == (e.topic_count, e.volume)
        for got, want in [
            (h.intensity, e.intensity),
            (h.score, e.score),
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
    rows: Iterable[Record], previous_start: datetime, start: datetime, end: datetime
) -> list[AggregateRow]:
    """What the SQL aggregation must give: per (country, topic key) in start < t <= end, with
    first sightings over previous_start < t <= end and each country's previous volume."""
    groups: dict[tuple[str, str], list[Record]] = {}
    earliest: dict[tuple[str, str], datetime] = {}
    previous: dict[str, int] = {}
    for row in rows:
        cell = (row.country, row.topic_key)
        if previous_start < row.timestamp <= end:
            earliest[cell] = min(earliest.get(cell, row.timestamp), row.timestamp)
        if start < row.timestamp <= end:
            groups.setdefault(cell, []).append(row)
        elif previous_start < row.timestamp <= start:
            previous[row.country] = previous.get(row.country, 0) + row.count
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
                earliest[country, key],
                first.timestamp,
                previous.get(country, 0),
            )
        )
    return out


def naive_window(records: list[dict[str, Any]], span: Span) -> list[AggregateRow]:
    """The window's aggregates from raw records; later duplicates replace earlier ones."""
    latest = {(r.country, r.topic_key, r.timestamp): r for r in validate_batch(records)}
    return naive_aggregates(latest.values(), span.previous_start, span.start, span.as_of)
