"""Exploring: the archive's span, a window's topics, one topic's spread and one country's hotspot
history, for REST and GraphQL.

Each question is parsed once (:class:`TopicsQuery`, :class:`SpreadQuery`,
:class:`HistoryQuery`, refusals naming the
parameter as the client spelled it) and answered through the response cache like flows: the
payload is the JSON of the core answer (graph.core.exploring), which REST splices into its
envelope and GraphQL reads back into the core objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from db.exploring import ExploringRepository
from graph.cache.entry import Entry
from graph.cache.keys import digest, history_key, span_key, spread_key, topics_key
from graph.cache.response_cache import ResponseCache
from graph.core.errors import InvalidParameter, NotFound
from graph.core.exploring import (
    DataSpan,
    TopicCell,
    TopicCountry,
    TopicSpread,
    TopicSummary,
    summarise_topics,
    topic_spread,
)
from graph.core.history import HotspotPoint, history_instants, hotspot_history
from graph.core.records import normalise_country
from graph.core.windows import Span, TimeWindow
from graph.service.offload import maths
from graph.service.params import (
    check_order,
    parse_as_of,
    parse_count,
    parse_countries,
    parse_since_until,
    parse_text,
    parse_time_window,
)
from graph.service.storage import storage

__all__ = ["Explored", "Explorer", "HistoryQuery", "SpreadQuery", "TopicsQuery"]

DEFAULT_TOPICS = 20
MAX_TOPICS = 1_000
SPREAD_DEFAULT = timedelta(days=7)
MAX_HISTORY_POINTS = 500

Clock = Callable[[], datetime]
PartialWarnings = Callable[[Collection[str] | None], Awaitable[tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class TopicsQuery:
    window: TimeWindow
    as_of: datetime | None
    countries: tuple[str, ...] | None
    search: str | None  # normalised as topic keys are
    limit: int

    @classmethod
    def parse(
        cls,
        *,
        time_window: str | None,
        as_of: str | datetime | None,
        countries: str | list[str] | None,
        search: str | None,
        limit: str | int | None,
        camel_case: bool = False,
    ) -> TopicsQuery:
        limit_ = parse_count(limit, maximum=MAX_TOPICS, field="limit", default=DEFAULT_TOPICS)
        assert limit_ is not None  # a default was given
        return cls(
            window=parse_time_window(
                time_window, field="timeWindow" if camel_case else "time_window"
            ),
            as_of=parse_as_of(as_of, field="asOf" if camel_case else "as_of"),
            countries=parse_countries(countries),
            search=parse_text(search, field="search"),
            limit=limit_,
        )


@dataclass(frozen=True, slots=True)
class SpreadQuery:
    key: str
    since: datetime | None
    until: datetime | None

    @classmethod
    def parse(
        cls, *, topic: str | None, since: str | datetime | None, until: str | datetime | None
    ) -> SpreadQuery:
        key = parse_text(topic, field="topic", required=True)
        assert key is not None  # required
        return cls(key, *parse_since_until(since, until))

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """``since`` and ``until``, defaults filled in (``until`` now, ``since`` 7 days before)."""
        return _bounds(self.since, self.until, now)


def _bounds(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """A span's bounds, defaults filled in; ``since`` after ``until`` is refused."""
    end = until if until is not None else now
    check_order(since, end)
    return (since if since is not None else _days_before(end), end)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    country: str
    window: TimeWindow
    since: datetime | None
    until: datetime | None
    step: TimeWindow | None  # None: the window

    @classmethod
    def parse(
        cls,
        *,
        country: str | None,
        time_window: str | None,
        since: str | datetime | None,
        until: str | datetime | None,
        step: str | None,
        camel_case: bool = False,
    ) -> HistoryQuery:
        country_ = parse_country(country)
        window = parse_time_window(time_window, field="timeWindow" if camel_case else "time_window")
        step_ = None if step is None else parse_time_window(step, field="step")
        query = cls(country_, window, *parse_since_until(since, until), step_)
        if query.until is not None:
            query.points(query.until)  # too many points is refused before any lookup
        return query

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """``since`` and ``until``, defaults filled in (``until`` now, ``since`` 7 days before)."""
        return _bounds(self.since, self.until, now)

    @property
    def interval(self) -> TimeWindow:
        """The step between two points: the window unless one was asked."""
        return self.window if self.step is None else self.step

    def points(self, now: datetime) -> int:
        """How many instants the history has (at most MAX_HISTORY_POINTS, else refused, naming
        ``step`` when the client chose it, else ``since``: the default span is 8 to 169)."""
        since, until = self.bounds(now)
        points = history_instants(since, until, self.interval.length)
        if points > MAX_HISTORY_POINTS:
            raise InvalidParameter(
                "since" if self.step is None else "step",
                f"{self.interval.value} steps from {since.isoformat()} to {until.isoformat()} make"
                f" {points} points, more than {MAX_HISTORY_POINTS}: take a longer step or a"
                " shorter span",
            )
        return points


def parse_country(value: str | None, *, field: str = "country") -> str:
    """One assigned country code, required."""
    if value is None or not value.strip():
        raise InvalidParameter(field, "is required")
    try:
        return normalise_country(value)
    except ValueError as exc:
        raise InvalidParameter(field, str(exc)) from None


def _no_spread(query: SpreadQuery, now: datetime) -> str:
    """Why a topic's spread is a 404: the span searched, and when it was the default, how to
    search another."""
    since, until = query.bounds(now)
    searched = f"from {since.isoformat()} to {until.isoformat()}"
    if query.since is None and query.until is None:
        searched = f"in the last {SPREAD_DEFAULT.days} days ({searched})"
    found = f"topic: no record of {query.key!r} {searched}"
    if query.since is None:
        found += (
            "; give since (and until) to search further back: GET /v1/span has the archive's span"
        )
    return found


def _days_before(until: datetime, span: timedelta = SPREAD_DEFAULT) -> datetime:
    try:
        return until - span
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Explored:
    """An exploring answer (computed now or read from the cache): the JSON and how it was made.

    ``as_of`` is the instant it describes: the window's end, the spread's ``until``, or when
    the span was read."""

    payload: bytes
    count: int
    as_of: datetime
    computed_at: datetime
    cache_hit: bool
    warnings: tuple[str, ...] = ()
    # The cache generation it was computed under, or another label (its ETag derives from it).
    generation: str = ""

    def item(self) -> Any:
        return orjson.loads(self.payload)


def _cells(rows: list[Any]) -> list[TopicCell]:
    return [TopicCell(*row) for row in rows]


class Explorer:
    """Answers the exploring questions from the archive, through the response cache."""

    def __init__(
        self,
        repository: ExploringRepository,
        *,
        cache: ResponseCache,
        clock: Clock,
        partial_warnings: PartialWarnings | None = None,
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.clock = clock
        self._partial_warnings = partial_warnings

    async def data_span(self, *, min_generation: int | None = None) -> Explored:
        async def compute(token: str) -> Entry:
            now = self.clock()
            async with storage():
                first, last, records, countries = await self.repository.span()
            payload = orjson.dumps(DataSpan(first, last, records, countries))
            return Entry(token, now, self.clock(), payload, count=records)

        return await self._answer(span_key(), "now", True, compute, min_generation=min_generation)

    async def topics(self, query: TopicsQuery, *, min_generation: int | None = None) -> Explored:
        async def compute(token: str) -> Entry:
            span = Span(query.window, query.as_of or self.clock())
            async with storage():
                rows = await self.repository.window_cells(span.start, span.as_of, query.search)
            items = summarise_topics(_cells(rows), query.countries, query.limit)
            return Entry(token, span.as_of, self.clock(), orjson.dumps(items), count=len(items))

        search = "" if query.search is None else digest(query.search)
        field = f"{_instant(query.as_of)}|{search}|{query.limit}"
        key = topics_key(query.window.value, query.countries)
        explored = await self._answer(
            key,
            field,
            query.as_of is None,
            compute,
            self.cache.bounds.keeps(query.as_of),
            min_generation=min_generation,
        )
        return await self._with_warnings(explored, query.countries)

    async def topic_spread(
        self, query: SpreadQuery, *, min_generation: int | None = None
    ) -> Explored:
        """The topic's spread; NotFound when it has no record between since and until."""
        query.bounds(self.clock())  # a since after now is refused before any lookup

        async def compute(token: str) -> Entry:
            since, until = query.bounds(self.clock())
            async with storage():
                rows = await self.repository.topic_cells(query.key, since, until)
            spread = topic_spread(query.key, _cells(rows))
            count = 0 if spread is None else len(spread.countries)
            return Entry(token, until, self.clock(), orjson.dumps(spread), count=count)

        field = f"{_instant(query.since)}|{_instant(query.until)}"
        keep = self.cache.bounds.keeps(query.since, query.until)
        explored = await self._answer(
            spread_key(query.key),
            field,
            query.until is None,
            compute,
            keep,
            min_generation=min_generation,
        )
        if explored.count == 0:  # cached too: asking again costs no query
            raise NotFound(_no_spread(query, self.clock()))
        return explored

    async def hotspot_history(
        self, query: HistoryQuery, *, min_generation: int | None = None
    ) -> Explored:
        """The country's hotspot figures at since, since + step, ... up to until."""
        query.points(self.clock())  # a since after now, or too many points, is refused first

        async def compute(token: str) -> Entry:
            since, until = query.bounds(self.clock())
            points = query.points(until)
            window = query.window.length
            async with storage():
                rows = await self.repository.country_records(
                    query.country, _days_before(since, 2 * window), until
                )
            items = await maths(
                len(rows), hotspot_history, rows, window, since, query.interval.length, points
            )
            return Entry(token, until, self.clock(), orjson.dumps(items), count=len(items))

        field = f"{_instant(query.since)}|{_instant(query.until)}|{query.interval.value}"
        key = history_key(query.country, query.window.value)
        keep = self.cache.bounds.keeps(query.since, query.until)
        explored = await self._answer(
            key, field, query.until is None, compute, keep, min_generation=min_generation
        )
        return await self._with_warnings(explored, (query.country,))

    async def _answer(
        self,
        key: str,
        field: str,
        sliding: bool,
        compute: Callable[[str], Awaitable[Entry]],
        keep: bool = True,
        *,
        min_generation: int | None = None,
    ) -> Explored:
        """Through the cache; ``keep`` false for explicit instants the cache does not keep;
        ``min_generation`` as in graph.cache.response_cache."""
        entry, hit = await self.cache.get_or_compute(
            key, field, sliding=sliding, compute=compute, keep=keep, min_generation=min_generation
        )
        return Explored(
            entry.payload,
            entry.count,
            entry.as_of,
            entry.computed_at,
            hit,
            entry.warnings,
            entry.generation,
        )

    async def _with_warnings(
        self, explored: Explored, countries: Collection[str] | None
    ) -> Explored:
        if self._partial_warnings is None:
            return explored
        extra = await self._partial_warnings(countries)
        if not extra:
            return explored
        return Explored(
            explored.payload,
            explored.count,
            explored.as_of,
            explored.computed_at,
            explored.cache_hit,
            explored.warnings + extra,
            explored.generation,
        )


def _instant(moment: datetime | None) -> str:
    return "now" if moment is None else moment.isoformat()


def data_span_of(item: dict[str, Any]) -> DataSpan:
    """A core data span from its JSON."""
    first, last = (
        None if item[k] is None else datetime.fromisoformat(item[k]) for k in ("first", "last")
    )
    return DataSpan(first, last, item["records"], item["countries"])


def topic_summary_of(item: dict[str, Any]) -> TopicSummary:
    """A core topic summary from its JSON."""
    return TopicSummary(
        **{
            **item,
            "countries": tuple(item["countries"]),
            "first_seen": datetime.fromisoformat(item["first_seen"]),
        }
    )


def hotspot_point_of(item: dict[str, Any]) -> HotspotPoint:
    """A core history point from its JSON."""
    return HotspotPoint(**{**item, "as_of": datetime.fromisoformat(item["as_of"])})


def topic_spread_of(item: dict[str, Any]) -> TopicSpread:
    """A core topic spread from its JSON."""
    countries = tuple(
        TopicCountry(
            **{
                **c,
                "first_seen": datetime.fromisoformat(c["first_seen"]),
                "last_seen": datetime.fromisoformat(c["last_seen"]),
            }
        )
        for c in item["countries"]
    )
    return TopicSpread(item["key"], item["label"], countries)
