"""Flows: which countries trend alike, and which of them saw the shared topics first.

Countries are the rows of a count matrix C[country, topic] over the window. Each row is TF-IDF
weighted (scikit-learn: tf = 1 + ln C, idf = ln((1 + n) / (1 + df)) + 1, L2-normalised), so the
cosine similarity of two countries is the dot product of their rows. The median lag of first
sightings (over the window and the one before it) over the shared topics names the source, or
makes the pair simultaneous when it is under the minimum lag, and decays the flow: see
:func:`graph.core.heat.heat`. Beside the flows, :class:`FlowStats` says how hot the hottest pair
is whatever the threshold, and how many pairs share a topic.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse  # type: ignore[import-untyped, unused-ignore]
from sklearn.feature_extraction.text import (  # type: ignore[import-untyped, unused-ignore]
    TfidfTransformer,
)

from graph.core.aggregates import AggregateRow, Columns, cell_order, check_counts, columns
from graph.core.batches import collector_paused
from graph.core.heat import HEAT_EPSILON, check_halflife, heat
from graph.core.pairs import FAR, SHARED_TOPICS, Link, PairBlocks, link_pairs

__all__ = [
    "DEFAULT_MIN_LAG_HOURS",
    "HEAT_EPSILON",
    "SHARED_TOPICS",
    "Flow",
    "FlowStats",
    "compute_flows",
    "flows_and_stats",
    "heat",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

DEFAULT_MIN_LAG_HOURS = 0.5
"""FLOW_MIN_LAG_MINUTES's default (30 minutes), in hours."""

_DENSE_CELLS = 1 << 23  # similarity matrices up to this many cells are multiplied dense
_FIRST_BATCH = 64  # pairs looked at first when searching for the hottest pair


@dataclass(frozen=True, slots=True)
class Flow:
    # Field order is the REST wire order (the JSON is these fields, in this order). The
    # descriptions are the GraphQL and OpenAPI ones.
    from_country: str = field(
        metadata={"description": "Where the shared topics were seen first (ISO 3166-1 alpha-2)."}
    )
    to_country: str = field(
        metadata={"description": "Where they were seen later (ISO 3166-1 alpha-2)."}
    )
    heat: float = field(
        metadata={"description": "similarity x 0.5 ^ (timeDeltaHours / HEAT_HALFLIFE_HOURS)."}
    )
    shared_topics: tuple[str, ...] = field(
        metadata={"description": "Labels of the topics both countries saw, most counted first."}
    )
    time_delta_hours: float = field(
        metadata={"description": "The median lag of first sightings over the shared topics."}
    )
    similarity_score: float = field(
        metadata={"description": "Cosine similarity of the two countries' TF-IDF topic rows."}
    )
    simultaneous: bool = field(
        default=False,
        metadata={
            "description": "The median lag is under FLOW_MIN_LAG_MINUTES: no direction, the"
            " alphabetically smaller country first."
        },
    )


@dataclass(frozen=True, slots=True)
class FlowStats:
    """Why a flows answer holds what it holds: the hottest pair in the window whatever the
    threshold (None when no two countries share a topic), and how many pairs share a topic.
    Both follow the countries filter, as flows do."""

    max_heat: float | None = field(
        metadata={
            "description": "The heat of the hottest pair, whether or not it reaches the"
            " threshold; null when no two countries share a topic."
        }
    )
    from_country: str | None = field(
        metadata={
            "description": "The hottest pair's source (the first of a simultaneous pair); null"
            " when there is no pair."
        }
    )
    to_country: str | None = field(
        metadata={"description": "The hottest pair's target; null when there is no pair."}
    )
    pairs: int = field(
        metadata={"description": "How many pairs of countries share at least one topic."}
    )


_NO_PAIRS = FlowStats(None, None, None, 0)


def compute_flows(
    aggregates: Sequence[AggregateRow],
    *,
    threshold: float,
    halflife_hours: float,
    min_lag_hours: float = DEFAULT_MIN_LAG_HOURS,
    countries: Collection[str] | None = None,
) -> list[Flow]:
    """Flows with heat >= threshold (minus HEAT_EPSILON): see :func:`flows_and_stats`."""
    flows, _ = flows_and_stats(
        aggregates,
        threshold=threshold,
        halflife_hours=halflife_hours,
        min_lag_hours=min_lag_hours,
        countries=countries,
    )
    return flows


def flows_and_stats(
    aggregates: Sequence[AggregateRow],
    *,
    threshold: float,
    halflife_hours: float,
    min_lag_hours: float = DEFAULT_MIN_LAG_HOURS,
    countries: Collection[str] | None = None,
) -> tuple[list[Flow], FlowStats]:
    """Flows with heat >= threshold (minus HEAT_EPSILON), ordered heat desc, then from_country,
    to_country asc; and the stats of every pair with a shared topic.

    TF-IDF is always computed over ALL countries in `aggregates`; `countries` (upper-case codes)
    only restricts which pairs are returned and counted (both ends must be in it).
    """
    check_halflife(halflife_hours)
    if math.isnan(threshold):
        raise ValueError("threshold must be a number")
    if not min_lag_hours > 0:
        raise ValueError(f"min_lag_hours must be > 0, got {min_lag_hours}")
    if not aggregates:
        return [], _NO_PAIRS
    # A large window's flows are tens of thousands of objects without a cycle among them,
    # made while the window's columns (millions of objects) are alive: collections would
    # only walk those, some 15% of a 10M-record window's flows maths.
    with collector_paused():
        return _flows_and_stats(aggregates, threshold, halflife_hours, min_lag_hours, countries)


def _flows_and_stats(
    aggregates: Sequence[AggregateRow],
    threshold: float,
    halflife_hours: float,
    min_lag_hours: float,
    countries: Collection[str] | None,
) -> tuple[list[Flow], FlowStats]:
    cols = columns(aggregates)
    m = _Matrices.of(cols)
    if countries is None:
        kept = np.arange(len(m.names))
    else:
        wanted = {code.upper() for code in countries}
        kept = np.array([i for i, name in enumerate(m.names) if name in wanted], np.int64)
    if len(kept) < 2:
        return [], _NO_PAIRS
    counts, firsts, weights = m.counts[kept], m.firsts[kept], m.weights[kept]
    names = [m.names[i] for i in kept]

    presence = sparse.csr_array(
        (np.ones(counts.nnz), counts.indices, counts.indptr), shape=counts.shape
    )
    shared_matrix = np.rint(_gram(presence)).astype(np.int64)
    dots_matrix = _gram(weights)
    a, b = np.nonzero(np.triu(shared_matrix > 0, k=1))
    if len(a) == 0:
        return [], _NO_PAIRS
    dots, shared = dots_matrix[a, b], shared_matrix[a, b]
    similarity = np.clip(dots, 0.0, 1.0)
    rank, labels = _label_ranks(cols, counts)
    blocks = PairBlocks(counts, firsts, rank, halflife_hours, min_lag_hours)
    made = _Maker(names, labels)

    # Heat can never exceed similarity: only pairs that similar can reach the threshold.
    floor = threshold - HEAT_EPSILON
    maybe = np.flatnonzero(np.minimum(dots, 1.0) >= floor)
    flows = made(link_pairs(blocks, a[maybe], b[maybe], similarity[maybe], shared[maybe], floor))
    flows.sort(key=_order)
    hottest = flows[0] if flows else _hottest(blocks, made, a, b, similarity, shared)
    stats = FlowStats(hottest.heat, hottest.from_country, hottest.to_country, len(a))
    return flows, stats


def _order(flow: Flow) -> tuple[float, str, str]:
    return (-flow.heat, flow.from_country, flow.to_country)


def _hottest(
    blocks: PairBlocks,
    made: _Maker,
    a: IntArray,
    b: IntArray,
    similarity: FloatArray,
    shared: IntArray,
) -> Flow:
    """The first of all pairs in flow order, looking at the most similar first: a pair whose
    similarity is below the hottest heat found cannot be hotter, so the search stops there."""
    order = np.argsort(-similarity, kind="stable")
    best: Flow | None = None
    start, size = 0, _FIRST_BATCH
    while start < len(order) and (best is None or similarity[order[start]] >= best.heat):
        part = order[start : start + size]
        found = made(
            link_pairs(blocks, a[part], b[part], similarity[part], shared[part], -math.inf)
        )
        best = min([*found, *([best] if best else [])], key=_order)
        start, size = start + size, size * 2
    assert best is not None  # there is at least one pair
    return best


class _Maker:
    """Core flows from links: country names and shared-topic labels filled in."""

    def __init__(self, names: list[str], labels: list[str]) -> None:
        self._names = names
        self._labels = labels

    def __call__(self, links: list[Link]) -> list[Flow]:
        names, labels = self._names, self._labels
        return [
            Flow(
                from_country=names[link.source],
                to_country=names[link.target],
                heat=link.heat,
                shared_topics=tuple(labels[r] for r in link.ranks),
                time_delta_hours=link.hours,
                similarity_score=link.similarity,
                simultaneous=link.simultaneous,
            )
            for link in links
        ]


@dataclass(frozen=True, slots=True)
class _Matrices:
    """Countries x topics as CSR matrices, countries in alphabetical order: summed counts,
    their TF-IDF weights, and first sightings in microseconds plus one."""

    names: list[str]
    counts: Any
    weights: Any
    firsts: Any

    @classmethod
    def of(cls, cols: Columns) -> _Matrices:
        country, names = cols.country, cols.names
        # Index order is alphabetical order: "the smaller index" is "the alphabetically smaller".
        alphabetical = sorted(range(len(names)), key=names.__getitem__)
        position = np.empty(len(names), np.int64)
        position[alphabetical] = np.arange(len(names))
        country = position[country]
        names = [names[c] for c in alphabetical]
        topic, count = cols.topic, cols.count
        check_counts(count)
        seen = cols.seen - cols.seen.min()

        order = cell_order(country, topic, names)
        shape = (len(names), len(cols.keys))
        indptr = np.concatenate(([0], np.cumsum(np.bincount(country, minlength=shape[0]))))
        indices = topic[order]
        counts = sparse.csr_array((count[order], indices, indptr), shape=shape)
        tfidf = TfidfTransformer(sublinear_tf=True, smooth_idf=True, norm="l2")
        weights = tfidf.fit_transform(counts)
        # Shifted by one so that a stored zero never looks like an absent topic.
        firsts = sparse.csr_array((seen[order] + 1, indices, indptr), shape=shape)
        return cls(names, counts, weights, firsts)


def _label_ranks(cols: Columns, counts: Any) -> tuple[IntArray, list[str]]:
    """Each topic's place in label order (0 if no two countries share it), and the labels of
    the shared topics in that order."""
    n_topics = len(cols.keys)
    sharable = np.bincount(counts.indices, minlength=n_topics) >= 2
    display = _display_labels(cols.labels, cols.topic, cols.window_seen, sharable)
    by_label = sorted(display, key=lambda t: (display[t], cols.keys[t]))
    rank = np.zeros(n_topics, np.int64)
    rank[by_label] = np.arange(len(by_label))
    return rank, [display[t] for t in by_label]


def _gram(rows: Any) -> FloatArray:
    """All dot products between the rows of a sparse matrix."""
    n, width = rows.shape
    if n * width <= _DENSE_CELLS:
        dense = rows.toarray()
        gram: FloatArray = dense @ dense.T
        return gram
    product: FloatArray = (rows @ rows.T).toarray()
    return product


def _display_labels(
    all_labels: list[str], topic: IntArray, seen: IntArray, wanted: BoolArray
) -> dict[int, str]:
    """For each wanted topic, the label of its earliest record in the window, across countries
    (ties: the smallest label); `seen` is when each aggregate's label was seen."""
    earliest = np.full(len(wanted), FAR, np.int64)
    np.minimum.at(earliest, topic, seen)
    candidates = np.flatnonzero((seen == earliest[topic]) & wanted[topic])
    candidates = candidates[np.argsort(topic[candidates], kind="stable")]
    grouped = topic[candidates]
    labels = [all_labels[i] for i in candidates.tolist()]
    starts = np.flatnonzero(np.diff(grouped, prepend=-1)).tolist()
    spans = pairwise([*starts, len(labels)])
    return {
        t: min(labels[start:end])
        for t, (start, end) in zip(grouped[starts].tolist(), spans, strict=True)
    }
