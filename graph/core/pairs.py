"""Country pairs, a block at a time: their median lags, heats, directions and most-shared topics.

:func:`link_pairs` takes pairs of countries (rows of the count matrices) with a shared topic and
gives a :class:`Link` for each whose heat reaches a floor. Each pair is handled by its country
with fewer topics, against all of that country's partners at once: no Python loop runs over
pairs, only over the countries that own some; a large window's countries share a few threads
(numpy's sorts and gathers run without the GIL).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from graph.core.aggregates import KEY_LIMIT
from graph.core.heat import heat

__all__ = ["SHARED_TOPICS", "Link", "PairBlocks", "link_pairs", "twice_medians"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SHARED_TOPICS = 10

_US_PER_HOUR = 3_600_000_000
FAR = 1 << 62  # first sighting of an absent topic: later than any datetime, in microseconds
_BLOCK_CELLS = 1 << 21  # cells per block of partners (16 MiB per int64 array)
_DENSE_CELLS = 1 << 23  # matrices up to this many cells are held dense (64 MiB per int64 array)
_PARALLEL_CELLS = 1 << 24  # pair blocks holding this many cells in all are shared over threads
# Threads for them: the CPUs this process may run on (a pinned worker gets none), at most 4.
_THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
# Pair blocks holding this many cells in all find their median lags the way this machine does
# faster (:func:`_selection_wins`); smaller windows sort, and never pay for timing the two.
_TIMED_CELLS = _PARALLEL_CELLS


class Link(NamedTuple):
    """One pair as a flow: row indices of its source and target, and the flow's numbers;
    ``ranks`` are the label ranks of its most-shared topics, best first."""

    source: int
    target: int
    heat: float
    similarity: float
    hours: float
    simultaneous: bool
    ranks: list[int]


@dataclass(frozen=True, slots=True)
class _Partners:
    """Some countries paired with one country x: their indices, similarities, shared topics."""

    rows: IntArray
    similarity: FloatArray
    shared: IntArray

    def __getitem__(self, part: slice | IntArray) -> _Partners:
        return _Partners(self.rows[part], self.similarity[part], self.shared[part])


def link_pairs(
    blocks: PairBlocks,
    a: IntArray,
    b: IntArray,
    similarity: FloatArray,
    shared: IntArray,
    floor: float,
) -> list[Link]:
    """The pairs (a[i], b[i]) whose heat is >= floor, in no particular order."""
    sizes = np.diff(blocks.counts.indptr)
    owner = np.where(sizes[a] <= sizes[b], a, b)
    partner = a + b - owner
    by_owner = np.argsort(owner, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=len(sizes)))))
    owners = np.flatnonzero(np.diff(bounds)).tolist()
    cells = int(sizes[owner].sum())
    select = cells >= _TIMED_CELLS and _selection_wins()

    def linked(x: int) -> list[Link]:
        group = by_owner[bounds[x] : bounds[x + 1]]
        partners = _Partners(partner[group], similarity[group], shared[group])
        return blocks.links(x, partners, floor, select=select)

    # The blocks' sorts, gathers and partitions release the GIL: a large window's blocks
    # share the machine's cores. Each owner's links are its own, and they are joined in the
    # owners' order, so the answer is the same however the work was shared.
    per_owner: Iterable[list[Link]]
    if cells < _PARALLEL_CELLS or _THREADS < 2:
        per_owner = map(linked, owners)
    else:
        per_owner = _pool().map(linked, owners)
    return [link for links in per_owner for link in links]


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """The threads that share large windows' pair blocks (made on first use)."""
    return ThreadPoolExecutor(_THREADS, thread_name_prefix="trendmap-pairs")


class PairBlocks:
    """One country against many partners at once: median lags, heats and most-shared topics.

    `counts` and `firsts` are CSR matrices (countries x topics, countries in alphabetical
    order) of summed counts and of first sightings in microseconds plus one; `rank` is each
    topic's place in label order. Up to _DENSE_CELLS cells they are also held dense, with
    sentinels for absent topics: a count of -cap (below any real one, so an absent topic's count
    sum is negative) and a first sighting FAR in the future (its lag sorts after every real lag).
    A median lag under `min_lag_hours` makes a pair simultaneous.
    """

    def __init__(
        self,
        counts: Any,
        firsts: Any,
        rank: IntArray,
        halflife_hours: float,
        min_lag_hours: float,
    ) -> None:
        self.counts = counts
        self._firsts = firsts
        self._rank = rank
        self._halflife = halflife_hours
        self._min_lag = min_lag_hours
        n_rows, n_topics = counts.shape
        self._cap = 2 * int(counts.data.max()) + 2  # above any sum of two counts
        # Packed keys (count sum, label rank) reach 2 * cap * topics; they must fit an int64.
        self._packed = 2 * self._cap * n_topics < KEY_LIMIT
        self._dense = n_rows * n_topics <= _DENSE_CELLS
        if self._dense:
            at = (np.repeat(np.arange(n_rows), np.diff(counts.indptr)), counts.indices)
            self._count_matrix = np.full(counts.shape, -self._cap, np.int64)
            self._count_matrix[at] = counts.data
            self._first_matrix = np.full(counts.shape, FAR, np.int64)
            self._first_matrix[at] = firsts.data - 1

    def links(self, x: int, partners: _Partners, floor: float, *, select: bool) -> list[Link]:
        lo, hi = self.counts.indptr[x], self.counts.indptr[x + 1]
        cols = self.counts.indices[lo:hi]
        width = self.counts.shape[1] if _wide(cols, self.counts.shape[1]) else len(cols)
        step = max(1, _BLOCK_CELLS // max(width, 1))
        out: list[Link] = []
        for start in range(0, len(partners.rows), step):
            part = partners[start : start + step]
            out.extend(self._chunk(x, part, cols, lo, hi, floor, select))
        return out

    def _chunk(
        self,
        x: int,
        partners: _Partners,
        cols: IntArray,
        lo: int,
        hi: int,
        floor: float,
        select: bool,
    ) -> list[Link]:
        rows, shared = partners.rows, partners.shared
        lags = self._first_block(rows, cols) - (self._firsts.data[lo:hi] - 1)
        # Twice the median, in integer microseconds: exact, so its sign is exact.
        twice = twice_medians(lags, shared, select=select)
        hours = np.abs(twice) / (2 * _US_PER_HOUR)
        heats = heat(partners.similarity, hours, self._halflife)
        keep = np.flatnonzero(heats >= floor)
        if len(keep) == 0:
            return []

        counts = self._count_block(rows[keep], cols)
        top = self._most_shared(counts, self.counts.data[lo:hi], self._rank[cols]).tolist()
        links = []
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
            simultaneous = delta < self._min_lag
            if simultaneous:  # alphabetically smaller first: indices are in alphabetical order
                source, target = min(x, y), max(x, y)
            elif median > 0:  # the partner saw them later: x is the source
                source, target = x, y
            else:
                source, target = y, x
            links.append(
                Link(source, target, heat_, similarity, delta, simultaneous, ranks[:n_shared])
            )
        return links

    def _first_block(self, rows: IntArray, cols: IntArray) -> IntArray:
        if self._dense:
            return _take(self._first_matrix, rows, cols)
        raw = _sparse_block(self._firsts, rows, cols)
        block: IntArray = np.where(raw > 0, raw - 1, FAR)
        return block

    def _count_block(self, rows: IntArray, cols: IntArray) -> IntArray:
        if self._dense:
            return _take(self._count_matrix, rows, cols)
        raw = _sparse_block(self.counts, rows, cols)
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


def twice_medians(lags: IntArray, shared: IntArray, *, select: bool) -> IntArray:
    """Twice the median of each row's real lags, in integer microseconds (exact).

    Row i holds ``shared[i]`` (at least one) real lags; its other cells are absent topics,
    each above ``FAR // 2`` and so above every real lag. ``lags`` is reordered in place.

    Sorting every row puts each row's median at its own places. Selecting instead needs the
    medians at the same places in every row: enough of each row's absent cells are negated
    (below every real lag) that its median places become the block's middle, and a partition
    at those places leaves the right values there. Both give the same numbers; which is faster
    depends on the machine (:func:`_selection_wins`)."""
    at = np.arange(len(lags))
    if not select:
        lags.sort(axis=1)
        twice: IntArray = lags[at, (shared - 1) // 2] + lags[at, shared // 2]
        return twice
    width = lags.shape[1]
    middle = (width - 1) // 2
    # Absent cells put below the real lags, so that each row's lower median place is `middle`.
    below = middle - (shared - 1) // 2
    absent = lags > FAR // 2
    order = np.cumsum(absent, axis=1, dtype=np.int32)  # each absent cell's place among them
    put_below = absent & (order <= below[:, None])
    lags *= 1 - 2 * put_below.view(np.int8)  # negated: a multiply beats a masked negative
    lags.partition([middle, middle + 1] if middle + 1 < width else [middle], axis=1)
    # An even count's upper median is the next place; an odd count's is the same one.
    selected: IntArray = lags[at, middle] + lags[at, middle + 1 - shared % 2]
    return selected


@functools.cache
def _selection_wins() -> bool:
    """Whether selecting the median places (:func:`twice_medians`) beats sorting whole rows on
    this machine: timed once per process, before its first large window.

    Machines disagree by several times either way: a row sort of 250 x 3,800 lags took 4.2 ms
    on one of ours (numpy's vectorised sort) and 18.5 ms on another, where the selection took
    12 ms and 10 ms. The answers are the same whichever runs."""
    rng = np.random.default_rng(0)
    block = rng.integers(-48 * _US_PER_HOUR, 48 * _US_PER_HOUR, size=(128, 2048))
    absent = rng.random(block.shape) < 0.2
    absent[:, 0] = False  # every row shares a topic
    block[absent] = FAR
    shared = block.shape[1] - absent.sum(axis=1)

    def best(select: bool) -> float:
        times = []
        for _ in range(3):
            lags = block.copy()
            started = time.perf_counter()
            twice_medians(lags, shared, select=select)
            times.append(time.perf_counter() - started)
        return min(times)

    return best(True) < best(False)


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
