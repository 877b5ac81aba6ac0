"""Query parameters: parsed the same for REST and GraphQL, refused with the field's name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graph.core.errors import InvalidParameter
from graph.core.windows import Span, TimeWindow
from graph.service.params import (
    parse_as_of,
    parse_count,
    parse_countries,
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
    assert span.recent_after == as_of - timedelta(hours=6)


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


@pytest.mark.parametrize("text", ["0001-01-01T01:01:00Z", "0001-01-01T23:59:59+00:00"])
def test_an_as_of_whose_window_would_start_before_year_one_is_refused(text: str) -> None:
    with pytest.raises(InvalidParameter, match="must be after 0001-01-02"):
        parse_as_of(text)
    assert parse_as_of("0001-01-02T00:00:00Z") == datetime(1, 1, 2, tzinfo=UTC)
