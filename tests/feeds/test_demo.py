"""The demo dataset: deterministic, valid, and telling a story a newcomer can see on the map."""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pycountry
import pytest

from graph.core.aggregates import AggregateRow
from graph.core.flows import compute_flows
from graph.core.hotspots import compute_hotspots
from graph.core.records import Record, topic_key, validate_batch
from graph.feeds.demo import generate_demo_records
from tests.support.reference import naive_aggregates

NOW = datetime(2026, 11, 20, 12, 3, 41, tzinfo=UTC)
# A day's worth of `now`s, so the time-of-day rhythm of every region is exercised.
NOWS = [NOW + timedelta(hours=h, minutes=7 * h) for h in (0, 5, 9, 14, 19, 23)]
REGIONS = {
    "americas": {"US", "CA", "MX", "BR", "AR", "CO", "CL"},
    "europe": {"GB", "FR", "DE", "ES", "IT", "NL", "PT", "SE", "PL"},
    "asia": {"JP", "KR", "IN", "ID", "PH", "TH", "VN"},
    "africa_me": {"NG", "ZA", "EG", "KE", "SA", "AE"},
    "oceania": {"AU", "NZ"},
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@functools.cache
def demo(now: datetime, seed: int = 7) -> list[dict[str, object]]:
    return generate_demo_records(now, seed=seed)


@functools.cache
def demo_rows(now: datetime) -> list[Record]:
    return validate_batch(demo(now))


def aggregate(rows: Sequence[Record], as_of: datetime, hours: float) -> list[AggregateRow]:
    """What the database aggregates for the window (as_of - W, as_of], one row per country/topic
    (with first sightings and previous volumes over the window before it)."""
    window = timedelta(hours=hours)
    return naive_aggregates(rows, as_of - 2 * window, as_of - window, as_of)


def region_of(country: str) -> str:
    return next(name for name, members in REGIONS.items() if country in members)


def test_same_now_and_seed_give_the_same_records() -> None:
    assert generate_demo_records(NOW) == generate_demo_records(NOW)
    assert generate_demo_records(NOW, seed=7) == demo(NOW)
    assert generate_demo_records(NOW, seed=8) != demo(NOW)


def test_calls_within_the_same_five_minutes_agree() -> None:
    """A restart a few minutes later re-ingests the very same natural keys: a no-op upsert."""
    span_start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    first = generate_demo_records(span_start)
    assert generate_demo_records(span_start + timedelta(minutes=4, seconds=59)) == first
    # Any UTC offset names the same instant.
    lagos = span_start.astimezone(timezone(timedelta(hours=1)))
    assert generate_demo_records(lagos + timedelta(minutes=2)) == first
    later = generate_demo_records(span_start + timedelta(minutes=5))
    assert later != first
    assert max(str(r["timestamp"]) for r in later) > max(str(r["timestamp"]) for r in first)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_demo_records(datetime(2026, 11, 20, 12, 0))


def test_every_record_follows_the_record_rules() -> None:
    records = demo(NOW)
    assert len(validate_batch(records)) == len(records)  # the service's own validator agrees
    assigned = {country.alpha_2 for country in pycountry.countries}
    for record in records:
        assert set(record) == {
            "timestamp",
            "country",
            "topic_label",
            "count",
            "confidence",
            "sources",
        }
        stamp, label, count = record["timestamp"], record["topic_label"], record["count"]
        assert isinstance(stamp, str) and TIMESTAMP.fullmatch(stamp), record
        moment = datetime.fromisoformat(stamp)
        assert moment.tzinfo is not None
        assert NOW - timedelta(hours=48) < moment <= NOW, record
        assert record["country"] in assigned
        assert isinstance(label, str) and label == label.strip() and 1 <= len(label) <= 200
        assert type(count) is int and count >= 1, record
        confidence = record["confidence"]
        assert isinstance(confidence, float) and 0.0 <= confidence <= 1.0
        assert round(confidence, 3) == confidence
        sources = record["sources"]
        assert isinstance(sources, list) and len(sources) <= 3
        assert len(set(sources)) == len(sources)
        for source in sources:
            assert isinstance(source, str) and len(source) <= 2048
            assert source.startswith("https://"), source


def test_natural_keys_are_unique() -> None:
    for now in NOWS[:2]:
        keys = [(r.country, r.topic_key, r.timestamp) for r in demo_rows(now)]
        assert len(set(keys)) == len(keys)


def test_dozens_of_countries_over_two_days() -> None:
    records = demo(NOW)
    assert 3_000 <= len(records) <= 8_000
    assert {str(r["country"]) for r in records} == set().union(*REGIONS.values())
    hours_ago = {(NOW - r.timestamp) // timedelta(hours=1) for r in demo_rows(NOW)}
    assert hours_ago == set(range(48))


def test_local_regional_and_global_topics() -> None:
    countries_of: dict[str, set[str]] = defaultdict(set)
    labels_of: dict[str, set[str]] = defaultdict(set)
    for row in demo_rows(NOW):
        countries_of[row.topic_key].add(row.country)
        labels_of[row.topic_key].add(row.topic_label)
    reach = sorted(len(countries) for countries in countries_of.values())
    assert reach.count(1) >= 150  # local topics
    regional = [
        key
        for key, countries in countries_of.items()
        if 3 <= len(countries) <= 9 and len({region_of(c) for c in countries}) == 1
    ]
    assert len(regional) >= 10
    assert sum(n >= 15 for n in reach) >= 4  # global topics
    assert topic_key("World Cup") in countries_of
    assert labels_of[topic_key("World Cup")] == {"World Cup", "world cup"}
    # Apart from case variants, a topic has one label everywhere.
    assert all(len({topic_key(label) for label in labels}) == 1 for labels in labels_of.values())


@pytest.mark.parametrize("hours", [1, 6, 12, 24])
def test_every_window_has_data(hours: int) -> None:
    for now in NOWS:
        countries = {a.country for a in aggregate(demo_rows(now), now, hours)}
        assert len(countries) >= 25, (now, hours)


@pytest.mark.parametrize("now", NOWS)
def test_a_newcomer_sees_hot_flows(now: datetime) -> None:
    """Default window, threshold and half-life: a handful of hot flows between neighbours."""
    flows = compute_flows(aggregate(demo_rows(now), now, 24), threshold=0.5, halflife_hours=6.0)
    assert 3 <= len(flows) <= 20, flows
    for flow in flows:
        assert flow.heat >= 0.5
        assert region_of(flow.from_country) == region_of(flow.to_country), flow
        assert flow.time_delta_hours <= 4.0
        assert flow.shared_topics
    # Followers pick topics up from their leaders, not the other way round.
    assert {(f.from_country, f.to_country) for f in flows} & {
        ("US", "CA"),
        ("AR", "CL"),
        ("ES", "PT"),
        ("DE", "NL"),
        ("JP", "KR"),
        ("SA", "AE"),
        ("AU", "NZ"),
    }


def test_recent_windows_have_flows_too() -> None:
    for now in NOWS:
        aggregates = aggregate(demo_rows(now), now, 6)
        assert compute_flows(aggregates, threshold=0.3, halflife_hours=6.0), now


@pytest.mark.parametrize("now", NOWS)
def test_hotspots_range_from_hubs_to_quiet_followers(now: datetime) -> None:
    hotspots = compute_hotspots(aggregate(demo_rows(now), now, 24))
    intensities = [h.intensity for h in hotspots]
    assert len(hotspots) == 31
    assert intensities[0] == pytest.approx(1.0)
    assert min(intensities) < 0.15
    assert sum(0.15 <= i < 0.9 for i in intensities) >= 10
    velocities = [h.velocity for h in hotspots]
    assert min(velocities) < 0.9 and max(velocities) > 1.1
