"""What a client may ask: flows, hotspots and trend pages, each built once from its raw
parameters for REST and GraphQL alike (refusals name the parameter as the client spelled it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from db.repository import RecordFilter
from graph.core.windows import TimeWindow
from graph.service.params import (
    MAX_HOTSPOTS,
    parse_as_of,
    parse_count,
    parse_countries,
    parse_record_filter,
    parse_threshold,
    parse_time_window,
)
from graph.settings import Settings

__all__ = ["FlowQuery", "HotspotQuery", "TrendQuery"]

Countries = str | list[str] | None


def _spelled(name: str, camel_case: bool) -> str:
    """A parameter's name as the client wrote it: GraphQL's arguments are camelCase."""
    if not camel_case:
        return name
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _window_filter(
    time_window: str | None, countries: Countries, as_of: str | datetime | None, camel_case: bool
) -> tuple[TimeWindow, tuple[str, ...] | None, datetime | None]:
    """The window, country filter and instant that flows and hotspots share."""
    return (
        parse_time_window(time_window, field=_spelled("time_window", camel_case)),
        parse_countries(countries),
        parse_as_of(as_of, field=_spelled("as_of", camel_case)),
    )


@dataclass(frozen=True, slots=True)
class FlowQuery:
    window: TimeWindow
    countries: tuple[str, ...] | None
    threshold: float
    as_of: datetime | None
    limit: int | None

    @classmethod
    def parse(
        cls,
        *,
        time_window: str | None,
        countries: Countries,
        threshold: str | float | None,
        as_of: str | datetime | None,
        limit: str | int | None,
        settings: Settings,
        camel_case: bool = False,
    ) -> FlowQuery:
        window, wanted, instant = _window_filter(time_window, countries, as_of, camel_case)
        return cls(
            window=window,
            countries=wanted,
            threshold=parse_threshold(threshold, settings.flow_threshold),
            as_of=instant,
            limit=parse_count(limit, maximum=settings.max_flows, field="limit"),
        )


@dataclass(frozen=True, slots=True)
class HotspotQuery:
    window: TimeWindow
    countries: tuple[str, ...] | None
    as_of: datetime | None
    limit: int | None

    @classmethod
    def parse(
        cls,
        *,
        time_window: str | None,
        countries: Countries,
        as_of: str | datetime | None,
        limit: str | int | None,
        camel_case: bool = False,
    ) -> HotspotQuery:
        window, wanted, instant = _window_filter(time_window, countries, as_of, camel_case)
        limit_ = parse_count(limit, maximum=MAX_HOTSPOTS, field="limit")
        return cls(window=window, countries=wanted, as_of=instant, limit=limit_)


@dataclass(frozen=True, slots=True)
class TrendQuery:
    where: RecordFilter
    first: int
    after: str | None  # a cursor, decoded (and refused if bad) when the page is read

    @classmethod
    def parse(
        cls,
        *,
        countries: Countries,
        topic: str | None,
        since: str | datetime | None,
        until: str | datetime | None,
        first: str | int | None,
        after: str | None,
        settings: Settings,
    ) -> TrendQuery:
        where = parse_record_filter(countries, topic, since, until)
        size = parse_count(
            first, maximum=settings.max_page_size, field="first", default=settings.default_page_size
        )
        assert size is not None  # a default was given
        # Clients send an empty cursor for page one: it means no cursor.
        return cls(where, size, after or None)
