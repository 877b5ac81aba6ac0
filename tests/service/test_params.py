"""Query parameters: parsed the same for REST and GraphQL, refused with the field's name."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from graph.core.errors import InvalidParameter
from graph.core.windows import Span, TimeWindow
from graph.service.cursor import decode_cursor, encode_cursor
from graph.service.params import (
    parse_as_of,
    parse_count,
    parse_countries,
    parse_record_filter,
    parse_threshold,
    parse_time_window,
)


def test_windows() -> None:
    assert parse_time_window(None) is TimeWindow.H24
    assert parse_time_window(" 6H ") is TimeWindow.H6
    assert [w.length for w in TimeWindow] == [timedelta(hours=h) for h in (1, 6, 12, 24)]
    with pytest.raises(InvalidParameter) as caught:
        parse_time_window("48h", field="timeWindow")
    assert caught.value.field == "timeWindow"
    assert "1h, 6h, 12h, 24h" in caught.value.detail


def test_span_bounds() -> None:
    as_of = datetime(2026, 1, 2, tzinfo=UTC)
    span = Span(TimeWindow.H12, as_of)
    assert span.start == as_of - timedelta(hours=12)
    assert span.previous_start == as_of - timedelta(hours=24)


def test_countries_are_normalised() -> None:
    assert parse_countries("us, CO ,br,US") == ("BR", "CO", "US")
    assert parse_countries(["jp", "JP"]) == ("JP",)
    assert parse_countries(None) is None
    assert parse_countries(" , ") is None
    with pytest.raises(InvalidParameter, match="'XX'"):
        parse_countries("US,XX")


def test_threshold() -> None:
    assert parse_threshold(None, 0.5) == 0.5
    assert parse_threshold("0", 0.5) == 0.0
    assert parse_threshold(1, 0.5) == 1.0
    for bad in ("-0.1", "1.01", "inf", "nan", "x"):
        with pytest.raises(InvalidParameter):
            parse_threshold(bad, 0.5)


def test_as_of() -> None:
    assert parse_as_of(None) is None
    assert parse_as_of("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidParameter, match="offset"):
        parse_as_of("2026-01-01T01:00:00")


def test_counts() -> None:
    assert parse_count(None, maximum=10, field="first", default=5) == 5
    assert parse_count("10", maximum=10, field="first") == 10
    for bad in ("0", "11", "ten", "1.5"):
        with pytest.raises(InvalidParameter) as caught:
            parse_count(bad, maximum=10, field="first")
        assert caught.value.field == "first"


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T01:01:00Z",
        "0001-01-08T23:59:59.999999+00:00",  # the window before a day's window starts in year 0
        "9999-12-24T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_an_instant_whose_spans_would_leave_the_calendar_is_refused(text: str) -> None:
    with pytest.raises(InvalidParameter, match="must be between 0001-01-09T00:00:00"):
        parse_as_of(text, field="since")
    assert parse_as_of("0001-01-09T00:00:00Z") == datetime(1, 1, 9, tzinfo=UTC)
    assert parse_as_of("9999-12-23T23:59:59Z") == datetime(9999, 12, 23, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0001-01-01T00:00:00+14:00", "outside years 1 to 9999"),
        ("9999-12-31T23:59:59-12:00", "outside years 1 to 9999"),
        ("2026-01-01T00:00:00Z\x00", "control characters"),
        ("2026-01-01T00:00:00\x00Z", "control characters"),
    ],
)
def test_instants_that_overflow_or_hide_a_nul_are_refused(text: str, words: str) -> None:
    with pytest.raises(InvalidParameter, match=words) as caught:
        parse_as_of(text, field="until")
    assert caught.value.field == "until"


def test_a_topic_filter_refuses_nul() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_record_filter(None, "world\x00cup", None, None)
    assert caught.value.field == "topic"
    assert parse_record_filter(None, " World  Cup ", None, None).topic_key == "world cup"
    assert parse_record_filter(None, "  ", None, None).topic_key is None


def _cursor(raw: object) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_cursors_round_trip() -> None:
    moment = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert decode_cursor(encode_cursor(moment, 2**63 - 1)) == (moment, 2**63 - 1)


@pytest.mark.parametrize(
    "forged",
    [
        _cursor(["2026-11-20T00:00:00+00:00", 2**63]),  # past BIGINT
        _cursor(["2026-11-20T00:00:00+00:00", -1]),
        _cursor(["2026-11-20T00:00:00+00:00", True]),
        _cursor(["2026-11-20T00:00:00+00:00", 1.0]),
        _cursor(["2026-11-20T00:00:00+00:00\x00", 1]),
        _cursor(["0001-01-01T00:00:00+14:00", 1]),
        _cursor(["2026-11-20T00:00:00", 1]),
        _cursor([1, 1]),
        _cursor("[" * 5_000),  # deeper than the JSON parser recurses
        _cursor({"a": 1, "b": 2}),
        "!!!",
        "\x00",
    ],
)
def test_forged_cursors_are_refused_naming_the_field(forged: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        decode_cursor(forged, field="after")
    assert caught.value.field == "after"
