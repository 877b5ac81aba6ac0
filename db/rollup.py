"""A window's aggregates from the hourly rollup (PostgreSQL, migration 0003), summed in numpy.

PostgreSQL sends the rows that make up a window, and nothing else: the rollup rows of the whole
hours in ``previous_start < timestamp <= end`` and the archive's rows in the partial hours at
its three edges (none when the window's bounds are on the hour), each as (series id, in the
window?, count, count x confidence, first microseconds, first label id). They come by binary
COPY, fixed-width, so numpy reads them as one structured array without a Python object per
row. The grouping by series id happens here: hashing 440,000 rows into 260,000 groups, joining
the names back and building arrays of text took PostgreSQL four fifths of a cold window.

Series and labels are integers in the rollup. Their names come from :class:`Dictionaries`,
this process's copy of the two append-only tables ``trends_series`` and ``trends_labels``:
whatever ids a window holds that the copy lacks are read (one range of ids per table), so a
window costs their names once per process. The copy is dropped when either table is rewritten
(a new relfilenode: a migration that rebuilt it, a TRUNCATE). It grows with the archive's
distinct series and spellings, never with what clients ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from db.blocks import BLOCK_HOURS

__all__ = ["CodedColumns", "ReadWindow", "RollupReader", "WindowColumns", "rollup_bounds"]

_HOUR = timedelta(hours=1)
_BLOCK = timedelta(hours=BLOCK_HOURS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The window's parts, $1..$9 = previous_start, end, start, whole_from, whole_to, straddled,
# straddled_from, blocks, hours (see rollup_bounds). The blocks named in $8 that are built at
# their latest write (db.blocks) are read whole; the hours $9 outside them from the hourly
# rollup; the partial hours from the archive, one range scan each (an index-only scan of the
# covering index; an OR of the three ranges made it a bitmap scan of the table, four times
# slower; each range kept within ($1, $2] too), the straddled hour only when there is one
# ($6 > $4: else its range lies within the first, read already). Every column is NOT NULL
# and fixed-width.
WINDOW_PARTS = """
    WITH built AS MATERIALIZED (
        SELECT s.block FROM trends_rollup_block_state AS s
        WHERE s.block = ANY($8::timestamptz[]) AND s.built = s.changes
    )
    SELECT b.series_id, b.block > $3 AS in_window, b.count_sum, b.weighted_sum, b.first_us,
           b.first_label_id
    FROM trends_rollup_blocks AS b
    WHERE b.block = ANY(ARRAY(SELECT block FROM built))
    UNION ALL
    SELECT r.series_id, r.hour > $3, r.count_sum, r.weighted_sum, r.first_us, r.first_label_id
    FROM trends_rollup_hourly AS r
    WHERE r.hour = ANY(ARRAY(
        SELECT h FROM unnest($9::timestamptz[]) AS h
        WHERE date_bin({block}, h - interval '1 microsecond', timestamptz 'epoch') + {block}
              NOT IN (SELECT block FROM built)
    ))
    UNION ALL
    SELECT s.id, a.timestamp > $3, a.count::bigint, a.count * a.confidence,
           (extract(epoch FROM a.timestamp) * 1000000)::bigint, l.id
    FROM (
        SELECT {edge} FROM trends_archive
        WHERE timestamp > $1 AND timestamp <= $4 AND timestamp <= $2
        UNION ALL
        SELECT {edge} FROM trends_archive
        WHERE timestamp > $7 AND timestamp <= $6 AND timestamp > $1 AND timestamp <= $2
          AND $6 > $4
        UNION ALL
        SELECT {edge} FROM trends_archive
        WHERE timestamp > $5 AND timestamp <= $2 AND timestamp > $1
    ) AS a
    JOIN trends_series AS s ON s.country = a.country AND s.topic_key = a.topic_key
    JOIN trends_labels AS l ON l.label = a.topic_label
""".format(
    block=f"interval '{BLOCK_HOURS} hours'",
    edge="timestamp, country, topic_key, count, confidence, topic_label",
)

# One row of WINDOW_PARTS in PostgreSQL's binary COPY format: a field count, then each field
# as its byte length and its big-endian value.
_PART = np.dtype(
    [
        ("fields", ">i2"),
        ("series_len", ">i4"),
        ("series", ">i4"),
        ("in_window_len", ">i4"),
        ("in_window", "u1"),
        ("count_len", ">i4"),
        ("count", ">i8"),
        ("weighted_len", ">i4"),
        ("weighted", ">f8"),
        ("first_len", ">i4"),
        ("first", ">i8"),
        ("label_len", ">i4"),
        ("label", ">i4"),
    ]
)
_PART_LENGTHS = {
    "series_len": 4,
    "in_window_len": 1,
    "count_len": 8,
    "weighted_len": 8,
    "first_len": 8,
    "label_len": 4,
}
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_TRAILER = b"\xff\xff"
# The header's fixed part: the signature, 4 bytes of flags and the extension's length.
_HEADER = len(_SIGNATURE) + 8

# The names of ids from..to (inclusive), as arrays; text joined with \x01 travels far faster
# than a text[] (the archive's API refuses control characters, but SQL may have written one:
# then the split does not add up and the arrays are asked for).
SERIES_NAMES = """
    SELECT array_agg(id), string_agg(country, chr(1)), string_agg(topic_key, chr(1))
    FROM trends_series WHERE id BETWEEN $1 AND $2
"""
SERIES_NAMES_ARRAYS = """
    SELECT array_agg(id), array_agg(country), array_agg(topic_key)
    FROM trends_series WHERE id BETWEEN $1 AND $2
"""
LABEL_NAMES = """
    SELECT array_agg(id), string_agg(label, chr(1)) FROM trends_labels WHERE id BETWEEN $1 AND $2
"""
LABEL_NAMES_ARRAYS = """
    SELECT array_agg(id), array_agg(label) FROM trends_labels WHERE id BETWEEN $1 AND $2
"""
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


def _hour_floor(moment: datetime) -> datetime:
    """The whole hour at or before ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_end(moment: datetime) -> datetime:
    """The end of the rollup hour ``moment`` falls in (hour - 1 h < moment <= hour)."""
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + _HOUR


def rollup_bounds(previous_start: datetime, start: datetime, end: datetime) -> dict[str, Any]:
    """Where a window's whole hours are: rollup hours in ``(whole_from, whole_to]`` except
    ``straddled`` (the hour ``start`` cuts in two, when it is not on the hour); the archive
    gives the rest of ``(previous_start, end]``: ``(previous_start, whole_from]``, the
    straddled hour and ``(whole_to, end]`` (empty when a bound is on the hour). ``hours`` lists
    the rollup hours, ``blocks`` the six-hour blocks (db.blocks) made of them wholly."""
    whole_from = _hour_end(previous_start)
    whole_to = max(whole_from, _hour_floor(end))
    cut = _hour_end(start)
    # When no rollup hour is cut, name one outside the rollup's range: its raw range then
    # lies within (previous_start, whole_from], read already.
    straddled = cut if cut != start and whole_from < cut <= whole_to else whole_from
    hours = _whole_hours(whole_from, whole_to, straddled)
    return {
        "previous_start": previous_start,
        "start": start,
        "end": end,
        "whole_from": whole_from,
        "whole_to": whole_to,
        "straddled": straddled,
        "straddled_from": straddled - _HOUR,
        "blocks": _whole_blocks(hours, start),
        "hours": hours,
    }


def _whole_hours(whole_from: datetime, whole_to: datetime, straddled: datetime) -> list[datetime]:
    """The rollup hours in ``(whole_from, whole_to]`` but ``straddled``."""
    count = (whole_to - whole_from) // _HOUR
    hours = (whole_from + k * _HOUR for k in range(1, count + 1))
    return [hour for hour in hours if hour != straddled]


def _whole_blocks(hours: list[datetime], start: datetime) -> list[datetime]:
    """The blocks (db.blocks) all of whose hours are among ``hours`` and on one side of
    ``start``: a block is then wholly in the window or wholly before it."""
    taken = set(hours)
    blocks = []
    for hour in hours:
        if (hour - _EPOCH) % _BLOCK:
            continue  # not a block's last hour
        inside = [hour - k * _HOUR for k in range(BLOCK_HOURS)]
        if taken.issuperset(inside) and len({h > start for h in inside}) == 1:
            blocks.append(hour)
    return blocks


def parts_arguments(bounds: dict[str, Any]) -> tuple[Any, ...]:
    """WINDOW_PARTS' $1..$9 from :func:`rollup_bounds`."""
    names = "previous_start end start whole_from whole_to straddled straddled_from blocks hours"
    return tuple(bounds[name] for name in names.split())


def parse_parts(data: bytes | bytearray) -> npt.NDArray[np.void]:
    """WINDOW_PARTS' rows from its whole binary COPY output, as one structured array over it."""
    if not data.startswith(_SIGNATURE) or not data.endswith(_TRAILER):
        raise ValueError("not PostgreSQL's binary COPY output")
    return _rows(memoryview(data)[_header_length(data) : -len(_TRAILER)])


def _header_length(data: bytes | bytearray) -> int:
    """The length of a binary COPY output's header (its signature, flags and extension)."""
    extension = int.from_bytes(data[_HEADER - 4 : _HEADER], "big")
    return _HEADER + extension


def _rows(body: memoryview) -> npt.NDArray[np.void]:
    """Whole WINDOW_PARTS rows, checked to be the fixed-width rows expected."""
    if len(body) % _PART.itemsize:
        raise ValueError("a window part is not the expected fixed-width row")
    rows = np.frombuffer(body, dtype=_PART)
    if (rows["fields"] != 6).any() or any(
        (rows[name] != length).any() for name, length in _PART_LENGTHS.items()
    ):
        raise ValueError("a window part is not the expected fixed-width row")
    return rows


@dataclass
class Dictionaries:
    """This process's copy of ``trends_series`` and ``trends_labels``, indexed by id.

    A series id maps to the index of its country in ``countries`` and of its topic key in
    ``topic_keys`` (-1: not known here yet); a label id to its text (None: not known)."""

    version: tuple[int, int]
    series_country: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    series_topic: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    countries: list[str] = field(default_factory=list)
    topic_keys: list[str] = field(default_factory=list)
    labels: ObjectArray = field(default_factory=lambda: np.empty(0, object))
    label_known: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, bool))
    _country_index: dict[str, int] = field(default_factory=dict)
    _topic_index: dict[str, int] = field(default_factory=dict)
    _arrays: dict[str, ObjectArray] = field(default_factory=dict)

    def country_names(self) -> ObjectArray:
        """The countries as an array, to be indexed by codes."""
        return _names_array(self._arrays, "countries", self.countries)

    def topic_names(self) -> ObjectArray:
        """The topic keys as an array, to be indexed by codes."""
        return _names_array(self._arrays, "topic_keys", self.topic_keys)

    def missing_series(self, ids: IntArray) -> IntArray:
        known = ids < len(self.series_topic)
        known[known] = self.series_topic[ids[known]] >= 0
        return ids[~known]

    def missing_labels(self, ids: IntArray) -> IntArray:
        known = ids < len(self.labels)
        known[known] = self.label_known[ids[known]]
        return ids[~known]

    def add_series(self, ids: list[int], countries: list[str], topic_keys: list[str]) -> None:
        if not ids:
            return
        size = max(ids) + 1
        if size > len(self.series_topic):
            grow = _growth(len(self.series_topic), size)
            self.series_country = np.concatenate([self.series_country, np.full(grow, -1)])
            self.series_topic = np.concatenate([self.series_topic, np.full(grow, -1)])
        where = np.asarray(ids, np.int64)
        self.series_country[where] = _codes(self._country_index, self.countries, countries)
        self.series_topic[where] = _codes(self._topic_index, self.topic_keys, topic_keys)

    def add_labels(self, ids: list[int], labels: list[str]) -> None:
        if not ids:
            return
        size = max(ids) + 1
        if size > len(self.labels):
            grow = _growth(len(self.labels), size)
            self.labels = np.concatenate([self.labels, np.full(grow, None)])
            self.label_known = np.concatenate([self.label_known, np.zeros(grow, bool)])
        where = np.asarray(ids, np.int64)
        self.labels[where] = labels
        self.label_known[where] = True


def _growth(length: int, size: int) -> int:
    """How many entries an id table of ``length`` grows by to hold ``size``: by half at
    least, so that a stream of new series copies it a few times, not once per window."""
    return max(size, length + length // 2) - length


def _names_array(arrays: dict[str, ObjectArray], name: str, names: list[str]) -> ObjectArray:
    """``names`` as an object array, made again only when it has grown."""
    array = arrays.get(name)
    if array is None or len(array) != len(names):
        array = arrays[name] = np.asarray(names, object)
    return array


def _codes(index: dict[str, int], names: list[str], values: list[str]) -> list[int]:
    """Each value's place in ``names``, the new ones appended (loops over the distinct
    values only: a window's 260,000 series have 5,000 topic keys)."""
    for name in dict.fromkeys(values):
        if name not in index:
            index[name] = len(names)
            names.append(name)
    return list(map(index.__getitem__, values))


@dataclass(frozen=True)
class Groups:
    """A window's parts summed per series, every series a part names (in id order)."""

    series: IntArray
    in_window: npt.NDArray[np.bool_]
    count: FloatArray
    weighted: FloatArray
    first_us: IntArray
    window_first_us: IntArray
    window_first_label: IntArray
    previous_count: FloatArray


class PartSums:
    """A window's parts summed per series id while its COPY output arrives.

    PostgreSQL's sending of the rows is what a large window waits for (about 3.7 million rows
    a second here); summing them as they come uses that wait, and the output is never held
    whole (a 10M-record window sends 220 MB). Rows are summed in the order they came, each
    into its series' running sums (``ufunc.at``), so the float sums are the same bits however
    the output was cut into chunks. Counts are summed as float64, exact below 2^53 (a series'
    count in two windows stays far below it). Timestamps are unique within a series, so the
    earliest record in the window is one row, whose label the series takes.

    Series ids are dense (a serial key): a table over them gives each its place in the sums,
    as large as the process's copy of the names already is (:class:`Dictionaries`).
    """

    def __init__(self, batch_rows: int = 1 << 16) -> None:
        self._batch = batch_rows * _PART.itemsize  # bytes summed at a time
        self._pending = bytearray()
        self._started = False  # the header is read
        self._place = np.empty(0, np.int32)  # per series id: its place in the sums, or -1
        self._n = 0  # places taken
        self._in_window = np.empty(0, bool)
        self._count = np.empty(0, np.float64)
        self._weighted = np.empty(0, np.float64)
        self._previous = np.empty(0, np.float64)
        self._first = np.empty(0, np.int64)
        self._window_first = np.empty(0, np.int64)
        self._label = np.empty(0, np.int64)

    def feed(self, chunk: bytes | bytearray) -> None:
        """The next chunk of the COPY output, as it arrived."""
        pending = self._pending
        pending += chunk
        if not self._started:
            if len(pending) < _HEADER:
                return
            if not pending.startswith(_SIGNATURE):
                raise ValueError("not PostgreSQL's binary COPY output")
            header = _header_length(pending)
            if len(pending) < header:
                return
            del pending[:header]
            self._started = True
        # The last two bytes may be the trailer: only rows before them are sure to be rows.
        if len(pending) - len(_TRAILER) >= self._batch:
            whole = (len(pending) - len(_TRAILER)) // _PART.itemsize * _PART.itemsize
            self._add(_rows(memoryview(pending)[:whole]))
            del pending[:whole]

    def finish(self) -> Groups:
        """Every series a part names, in id order, and its sums, once the whole output was
        fed."""
        self.close()
        return self.groups()

    def close(self) -> None:
        """Sum the last rows, once the whole output was fed."""
        pending = self._pending
        if not self._started or not pending.endswith(_TRAILER):
            raise ValueError("not PostgreSQL's binary COPY output")
        self._add(_rows(memoryview(pending)[: -len(_TRAILER)]))
        pending.clear()

    @property
    def size(self) -> int:
        """How many series the parts named so far."""
        return self._n

    def named(self) -> tuple[IntArray, IntArray]:
        """The series ids the parts named, and the labels the window's earliest rows carry:
        what the names must hold (in no particular order; cheaper than :meth:`groups`)."""
        ids = np.flatnonzero(self._place >= 0)
        labels = self._label[: self._n][self._in_window[: self._n]]
        return ids, labels

    def groups(self) -> Groups:
        """Every series a part names, in id order, and its sums, once closed."""
        ids = np.flatnonzero(self._place >= 0)
        at = self._place[ids]
        return Groups(
            ids,
            self._in_window[at],
            self._count[at],
            self._weighted[at],
            self._first[at],
            self._window_first[at],
            self._label[at],
            self._previous[at],
        )

    def _add(self, rows: npt.NDArray[np.void]) -> None:
        """Whole rows, in the order they came."""
        if not len(rows):
            return
        at = self._places(rows["series"].astype(np.int64))
        inside = rows["in_window"].astype(bool)
        count = rows["count"].astype(np.float64)
        first = rows["first"].astype(np.int64)
        np.add.at(self._count, at, np.where(inside, count, 0.0))
        np.add.at(self._weighted, at, np.where(inside, rows["weighted"].astype(np.float64), 0.0))
        np.add.at(self._previous, at, np.where(inside, 0.0, count))
        np.minimum.at(self._first, at, first)
        self._in_window[at[inside]] = True
        at, first = at[inside], first[inside]
        np.minimum.at(self._window_first, at, first)
        # A row earliest so far takes its label; an earlier row, later, takes it over.
        earliest = np.flatnonzero(first == self._window_first[at])
        self._label[at[earliest]] = rows["label"][inside][earliest]

    def _places(self, ids: IntArray) -> npt.NDArray[np.int32]:
        """Each id's place in the sums, new ids given the next places."""
        if int(ids.min()) < 0:
            raise ValueError("a window part names a negative series id")
        top = int(ids.max()) + 1
        if top > len(self._place):
            grow = _growth(len(self._place), top)
            self._place = np.concatenate([self._place, np.full(grow, -1, np.int32)])
        at = self._place[ids]
        new = ids[at < 0]
        if len(new):
            # One place per distinct new id, without sorting them: each new row writes its
            # position under its id, and the row whose position stayed is its id's one.
            positions = np.arange(len(new), dtype=np.int32)
            self._place[new] = positions
            fresh = new[self._place[new] == positions]
            self._grow(len(fresh))
            self._place[fresh] = np.arange(self._n, self._n + len(fresh), dtype=np.int32)
            self._n += len(fresh)
            at = self._place[ids]
        return at

    def _grow(self, more: int) -> None:
        """Room for ``more`` places beyond those taken."""
        if self._n + more <= len(self._count):
            return
        grow = _growth(len(self._count), self._n + more)
        latest = np.iinfo(np.int64).max
        for name, fill in (
            ("_in_window", False),
            ("_count", 0.0),
            ("_weighted", 0.0),
            ("_previous", 0.0),
            ("_first", latest),
            ("_window_first", latest),
            ("_label", 0),
        ):
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.full(grow, fill, array.dtype)]))


def _dense(values: IntArray) -> tuple[IntArray, IntArray]:
    """The distinct values in order, and each value's place among them: ``np.unique`` with
    ``return_inverse``, by a table over the values' range where that is small next to their
    number (dense codes; eight times faster than sorting them)."""
    if not len(values):
        return values, values
    top = int(values.max()) + 1
    if int(values.min()) < 0 or top > 4 * len(values) + 1024:
        distinct, inverse = np.unique(values, return_inverse=True)
        return distinct, inverse.reshape(-1)
    present = np.zeros(top, bool)
    present[values] = True
    place = np.cumsum(present) - 1
    return np.flatnonzero(present), place[values]


# A window's columns, in db.repository.AggregateColumns' order.
WindowColumns = tuple[
    list[str], list[str], list[str], list[int], list[float], list[int], list[int], list[int]
]


@dataclass(frozen=True)
class CodedColumns:
    """A window's columns as arrays, its names as integer codes in order of first appearance
    over the rows (``countries[country[i]]`` is row i's country): what graph.core.aggregates
    would derive from the lists, built here from the codes the dictionaries already give."""

    country: IntArray
    countries: list[str]
    topic: IntArray
    topic_keys: list[str]
    count: IntArray
    weighted: FloatArray
    first_us: IntArray
    window_first_us: IntArray
    previous_volume: IntArray


def window_columns(groups: Groups, names: Dictionaries) -> tuple[WindowColumns, CodedColumns]:
    """The series with a record in the window, by (country, topic key) in byte order (as
    PostgreSQL's "C" collation sorts UTF-8), with their names, labels, and each country's
    summed count in the window before (over every series it had there); as lists and as
    arrays."""
    country = names.series_country[groups.series]
    volumes = np.bincount(country, weights=groups.previous_count, minlength=len(names.countries))
    kept = np.flatnonzero(groups.in_window)
    country, topic = country[kept], names.series_topic[groups.series[kept]]
    country_rank, countries_by_rank = _ranks(names.countries, country)
    topic_rank, topics_by_rank = _ranks(names.topic_keys, topic)
    topics = len(topics_by_rank)
    order = _sorting(country_rank * topics + topic_rank)
    at, country, topic, topic_rank = kept[order], country[order], topic[order], topic_rank[order]
    # Rows go by country: a country's rank is its code. Topic codes go by first appearance.
    first_row = np.full(topics, len(topic_rank), np.int64)
    np.minimum.at(first_row, topic_rank, np.arange(len(topic_rank)))
    appearance = np.argsort(first_row, kind="stable")
    code_of_rank = np.empty(topics, np.int64)
    code_of_rank[appearance] = np.arange(topics)

    country_names = names.country_names()
    topic_names = names.topic_names()
    count = groups.count[at].astype(np.int64)
    weighted = groups.weighted[at]
    first_us = groups.first_us[at]
    window_first_us = groups.window_first_us[at]
    previous = volumes[country].astype(np.int64)
    lists: WindowColumns = (
        country_names[country].tolist(),
        topic_names[topic].tolist(),
        names.labels[groups.window_first_label[at]].tolist(),
        count.tolist(),
        weighted.tolist(),
        first_us.tolist(),
        window_first_us.tolist(),
        previous.tolist(),
    )
    coded = CodedColumns(
        country=country_rank[order],
        countries=country_names[countries_by_rank].tolist(),
        topic=code_of_rank[topic_rank],
        topic_keys=topic_names[topics_by_rank[appearance]].tolist(),
        count=count,
        weighted=weighted,
        first_us=first_us,
        window_first_us=window_first_us,
        previous_volume=previous,
    )
    return lists, coded


def _sorting(keys: IntArray) -> IntArray:
    """The permutation that sorts ``keys``, distinct integers: the inverse of each key's
    place among them (:func:`_dense`, by a table over a window's dense (country, topic)
    cells: three to four times faster than a sort)."""
    _, place = _dense(keys)
    order = np.empty_like(place)
    order[place] = np.arange(len(keys))
    return order


def _ranks(names: list[str], codes: IntArray) -> tuple[IntArray, IntArray]:
    """Each code's rank, by its name (Python orders str by code point: UTF-8's byte order),
    among the codes present; and the codes present, by rank."""
    present, place = _dense(codes)
    by_name = np.asarray(sorted(range(len(present)), key=lambda i: names[present[i]]), np.int64)
    rank = np.empty(len(present), np.int64)
    rank[by_name] = np.arange(len(present))
    return rank[place], present[by_name]


@dataclass(frozen=True)
class ReadWindow:
    """A window's parts, summed as they came, and the names they need: all PostgreSQL had to
    give. What is left to make its columns (:meth:`columns`) is CPU work, which a server runs
    off its event loop for a large window (graph.service.offload), its connection returned."""

    sums: PartSums
    names: Dictionaries

    @property
    def size(self) -> int:
        """How many series the window's parts name."""
        return self.sums.size

    def columns(self) -> tuple[WindowColumns, CodedColumns]:
        """The window's columns, as lists and as arrays (:func:`window_columns`)."""
        return window_columns(self.sums.groups(), self.names)


class RollupReader:
    """Reads windows from the rollup over an asyncpg connection in an open transaction, and
    keeps this process's copy of the dictionaries between them."""

    def __init__(self) -> None:
        self._names: Dictionaries | None = None

    async def window(
        self, driver: Any, version: tuple[int, int], bounds: dict[str, Any]
    ) -> ReadWindow:
        """The window ``bounds`` (:func:`rollup_bounds`) read; ``version``: the dictionaries'
        relfilenodes as this transaction sees them."""
        sums = PartSums()

        async def received(chunk: bytes) -> None:
            sums.feed(chunk)

        await driver.copy_from_query(
            WINDOW_PARTS, *parts_arguments(bounds), output=received, format="binary"
        )
        sums.close()
        series, labels = sums.named()
        return ReadWindow(sums, await self._dictionaries(driver, version, series, labels))

    async def _dictionaries(
        self, driver: Any, version: tuple[int, int], series: IntArray, labels: IntArray
    ) -> Dictionaries:
        """The dictionaries, holding the names of every id in ``series`` and ``labels``."""
        names = self._names
        if names is None or names.version != version:
            names = self._names = Dictionaries(version)
        series = names.missing_series(series)
        if len(series):
            ids, countries, keys = await _names(driver, SERIES_NAMES, SERIES_NAMES_ARRAYS, series)
            names.add_series(ids, countries, keys)
            if len(names.missing_series(series)):
                raise LookupError("a rollup row names a series trends_series does not hold")
        labels = names.missing_labels(labels)
        if len(labels):
            ids, texts = await _names(driver, LABEL_NAMES, LABEL_NAMES_ARRAYS, labels)
            names.add_labels(ids, texts)
            if len(names.missing_labels(labels)):
                raise LookupError("a rollup row names a label trends_labels does not hold")
        return names


async def _names(driver: Any, joined: str, arrays: str, ids: IntArray) -> tuple[list[Any], ...]:
    """The ids from the smallest of ``ids`` to the largest, and their names, column by
    column: ``joined`` sends each column as one text, ``arrays`` as an array."""
    first, last = int(ids.min()), int(ids.max())
    row = await driver.fetchrow(joined, first, last)
    found: list[int] = row[0] or []
    texts = [(text or "").split("\x01") if found else [] for text in row[1:]]
    if any(len(names) != len(found) for names in texts):
        row = await driver.fetchrow(arrays, first, last)
        texts = list(row[1:])
    return (found, *texts)
