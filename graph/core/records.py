"""Trend records: the validated :class:`Record`, the :class:`StoredRecord` read back, the
validation rules every door uses (:func:`validate_batch` and friends), and topic identity.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

import orjson
import pycountry
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from graph.core.batches import collector_paused
from graph.core.errors import InvalidRecords, MalformedBody, RecordProblem

MAX_LABEL_CHARS = 200
MAX_SOURCES = 20
MAX_SOURCE_CHARS = 2_048
# Characters no label or source may hold: C0 controls (PostgreSQL refuses NUL in text), DEL
# and lone surrogates (not encodable as UTF-8). A label may hold tabs and line breaks, which
# its topic key collapses; a source (a URL or a name) may not.
_LABEL_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_SOURCE_REFUSED = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class TimestampBounds:
    """The span a record's timestamp must fall in: not before ``earliest``, and not more than
    ``max_future`` ahead of the clock when the record arrives."""

    earliest: datetime
    max_future: timedelta

    def check(self, moment: datetime, now: datetime) -> None:
        """ValueError naming the span unless ``moment`` falls in it."""
        latest = now + self.max_future
        if not self.earliest <= moment <= latest:
            raise ValueError(
                f"{moment.isoformat()} is out of range: records must be dated from"
                f" {self.earliest.isoformat()} to {latest.isoformat()}"
                f" ({self.max_future.total_seconds():g} s ahead of the server's clock)"
            )


DEFAULT_TIMESTAMP_BOUNDS = TimestampBounds(datetime(1970, 1, 1, tzinfo=UTC), timedelta(days=1))

# Field descriptions (GraphQL and OpenAPI read them from here).
_TIMESTAMP = "When it was trending: ISO 8601 with a UTC offset (naive timestamps are refused)."
_COUNT = "How much it trended (an integer >= 1)."
_CONFIDENCE = "How sure the classifier is, in [0, 1]."
_COUNTRY = "ISO 3166-1 alpha-2 code (any case on input; stored upper case)."
_LABEL = "The topic, 1 to 200 characters after trimming."
_SOURCES = "At most 20 URLs or source names, each at most 2,048 characters; optional."
_SOURCES_STORED = "The record's URLs or source names; an empty list when it has none."


class Record(NamedTuple):
    """A validated record ready to store (timestamp aware UTC, country upper case).

    A tuple, in the archive's column order (the repository's staging columns): a batch holds
    tens of thousands of them, and a tuple is built several times faster than a frozen
    dataclass, and the collector stops tracking one that holds no list (no sources)."""

    timestamp: datetime
    country: str
    topic_label: str
    topic_key: str
    # The field hides tuple.count (a method nothing here calls on a record).
    count: int  # type: ignore[assignment]
    confidence: float
    sources: list[str] | None


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as stored, with its id. Field order is the REST wire order. ``sources`` is
    never None here: a record stored without sources has an empty list."""

    id: int = dataclass_field(metadata={"description": "The record's id in the archive."})
    timestamp: datetime = dataclass_field(metadata={"description": _TIMESTAMP})
    country: str = dataclass_field(metadata={"description": _COUNTRY})
    topic_label: str = dataclass_field(metadata={"description": _LABEL})
    count: int = dataclass_field(metadata={"description": _COUNT})
    confidence: float = dataclass_field(metadata={"description": _CONFIDENCE})
    # Typed as the database reads it; None becomes [] (the APIs declare a non-null list).
    sources: list[str] | None = dataclass_field(metadata={"description": _SOURCES_STORED})

    def __post_init__(self) -> None:
        # One meaning for "no sources" on every API: an empty list, never null.
        if self.sources is None:
            object.__setattr__(self, "sources", [])


@dataclass(frozen=True, slots=True)
class Page:
    """One page of stored records, newest first, whether more follow, and how many match."""

    records: list[StoredRecord]
    has_next: bool
    total_count: int


def topic_key(label: str) -> str:
    """A topic's identity: trimmed, inner whitespace collapsed to one space, casefolded."""
    return " ".join(label.split()).casefold()


@functools.cache
def assigned_country_codes() -> frozenset[str]:
    """Every assigned ISO 3166-1 alpha-2 code."""
    return frozenset(country.alpha_2 for country in pycountry.countries)


def normalise_country(value: str) -> str:
    """An assigned alpha-2 code in upper case, or ValueError naming the bad value."""
    code = value.strip().upper()
    if code not in assigned_country_codes():
        raise ValueError(f"{value!r} is not an assigned ISO 3166-1 alpha-2 country code")
    return code


def parse_timestamp(value: object) -> datetime:
    """An ISO 8601 timestamp with a UTC offset, as an aware UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        # fromisoformat stops reading at a NUL byte: "...Z\x00junk" would pass.
        refuse_control_characters(value)
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-01-31T12:00:00Z)"
            ) from None
    else:
        raise ValueError("must be an ISO 8601 string such as 2026-01-31T12:00:00Z")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("needs a UTC offset ('Z' or '+hh:mm'); naive timestamps are refused")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise ValueError(f"{value!s} is outside years 1 to 9999 once converted to UTC") from None


def refuse_control_characters(value: str, *, line_breaks: bool = False) -> str:
    """``value`` unchanged, or ValueError naming its first control character or lone surrogate
    (``line_breaks``: tabs, line feeds and carriage returns are let through)."""
    found = (_LABEL_REFUSED if line_breaks else _SOURCE_REFUSED).search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters or lone surrogates"
            f" (U+{ord(found.group()):04X} at position {found.start()})"
        )
    return value


def _country(value: object) -> object:
    return normalise_country(value) if isinstance(value, str) else value


class TrendIn(BaseModel):
    """One incoming record, checked against every rule."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    timestamp: Annotated[datetime, BeforeValidator(parse_timestamp), Field(description=_TIMESTAMP)]
    country: Annotated[str, BeforeValidator(_country), Field(strict=True, description=_COUNTRY)]
    topic_label: Annotated[str, Field(strict=True, description=_LABEL)]
    count: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1, description=_COUNT)]
    confidence: Annotated[
        float,
        Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False, description=_CONFIDENCE),
    ]
    sources: (
        Annotated[
            list[Annotated[str, StringConstraints(max_length=MAX_SOURCE_CHARS, strict=True)]],
            Field(max_length=MAX_SOURCES),
        ]
        | None
    ) = Field(default=None, description=_SOURCES)

    @field_validator("timestamp")
    @classmethod
    def _within_bounds(cls, value: datetime, info: ValidationInfo) -> datetime:
        bounds, now = info.context if info.context else (DEFAULT_TIMESTAMP_BOUNDS, _now())
        bounds.check(value, now)
        return value

    @field_validator("topic_label")
    @classmethod
    def _trimmed_label(cls, value: str) -> str:
        label = value.strip()
        if not 1 <= len(label) <= MAX_LABEL_CHARS:
            raise ValueError(
                f"must be 1 to {MAX_LABEL_CHARS} characters after trimming, not {len(label)}"
            )
        return refuse_control_characters(label, line_breaks=True)

    @field_validator("sources")
    @classmethod
    def _printable_sources(cls, value: list[str] | None) -> list[str] | None:
        for source in value or ():
            refuse_control_characters(source)
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _finite(cls, value: object) -> object:
        # A bool is an int to Python; a confidence of `true` is a client bug, not 1.0.
        if isinstance(value, bool):
            raise ValueError("must be a number in [0, 1]")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number in [0, 1] (NaN and infinity are refused)")
        return value

    def row(self) -> Record:
        """The record as stored."""
        return Record(
            timestamp=self.timestamp,
            country=self.country,
            topic_label=self.topic_label,
            topic_key=topic_key(self.topic_label),
            count=self.count,
            confidence=float(self.confidence),
            sources=list(self.sources) if self.sources is not None else None,
        )


_BATCH = TypeAdapter(list[TrendIn])


def _now() -> datetime:
    return datetime.now(UTC)


def _context(bounds: TimestampBounds) -> tuple[TimestampBounds, datetime]:
    """What the validators read: the bounds, and one clock reading for the whole batch."""
    return bounds, _now()


def _problems(exc: ValidationError, positions: Sequence[int] | None) -> list[RecordProblem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        if not loc or not isinstance(loc[0], int):
            raise MalformedBody("the body must be a JSON array of record objects") from None
        index = positions[loc[0]] if positions is not None else loc[0]
        field = ".".join(str(part) for part in loc[1:]) or "record"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(RecordProblem(index, field, message))
    return problems


@functools.cache
def _country_spellings() -> dict[str, str]:
    """Every assigned code in each of its four casings, mapped to its upper case form."""
    return {
        spelling: code
        for code in assigned_country_codes()
        for spelling in (code, code.lower(), code.capitalize(), code[0].lower() + code[1])
    }


def _plain_rows(items: object, bounds: TimestampBounds, now: datetime) -> list[Record] | None:
    """The rows of a batch every record of which plainly passes every rule, or None.

    The quick way through a good batch: plain checks of exact types, the same rules and the
    same normalising as :class:`TrendIn` and :meth:`TrendIn.row`, and no model per record.
    Whatever it cannot vouch for (a wrong type, a value out of range, a record that is not a
    dict) makes it give up on the whole batch; the full validator then decides and words every
    refusal, so answers stay exactly its own.
    """
    if type(items) is not list:
        return None
    earliest, latest = bounds.earliest, now + bounds.max_future
    spellings = _country_spellings()
    codes = assigned_country_codes()
    refused_in_label = _LABEL_REFUSED.search
    refused_in_source = _SOURCE_REFUSED.search
    parse = datetime.fromisoformat
    new = tuple.__new__
    # A batch names the same topics over and over (one per country and hour): each distinct
    # label is checked, trimmed and keyed once, and its rows share the two strings.
    labels: dict[str, tuple[str, str]] = {}
    rows: list[Record] = []
    append = rows.append
    for item in items:
        if type(item) is not dict:
            return None
        try:
            moment: Any = item["timestamp"]
            country = item["country"]
            label = item["topic_label"]
            count = item["count"]
            confidence = item["confidence"]
        except KeyError:
            return None
        if type(moment) is str:
            # A printable string holds no control character (fromisoformat would stop reading
            # at a NUL) and no lone surrogate; str.isprintable is a fraction of a regex search.
            if not moment.isprintable():
                return None
            try:
                moment = parse(moment.strip())
            except ValueError:
                return None
        elif type(moment) is not datetime:
            return None
        if moment.tzinfo is not UTC:
            if moment.tzinfo is None or moment.utcoffset() is None:
                return None
            try:
                moment = moment.astimezone(UTC)
            except OverflowError:
                return None
        if not earliest <= moment <= latest:
            return None
        if type(country) is not str:
            return None
        code = spellings.get(country)
        if code is None:
            code = country.strip().upper()
            if code not in codes:
                return None
        if type(label) is not str:
            return None
        known = labels.get(label)
        if known is None:
            trimmed = label.strip()
            if not 1 <= len(trimmed) <= MAX_LABEL_CHARS:
                return None
            # Tabs and line breaks are not printable but allowed: the regex decides then.
            if not trimmed.isprintable() and refused_in_label(trimmed) is not None:
                return None
            # topic_key(trimmed), inlined
            known = labels[label] = (trimmed, " ".join(trimmed.split()).casefold())
        if type(count) is not int or not 1 <= count <= 2**31 - 1:
            return None
        if type(confidence) is float:
            if not 0.0 <= confidence <= 1.0:  # NaN fails this too
                return None
        elif type(confidence) is int and 0 <= confidence <= 1:
            confidence = float(confidence)
        else:
            return None
        sources = item.get("sources")
        if sources is not None:
            if type(sources) is not list or len(sources) > MAX_SOURCES:
                return None
            for source in sources:
                if (
                    type(source) is not str
                    or len(source) > MAX_SOURCE_CHARS
                    or (not source.isprintable() and refused_in_source(source) is not None)
                ):
                    return None
            sources = list(sources)
        # Record(...) without the keyword handling: a tuple of the fields in order.
        append(new(Record, (moment, code, known[0], known[1], count, confidence, sources)))
    return rows


def validate_batch(
    records: Any,
    *,
    positions: Sequence[int] | None = None,
    where: str = "record",
    bounds: TimestampBounds = DEFAULT_TIMESTAMP_BOUNDS,
) -> list[Record]:
    """Validate a whole batch (a list of mappings) or raise InvalidRecords naming every problem.

    ``positions`` maps batch indexes to what the caller calls them (line numbers for a file);
    ``bounds`` is the span timestamps must fall in (the settings' ``record_bounds()``).
    """
    context = _context(bounds)
    # Tens of thousands of objects that live until stored: see collector_paused.
    with collector_paused():
        rows = _plain_rows(records, *context)
    if rows is not None:
        return rows
    try:
        return [item.row() for item in _BATCH.validate_python(records, context=context)]
    except ValidationError as exc:
        raise InvalidRecords(_problems(exc, positions), where=where) from None


def validate_json_batch(
    body: bytes, *, bounds: TimestampBounds = DEFAULT_TIMESTAMP_BOUNDS
) -> list[Record]:
    """Parse and validate a JSON array of records in one pass."""
    context = _context(bounds)
    with collector_paused():
        try:
            rows = _plain_rows(orjson.loads(body), *context)
        except orjson.JSONDecodeError:  # NaN, 1e999 and such: the full validator words it
            rows = None
    if rows is not None:
        return rows
    try:
        with collector_paused():
            items = _BATCH.validate_json(body, context=context)
            return [item.row() for item in items]
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise MalformedBody("malformed JSON: send a JSON array of records") from None
        raise InvalidRecords(_problems(exc, None)) from None


def validate_each(
    records: Sequence[Any],
    *,
    positions: Sequence[int] | None = None,
    where: str = "record",
    bounds: TimestampBounds = DEFAULT_TIMESTAMP_BOUNDS,
) -> tuple[list[Record], list[RecordProblem]]:
    """Validate record by record: the valid ones as rows, and the problems of the rest.

    For input where one bad record must not cost the others (a feed's items, a file read with
    --skip-invalid); a request body is still validated whole with :func:`validate_batch`.
    """
    try:
        return validate_batch(records, positions=positions, where=where, bounds=bounds), []
    except InvalidRecords as exc:
        problems = exc.problems
    named = positions if positions is not None else range(len(records))
    bad = {p.index for p in problems}
    keep = [i for i, name in enumerate(named) if name not in bad]
    rows = validate_batch(
        [records[i] for i in keep], positions=[named[i] for i in keep], where=where, bounds=bounds
    )
    return rows, problems
