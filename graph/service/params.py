"""Query parameters shared by REST and GraphQL: parsed once, refused with the field's name."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from db.repository import RecordFilter
from graph.core.errors import InvalidParameter
from graph.core.records import normalise_country, parse_timestamp, topic_key
from graph.core.windows import DEFAULT_WINDOW, TimeWindow

_EARLIEST_AS_OF = datetime(1, 1, 2, tzinfo=UTC)
MAX_HOTSPOTS = 1_000  # more than there are countries: the cap only refuses nonsense


def parse_time_window(value: str | None, *, field: str = "time_window") -> TimeWindow:
    if value is None:
        return DEFAULT_WINDOW
    try:
        return TimeWindow(value.strip().lower())
    except ValueError:
        choices = ", ".join(w.value for w in TimeWindow)
        raise InvalidParameter(field, f"{value!r} is not one of {choices}") from None


def parse_countries(
    value: str | list[str] | None, *, field: str = "countries"
) -> tuple[str, ...] | None:
    """Sorted, de-duplicated upper-case codes; ``None`` (no filter) when empty or absent."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    codes: set[str] = set()
    for part in parts:
        if not part.strip():
            continue
        try:
            codes.add(normalise_country(part))
        except ValueError as exc:
            raise InvalidParameter(field, str(exc)) from None
    return tuple(sorted(codes)) or None


def parse_threshold(
    value: str | float | None, default: float, *, field: str = "threshold"
) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise InvalidParameter(field, f"{value!r} is not a number") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidParameter(field, f"must be a number in [0, 1], not {value!r}")
    return number


def parse_as_of(value: str | datetime | None, *, field: str = "as_of") -> datetime | None:
    if value is None:
        return None
    try:
        moment = parse_timestamp(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidParameter(field, str(exc)) from None
    # A window reaches back up to a day: earlier than this, its start is not a datetime.
    if moment < _EARLIEST_AS_OF:
        raise InvalidParameter(field, f"must be after {_EARLIEST_AS_OF.isoformat()}")
    return moment


def parse_count(
    value: str | int | None, *, maximum: int, field: str, default: int | None = None
) -> int | None:
    """A positive integer up to ``maximum`` (a page size or a limit)."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidParameter(field, f"{value!r} is not an integer") from None
    if not 1 <= number <= maximum:
        raise InvalidParameter(field, f"must be between 1 and {maximum}, not {number}")
    return number


def parse_record_filter(
    countries: str | list[str] | None,
    topic: str | None,
    since: str | datetime | None,
    until: str | datetime | None,
) -> RecordFilter:
    """Which records a listing holds: the same parameters for REST and GraphQL."""
    return RecordFilter(
        countries=parse_countries(countries),
        topic_key=topic_key(topic) if topic and topic.strip() else None,
        since=parse_as_of(since, field="since"),
        until=parse_as_of(until, field="until"),
    )
