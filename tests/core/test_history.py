"""The hotspot history (graph.core.history): a hand-computed case, and every point equal to
the hotspot definition (graph.core.hotspots over the naive aggregates) at its instant."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.core.history import CountryRecord, HotspotPoint, history_instants, hotspot_history
from graph.core.hotspots import compute_hotspots
from graph.core.records import Record
from tests.support.reference import naive_aggregates

T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(hours: float, key: str, count: int = 1, confidence: float = 1.0) -> CountryRecord:
    return (T0 + timedelta(hours=hours), key, count, confidence)


def expected_point(
    records: list[CountryRecord], window: timedelta, as_of: datetime
) -> HotspotPoint:
    """The hotspot definition at one instant, through compute_hotspots (zeros without data)."""
    rows = [Record(t, "US", key, key, n, c, None) for t, key, n, c in records]
    aggregates = naive_aggregates(rows, as_of - 2 * window, as_of - window, as_of)
    hotspots = compute_hotspots(aggregates)
    if not hotspots:
        return HotspotPoint(as_of, 0.0, 0, 0.0, 0.0, 0)
    [h] = hotspots
    return HotspotPoint(as_of, h.score, h.volume, h.velocity, h.avg_confidence, h.topic_count)


def assert_same(got: HotspotPoint, want: HotspotPoint) -> None:
    assert (got.as_of, got.volume, got.topic_count) == (want.as_of, want.volume, want.topic_count)
    for name in ("score", "velocity", "avg_confidence"):
        assert math.isclose(getattr(got, name), getattr(want, name), rel_tol=1e-9, abs_tol=1e-12)


def test_a_hand_computed_history() -> None:
    """1h window, steps of 1h from T0: records at 0.5h (a, 10 @ 0.5), 1h (b, 30 @ 1.0), and
    2.5h (a, 20 @ 0.25)."""
    records = [at(2.5, "a", 20, 0.25), at(0.5, "a", 10, 0.5), at(1, "b", 30)]
    points = hotspot_history(records, HOUR, T0, HOUR, 5)
    assert [p.as_of for p in points] == [T0 + k * HOUR for k in range(5)]
    assert [p.volume for p in points] == [0, 40, 0, 20, 0]
    assert [p.topic_count for p in points] == [0, 2, 0, 1, 0]
    assert [p.velocity for p in points] == [0.0, 2.0, 0.0, 2.0, 0.0]
    assert points[1].avg_confidence == pytest.approx((10 * 0.5 + 30) / 40)
    assert points[1].score == pytest.approx(40 * 2.0 * 35 / 40)
    assert points[3].score == pytest.approx(20 * 2.0 * 0.25)


def test_velocity_compares_with_the_window_before() -> None:
    records = [at(0.5, "a", 30), at(1.5, "a", 10)]
    [point] = hotspot_history(records, HOUR, T0 + 2 * HOUR, HOUR, 1)
    assert (point.volume, point.velocity) == (10, 2 * 10 / (10 + 30))


def test_no_records_and_no_points() -> None:
    assert hotspot_history([], HOUR, T0, HOUR, 3) == [
        HotspotPoint(T0 + k * HOUR, 0.0, 0, 0.0, 0.0, 0) for k in range(3)
    ]
    assert hotspot_history([at(0, "a")], HOUR, T0, HOUR, 0) == []


def test_counts_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        hotspot_history([at(0, "a", 0)], HOUR, T0, HOUR, 1)


def test_instants_include_both_ends() -> None:
    assert history_instants(T0, T0, HOUR) == 1
    assert history_instants(T0, T0 + 3 * HOUR, HOUR) == 4
    assert history_instants(T0, T0 + 3 * HOUR - timedelta(microseconds=1), HOUR) == 3
    assert history_instants(T0, T0 - HOUR, HOUR) == 0


KEYS = st.sampled_from(["a", "b", "c", "d"])
# Quarter hours, so that records fall exactly on window bounds too.
RECORDS = st.lists(
    st.tuples(
        st.integers(-200, 200),
        KEYS,
        st.integers(1, 50),
        st.floats(0, 1, allow_nan=False),
    ),
    max_size=40,
    unique_by=lambda r: (r[0], r[1]),  # the natural key: one record per topic and instant
)


@settings(max_examples=150, deadline=None)
@given(
    RECORDS,
    st.sampled_from([1, 6, 12, 24]),
    st.sampled_from([1, 6, 12, 24]),
    st.integers(-30, 10),
    st.integers(1, 40),
)
def test_every_point_is_the_hotspot_definition_at_its_instant(
    raw: list[tuple[int, str, int, float]], window_h: int, step_h: int, since_h: int, points: int
) -> None:
    records = [at(q / 4, key, n, c) for q, key, n, c in raw]
    window, step, since = window_h * HOUR, step_h * HOUR, T0 + since_h * HOUR
    got = hotspot_history(records, window, since, step, points)
    assert len(got) == points
    for k, point in enumerate(got):
        assert_same(point, expected_point(records, window, since + k * step))
