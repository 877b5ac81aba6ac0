"""Flows: which countries trend alike, and which of them saw the shared topics first.

Countries are the rows of a count matrix C[country, topic]. Each row is TF-IDF weighted
(scikit-learn: tf = 1 + ln C, idf = ln((1 + n) / (1 + df)) + 1, L2-normalised), so the cosine
similarity of two countries is the dot product of their rows. The median lag of first sightings
over the shared topics names the source and decays the flow: see :func:`heat`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, overload

import numpy as np
import numpy.typing as npt
from scipy import sparse  # type: ignore[import-untyped, unused-ignore]
from sklearn.feature_extraction.text import (  # type: ignore[import-untyped, unused-ignore]
    TfidfTransformer,
)

from graph.core.aggregates import (
    KEY_LIMIT,
    AggregateRow,
    Columns,
    cell_order,
    check_counts,
    columns,
)

__all__ = ["HEAT_EPSILON", "SHARED_TOPICS", "Flow", "compute_flows", "heat"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

HEAT_EPSILON: float = 1e-9
"""Threshold comparisons are ``heat >= threshold - HEAT_EPSILON``, so float noise never drops a
flow that sits exactly on the threshold."""

SHARED_TOPICS = 10

_US_PER_HOUR = 3_600_000_000
_FAR = 1 << 62  # first sighting of an absent topic: later than any datetime, in microseconds
_BLOCK_CELLS = 1 << 21  # cells per block of partners (16 MiB per int64 array)
_DENSE_CELLS = 1 << 23  # matrices up to this many cells are held dense (64 MiB per int64 array)


@dataclass(frozen=True, slots=True)
class Flow:
    # Field order is the REST wire order (the JSON is these fields, in this order).
    from_country: str
    to_country: str
    heat: float
    shared_topics: tuple[str, ...]
    time_delta_hours: float
    similarity_score: float


@overload
def heat(similarity: float, time_delta_hours: float, halflife_hours: float) -> float: ...


@overload
def heat(
    similarity: FloatArray, time_delta_hours: FloatArray, halflife_hours: float
) -> FloatArray: ...


def heat(
    similarity: float | FloatArray, time_delta_hours: float | FloatArray, halflife_hours: float
) -> float | FloatArray:
    """Similarity halved for every half-life of lag: 1.0 at 0 h with similarity 1, 0.5 at one.

    Elementwise over arrays: compute_flows calls it on a whole block of pairs, so this is the
    one formula (numpy's power, which can differ from math.pow in the last bit).
    """
    _check_halflife(halflife_hours)
    value = similarity * np.power(0.5, time_delta_hours / halflife_hours)
    return value if isinstance(value, np.ndarray) else float(value)


def compute_flows(
    aggregates: Sequence[AggregateRow],
    *,
    threshold: float,
    halflife_hours: float,
    countries: Collection[str] | None = None,
) -> list[Flow]:
    """Flows with heat >= threshold (minus HEAT_EPSILON), ordered heat desc, then from_country,
    to_country asc.

    TF-IDF is always computed over ALL countries in `aggregates`; `countries` (upper-case codes)
    only restricts which pairs are returned (both ends must be in it).
    """
    _check_halflife(halflife_hours)
    if math.isnan(threshold):
        raise ValueError("threshold must be a number")
    if not aggregates:
        return []
    cols = columns(aggregates)
    m = _Matrices.of(cols)
    if countries is None:
        kept = np.arange(len(m.names))
    else:
        wanted = {code.upper() for code in countries}
        kept = np.array([i for i, name in enumerate(m.names) if name in wanted], np.int64)
    if len(kept) < 2:
        return []
    counts, firsts, weights = m.counts[kept], m.firsts[kept], m.weights[kept]
    names = [m.names[i] for i in kept]

    presence = sparse.csr_array(
        (np.ones(counts.nnz), counts.indices, counts.indptr), shape=counts.shape
    )
    shared = np.rint(_gram(presence)).astype(np.int64)
    dots = _gram(weights)
    floor = threshold - HEAT_EPSILON
    a, b = np.nonzero(np.triu((shared > 0) & (np.minimum(dots, 1.0) >= floor), k=1))
    if len(a) == 0:
        return []
    similarity = np.clip(dots[a, b], 0.0, 1.0)
    rank, labels = _label_ranks(cols, m.seen, counts)
    blocks = _PairBlocks(counts, firsts, rank, labels, halflife_hours, floor)

    # Each pair is handled by its country x with fewer topics, all of x's partners at once.
    sizes = np.diff(counts.indptr)
    owner = np.where(sizes[a] <= sizes[b], a, b)
    partner = a + b - owner
    by_owner = np.argsort(owner, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=len(names)))))
    flows: list[Flow] = []
    for x in np.flatnonzero(np.diff(bounds)).tolist():
        group = by_owner[bounds[x] : bounds[x + 1]]
        pairs = _Partners(partner[group], similarity[group], shared[a[group], b[group]])
        flows.extend(blocks.flows(x, pairs, names))
    flows.sort(key=lambda f: (-f.heat, f.from_country, f.to_country))
    return flows


@dataclass(frozen=True, slots=True)
class _Matrices:
    """Countries x topics as CSR matrices, countries in alphabetical order: summed counts,
    their TF-IDF weights, and first sightings in microseconds plus one."""

    names: list[str]
    counts: Any
    weights: Any
    firsts: Any
    seen: IntArray  # each aggregate's first sighting, microseconds after the earliest

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
        return cls(names, counts, weights, firsts, seen)


def _label_ranks(cols: Columns, seen: IntArray, counts: Any) -> tuple[IntArray, list[str]]:
    """Each topic's place in label order (0 if no two countries share it), and the labels of
    the shared topics in that order."""
    n_topics = len(cols.keys)
    sharable = np.bincount(counts.indices, minlength=n_topics) >= 2
    display = _display_labels(cols.labels, cols.topic, seen, sharable)
    by_label = sorted(display, key=lambda t: (display[t], cols.keys[t]))
    rank = np.zeros(n_topics, np.int64)
    rank[by_label] = np.arange(len(by_label))
    return rank, [display[t] for t in by_label]


@dataclass(frozen=True, slots=True)
class _Partners:
    """Some countries paired with one country x: their indices, similarities, shared topics."""

    rows: IntArray
    similarity: FloatArray
    shared: IntArray

    def __getitem__(self, part: slice) -> _Partners:
        return _Partners(self.rows[part], self.similarity[part], self.shared[part])


class _PairBlocks:
    """One country against many partners at once: median lags, heats and most-shared topics.

    `counts` and `firsts` are CSR matrices (countries x topics) of summed counts and of first
    sightings in microseconds plus one. Up to _DENSE_CELLS cells they are also held dense, with
    sentinels for absent topics: a count of -cap (below any real one, so an absent topic's count
    sum is negative) and a first sighting _FAR in the future (its lag sorts after every real lag).
    """

    def __init__(
        self,
        counts: Any,
        firsts: Any,
        rank: IntArray,
        labels: list[str],
        halflife_hours: float,
        floor: float,
    ) -> None:
        self._counts = counts
        self._firsts = firsts
        self._rank = rank
        self._labels = labels
        self._halflife = halflife_hours
        self._floor = floor
        n_rows, n_topics = counts.shape
        self._cap = 2 * int(counts.data.max()) + 2  # above any sum of two counts
        # Packed keys (count sum, label rank) reach 2 * cap * topics; they must fit an int64.
        self._packed = 2 * self._cap * n_topics < KEY_LIMIT
        self._dense = n_rows * n_topics <= _DENSE_CELLS
        if self._dense:
            at = (np.repeat(np.arange(n_rows), np.diff(counts.indptr)), counts.indices)
            self._count_matrix = np.full(counts.shape, -self._cap, np.int64)
            self._count_matrix[at] = counts.data
            self._first_matrix = np.full(counts.shape, _FAR, np.int64)
            self._first_matrix[at] = firsts.data - 1

    def flows(self, x: int, partners: _Partners, names: list[str]) -> list[Flow]:
        lo, hi = self._counts.indptr[x], self._counts.indptr[x + 1]
        cols = self._counts.indices[lo:hi]
        width = self._counts.shape[1] if _wide(cols, self._counts.shape[1]) else len(cols)
        step = max(1, _BLOCK_CELLS // max(width, 1))
        out: list[Flow] = []
        for start in range(0, len(partners.rows), step):
            part = partners[start : start + step]
            out.extend(self._chunk(x, part, cols, lo, hi, names))
        return out

    def _chunk(
        self,
        x: int,
        partners: _Partners,
        cols: IntArray,
        lo: int,
        hi: int,
        names: list[str],
    ) -> list[Flow]:
        rows, shared = partners.rows, partners.shared
        lags = self._first_block(rows, cols) - (self._firsts.data[lo:hi] - 1)
        lags.sort(axis=1)
        at = np.arange(len(rows))
        # Twice the median, in integer microseconds: exact, so its sign is exact.
        twice = lags[at, (shared - 1) // 2] + lags[at, shared // 2]
        hours = np.abs(twice) / (2 * _US_PER_HOUR)
        heats = heat(partners.similarity, hours, self._halflife)
        keep = np.flatnonzero(heats >= self._floor)
        if len(keep) == 0:
            return []

        counts = self._count_block(rows[keep], cols)
        top = self._most_shared(counts, self._counts.data[lo:hi], self._rank[cols]).tolist()
        flows = []
        for y, median, n_shared, heat_, similarity, delta, ranks in zip(
            rows[keep].tolist(),
            twice[keep].tolist(),
            np.minimum(shared[keep], SHARED_TOPICS).tolist(),
            heats[keep].tolist(),
            partners.similarity[keep].tolist(),
            hours[keep].tolist(),
            top,
            strict=True,
        ):
            if median > 0 or (median == 0 and x < y):  # the partner saw them later: x is the source
                source, target = x, y
            else:
                source, target = y, x
            flows.append(
                Flow(
                    from_country=names[source],
                    to_country=names[target],
                    heat=heat_,
                    similarity_score=similarity,
                    time_delta_hours=delta,
                    shared_topics=tuple(self._labels[r] for r in ranks[:n_shared]),
                )
            )
        return flows

    def _first_block(self, rows: IntArray, cols: IntArray) -> IntArray:
        if self._dense:
            return _take(self._first_matrix, rows, cols)
        raw = _sparse_block(self._firsts, rows, cols)
        block: IntArray = np.where(raw > 0, raw - 1, _FAR)
        return block

    def _count_block(self, rows: IntArray, cols: IntArray) -> IntArray:
        if self._dense:
            return _take(self._count_matrix, rows, cols)
        raw = _sparse_block(self._counts, rows, cols)
        block: IntArray = np.where(raw > 0, raw, -self._cap)
        return block

    def _most_shared(self, counts: IntArray, own: IntArray, rank: IntArray) -> IntArray:
        """Per row, the label ranks of the topics with the largest count sums, best first
        (ties: smallest rank, i.e. label).

        `counts` are the partners' (absent: -cap), `own` are x's, `rank` the topics' label ranks.
        """
        n_cols = counts.shape[1]
        take = min(SHARED_TOPICS, n_cols)
        if not self._packed:  # counts too large to pack: a slower lexicographic sort per row
            sums = counts + own
            ordered = np.lexsort((np.broadcast_to(rank, sums.shape), -sums), axis=1)
            ranks: IntArray = rank[ordered[:, :take]]
            return ranks
        # One int64 per cell, (count sum descending, rank ascending), from which the rank returns.
        n_topics = len(self._rank)
        key = ((self._cap - 2 - own) * n_topics + rank) - counts * n_topics
        if take < n_cols:
            key = np.partition(key, take - 1, axis=1)[:, :take]
        key.sort(axis=1)
        packed: IntArray = key % n_topics
        return packed


def _wide(cols: IntArray, n_topics: int) -> bool:
    """Whether a block over `cols` is best cut from whole rows rather than gathered cell by cell."""
    return 4 * len(cols) >= n_topics


def _take(matrix: IntArray, rows: IntArray, cols: IntArray) -> IntArray:
    """matrix[rows][:, cols] of a dense matrix."""
    if _wide(cols, matrix.shape[1]):
        wide: IntArray = np.take(matrix[rows], cols, axis=1)
        return wide
    narrow: IntArray = matrix[np.ix_(rows, cols)]
    return narrow


def _sparse_block(matrix: Any, rows: IntArray, cols: IntArray) -> IntArray:
    """matrix[rows][:, cols] of a sparse matrix, as a dense array (absent cells are 0)."""
    picked = matrix[rows]
    if _wide(cols, matrix.shape[1]):
        wide: IntArray = np.take(picked.toarray(), cols, axis=1)
        return wide
    narrow: IntArray = picked[:, cols].toarray()
    return narrow


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
    """For each wanted topic, the label of its earliest record (ties: the smallest label)."""
    earliest = np.full(len(wanted), _FAR, np.int64)
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


def _check_halflife(halflife_hours: float) -> None:
    if not halflife_hours > 0:
        raise ValueError(f"halflife_hours must be > 0, got {halflife_hours}")
