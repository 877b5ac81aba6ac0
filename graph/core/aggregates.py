"""Per-country topic totals of a window, the input of hotspots and flows.

:class:`AggregateRow` is one (country, topic key) total; :class:`AggregateTable` holds a
window's totals column by column, as the database returns them. :func:`columns` turns either
into the integer-coded numpy arrays the maths works on.

A row exists for each topic a country has in the window. Two of its values reach back over the
window before it too (DESIGN.md): ``first_seen`` is the topic's earliest record in the country
over both windows, and ``previous_volume`` is the country's summed count in the previous window
(every topic, the same on every row of one country). Everything else is the window's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "KEY_LIMIT",
    "AggregateRow",
    "AggregateTable",
    "Columns",
    "cell_order",
    "check_counts",
    "columns",
    "with_columns",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

KEY_LIMIT = 1 << 62  # packed int64 sort keys must stay below this

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """One country's activity on one topic key inside a window.

    ``label`` is the label of the earliest record in the window, seen at ``window_first_seen``;
    ``first_seen`` is the earliest record over the window and the one before it;
    ``previous_volume`` is the country's summed count (all topics) in the window before.
    """

    country: str
    topic_key: str
    label: str
    count: int
    weighted_confidence: float
    first_seen: datetime
    window_first_seen: datetime
    previous_volume: int


@dataclass(frozen=True, slots=True)
class AggregateTable(Sequence[AggregateRow]):
    """A window's aggregates column by column: what the maths wants, with no object per row.

    It is also a sequence of :class:`AggregateRow` (built on access), so code that walks rows
    keeps working. ``first_seen_us`` and ``window_first_seen_us`` hold microseconds since the
    Unix epoch (UTC).
    """

    countries: list[str] = field(default_factory=list)
    topic_keys: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    weighted_confidences: list[float] = field(default_factory=list)
    first_seen_us: list[int] = field(default_factory=list)
    window_first_seen_us: list[int] = field(default_factory=list)
    previous_volumes: list[int] = field(default_factory=list)
    # What a reader derived from the columns (the arrays of `columns`), kept with them so that
    # flows and hotspots over one window derive it once. The columns are never changed.
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_rows(cls, rows: Iterable[AggregateRow]) -> AggregateTable:
        table = cls()
        for r in rows:
            table.countries.append(r.country)
            table.topic_keys.append(r.topic_key)
            table.labels.append(r.label)
            table.counts.append(r.count)
            table.weighted_confidences.append(r.weighted_confidence)
            table.first_seen_us.append((r.first_seen - _EPOCH) // _MICROSECOND)
            table.window_first_seen_us.append((r.window_first_seen - _EPOCH) // _MICROSECOND)
            table.previous_volumes.append(r.previous_volume)
        return table

    def __len__(self) -> int:
        return len(self.countries)

    @overload
    def __getitem__(self, index: int) -> AggregateRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[AggregateRow]: ...

    def __getitem__(self, index: int | slice) -> AggregateRow | list[AggregateRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return AggregateRow(
            self.countries[index],
            self.topic_keys[index],
            self.labels[index],
            self.counts[index],
            self.weighted_confidences[index],
            _EPOCH + timedelta(microseconds=self.first_seen_us[index]),
            _EPOCH + timedelta(microseconds=self.window_first_seen_us[index]),
            self.previous_volumes[index],
        )

    def __iter__(self) -> Iterator[AggregateRow]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True, slots=True)
class Columns:
    """Aggregates as arrays: country and topic as integer codes, first sightings in µs (over
    both windows in ``seen``, in the window in ``window_seen``; same origin)."""

    country: IntArray
    names: list[str]
    topic: IntArray
    keys: list[str]
    labels: list[str]
    count: IntArray
    weighted: FloatArray
    seen: IntArray
    window_seen: IntArray
    previous: IntArray


def with_columns(table: AggregateTable, derived: Columns) -> AggregateTable:
    """``table``, its arrays given by a reader that had them (db.rollup builds them from its
    codes): they must be what :func:`columns` would derive from the lists, codes included
    (tests/service/test_snapshots.py holds the rollup's to that)."""
    table.derived["columns"] = derived
    return table


def columns(aggregates: Sequence[AggregateRow]) -> Columns:
    """The arrays of `aggregates`; a table derives them once and keeps them."""
    if isinstance(aggregates, AggregateTable):
        derived = aggregates.derived.get("columns")
        if not isinstance(derived, Columns):
            derived = aggregates.derived["columns"] = _build(aggregates)
        return derived
    return _build(aggregates)


def _build(aggregates: Sequence[AggregateRow]) -> Columns:
    n = len(aggregates)
    if isinstance(aggregates, AggregateTable):
        table = aggregates
        countries, topic_keys, labels = table.countries, table.topic_keys, table.labels
        count = np.array(table.counts, np.int64)
        weighted = np.array(table.weighted_confidences, np.float64)
        seen = np.array(table.first_seen_us, np.int64)
        window_seen = np.array(table.window_first_seen_us, np.int64)
        previous = np.array(table.previous_volumes, np.int64)
    else:
        countries = [a.country for a in aggregates]
        topic_keys = [a.topic_key for a in aggregates]
        labels = [a.label for a in aggregates]
        count = np.fromiter([a.count for a in aggregates], np.int64, n)
        weighted = np.fromiter([a.weighted_confidence for a in aggregates], np.float64, n)
        base = aggregates[0].first_seen
        # Integer microseconds keep lags exact, so a median of exactly zero is recognised.
        seen = np.fromiter([(a.first_seen - base) // _MICROSECOND for a in aggregates], np.int64, n)
        window_seen = np.fromiter(
            [(a.window_first_seen - base) // _MICROSECOND for a in aggregates], np.int64, n
        )
        previous = np.fromiter([a.previous_volume for a in aggregates], np.int64, n)
    country, names = _encode(countries)
    topic, keys = _encode(topic_keys)
    return Columns(
        country, names, topic, keys, labels, count, weighted, seen, window_seen, previous
    )


def _encode(values: list[str]) -> tuple[IntArray, list[str]]:
    """Integer codes for strings (in order of first appearance) and the strings by code."""
    distinct = list(dict.fromkeys(values))
    codes = dict(zip(distinct, range(len(distinct)), strict=True))
    # map() over the dict's own lookup runs in C: a few times faster than a comprehension.
    encoded = np.fromiter(map(codes.__getitem__, values), np.int64, len(values))
    return encoded, distinct


def cell_order(country: IntArray, topic: IntArray, names: list[str]) -> IntArray:
    """The permutation sorting aggregates by (country, topic); one aggregate per cell."""
    n_topics = int(topic.max()) + 1
    cells = country * n_topics + topic
    order: IntArray = np.argsort(cells)
    ordered = cells[order]
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(repeated):
        c = int(ordered[repeated[0]] // n_topics)
        raise ValueError(f"more than one aggregate for a topic of country {names[c]}")
    return order


def check_counts(count: IntArray) -> None:
    if np.any(count < 1):
        raise ValueError("count must be >= 1")
