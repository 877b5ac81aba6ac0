"""A country's hotspot history: the hotspot definition (graph.core.hotspots) at many instants.

Every point is computed from one country's records over ``since - 2W < timestamp <= until``,
in one vectorised pass, not one window computation per point: with the records sorted by
time, prefix sums give each window's volume, previous volume and weighted confidence, and
``searchsorted`` each window's bounds. The distinct topics of a window are its records whose
previous record of the same topic lies before the window: each record counts for a run of
consecutive instants, added up with a difference array.

At each ``as_of``: V = sum(count) over ``as_of - W < t <= as_of``, P the same over the window
before, velocity = 2V/(V+P), avg_confidence = sum(count * confidence)/V, score = V * velocity *
avg_confidence, topic_count = distinct topic keys in the window; all zero when V is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

__all__ = ["CountryRecord", "HotspotPoint", "history_instants", "hotspot_history"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# A record of the country: timestamp, topic key, count, confidence.
CountryRecord = tuple[datetime, str, int, float]


@dataclass(frozen=True, slots=True)
class HotspotPoint:
    """One country's hotspot figures in the window ending at as_of (zeros without data)."""

    as_of: datetime
    score: float
    volume: int
    velocity: float
    avg_confidence: float
    topic_count: int


def history_instants(since: datetime, until: datetime, step: timedelta) -> int:
    """How many instants ``since + k * step`` lie at or before ``until`` (0 when none)."""
    if until < since:
        return 0
    return (until - since) // step + 1


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def hotspot_history(
    records: Sequence[CountryRecord],
    window: timedelta,
    since: datetime,
    step: timedelta,
    points: int,
) -> list[HotspotPoint]:
    """The country's figures at ``since + k * step`` for k in 0..points-1, oldest first.

    ``records`` are the country's (any order) over at least ``since - 2W`` to the last instant;
    counts must be >= 1."""
    if points <= 0:
        return []
    step_us, window_us = step // _MICROSECOND, window // _MICROSECOND
    as_of = _micros(since) + step_us * np.arange(points, dtype=np.int64)
    ordered = sorted(records, key=lambda r: r[0])
    t = np.array([_micros(r[0]) for r in ordered], np.int64)
    count = np.array([r[2] for r in ordered], np.int64)
    if np.any(count < 1):
        raise ValueError("count must be >= 1")
    weighted = count * np.array([r[3] for r in ordered], np.float64)
    keys = [r[1] for r in ordered]

    # Records with t <= bound: hi (window end), mid (window start), lo (previous window start).
    hi = np.searchsorted(t, as_of, side="right")
    mid = np.searchsorted(t, as_of - window_us, side="right")
    lo = np.searchsorted(t, as_of - 2 * window_us, side="right")
    counts = np.concatenate(([0], np.cumsum(count)))
    weights = np.concatenate(([0.0], np.cumsum(weighted)))
    volume = counts[hi] - counts[mid]
    previous = counts[mid] - counts[lo]
    present = volume > 0
    safe = np.where(present, volume, 1)
    velocity = np.where(present, 2.0 * volume / (safe + previous), 0.0)
    avg_confidence = np.where(present, (weights[hi] - weights[mid]) / safe, 0.0)
    score = volume * velocity * avg_confidence
    topic_count = _distinct_topics(keys, mid, hi)
    return [
        HotspotPoint(
            as_of=since + k * step,
            score=float(score[k]),
            volume=int(volume[k]),
            velocity=float(velocity[k]),
            avg_confidence=float(avg_confidence[k]),
            topic_count=int(topic_count[k]),
        )
        for k in range(points)
    ]


def _distinct_topics(
    keys: Sequence[str], start: npt.NDArray[np.intp], end: npt.NDArray[np.intp]
) -> npt.NDArray[np.int64]:
    """Distinct keys among records ``start[k] <= i < end[k]`` (both nondecreasing in k).

    Record i counts for query k when it is inside (start[k] <= i < end[k]) and the previous
    record with its key is not (prev[i] < start[k]): a run of consecutive k, since both bounds
    only grow."""
    points = len(start)
    if not keys:
        return np.zeros(points, np.int64)
    numbering: dict[str, int] = {}
    codes = np.array([numbering.setdefault(key, len(numbering)) for key in keys], np.int64)
    index = np.arange(len(keys))
    by_key = np.lexsort((index, codes))
    prev = np.full(len(keys), -1, np.intp)
    same = codes[by_key[1:]] == codes[by_key[:-1]]
    prev[by_key[1:][same]] = by_key[:-1][same]
    first = np.maximum(
        np.searchsorted(end, index, side="right"),  # first k with end[k] > i
        np.searchsorted(start, prev, side="right"),  # first k with start[k] > prev[i]
    )
    last = np.searchsorted(start, index, side="right")  # first k with start[k] > i
    runs = first < last
    delta = np.zeros(points + 1, np.int64)
    np.add.at(delta, first[runs], 1)
    np.add.at(delta, last[runs], -1)
    return np.cumsum(delta[:-1])
