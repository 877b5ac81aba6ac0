"""Query parameters shared by REST and GraphQL: parsed once, refused with the field's name."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from db.repository import RecordFilter
from graph.core.errors import InvalidParameter
from graph.core.records import MAX_LABEL_CHARS, normalise_country, parse_timestamp, topic_key
from graph.core.windows import DEFAULT_WINDOW, TimeWindow

# Instants a query may name: windows, the window before them and default spans (a week)
# reach back or forward from them, and must stay within what a datetime holds.
_EDGE = timedelta(days=8)
_EARLIEST_AS_OF = datetime.min.replace(tzinfo=UTC) + _EDGE
_LATEST_AS_OF = datetime.max.replace(tzinfo=UTC) - _EDGE
MAX_HOTSPOTS = 1_000  # more than there are countries: the cap only refuses nonsense
# Labels are trimmed and whitespace collapsed: longer raw text is refused before normalising.
MAX_TEXT_CHARS = 4 * MAX_LABEL_CHARS
# The largest generation a store can count to (Redis INCR works on signed 64-bit integers).
MAX_GENERATION = 2**63 - 1


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
    if not _EARLIEST_AS_OF <= moment <= _LATEST_AS_OF:
        raise InvalidParameter(
            field,
            f"must be between {_EARLIEST_AS_OF.isoformat()} and {_LATEST_AS_OF.isoformat()}",
        )
    return moment


def parse_min_generation(value: str | int | None, *, field: str = "min_generation") -> int | None:
    """A generation a read must be at least as new as: a non-negative decimal integer (what a
    write answered with), at most MAX_GENERATION."""
    if value is None:
        return None
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise InvalidParameter(field, f"{str(value)[:40]!r} is not a non-negative integer")
    # Measured before converting: Python refuses to convert thousands of digits.
    if len(text) > len(str(MAX_GENERATION)) or int(text) > MAX_GENERATION:
        raise InvalidParameter(field, f"must be at most {MAX_GENERATION}")
    return int(text)


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
        # parse_text refuses NUL (PostgreSQL refuses it in text) and overlong topics.
        topic_key=parse_text(topic, field="topic") if topic and topic.strip() else None,
        since=parse_as_of(since, field="since"),
        until=parse_as_of(until, field="until"),
    )


def parse_text(value: str | None, *, field: str, required: bool = False) -> str | None:
    """A topic or a search, normalised as topic keys are. Empty, NUL bytes or longer than any
    topic key are refused; absent is None unless ``required``."""
    if value is None:
        if required:
            raise InvalidParameter(field, "is required")
        return None
    if "\x00" in value:
        raise InvalidParameter(field, "must not contain NUL bytes")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidParameter(field, f"must be at most {MAX_TEXT_CHARS} characters")
    key = topic_key(value)
    if not key:
        raise InvalidParameter(field, "must not be empty")
    if len(key) > MAX_LABEL_CHARS:
        raise InvalidParameter(field, f"must be at most {MAX_LABEL_CHARS} characters")
    return key


def parse_since_until(
    since: str | datetime | None, until: str | datetime | None
) -> tuple[datetime | None, datetime | None]:
    """Inclusive bounds; ``since`` after ``until`` is refused (naming ``since``)."""
    start, end = parse_as_of(since, field="since"), parse_as_of(until, field="until")
    check_order(start, end)
    return start, end


def check_order(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since > until:
        raise InvalidParameter("since", f"{since.isoformat()} is after until ({until.isoformat()})")
