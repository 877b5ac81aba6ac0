"""Hotspots and flows (graph.core.hotspots, graph.core.flows): hand-computed cases, and
property tests against a naive reference."""

from __future__ import annotations

import gc
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.core import flows as flows_module
from graph.core import pairs as pairs_module
from graph.core.aggregates import AggregateRow, AggregateTable
from graph.core.flows import HEAT_EPSILON, Flow, compute_flows, flows_and_stats, heat
from graph.core.hotspots import TopTopic, compute_hotspots
from tests.support.reference import (
    assert_flows_match,
    assert_hotspots_match,
    assert_stats_match,
    naive_flow_stats,
    naive_flows,
    naive_hotspots,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def agg(
    country: str,
    key: str,
    count: int = 1,
    *,
    hours: float = 0.0,
    label: str | None = None,
    confidence: float = 1.0,
    previous: int = 0,
    window_hours: float | None = None,
) -> AggregateRow:
    """A row first seen ``hours`` after T0 (its label in the window at ``window_hours``, by
    default the same instant); ``previous`` is its country's previous-window volume."""
    return AggregateRow(
        country=country,
        topic_key=key,
        label=key if label is None else label,
        count=count,
        weighted_confidence=count * confidence,
        first_seen=T0 + timedelta(hours=hours),
        window_first_seen=T0 + timedelta(hours=hours if window_hours is None else window_hours),
        previous_volume=previous,
    )


def flows_of(
    aggregates: list[AggregateRow],
    *,
    threshold: float = 0.0,
    halflife_hours: float = 6.0,
    min_lag_hours: float = 0.5,
    countries: list[str] | None = None,
) -> list[Flow]:
    return compute_flows(
        aggregates,
        threshold=threshold,
        halflife_hours=halflife_hours,
        min_lag_hours=min_lag_hours,
        countries=countries,
    )


def only_flow(
    aggregates: list[AggregateRow],
    *,
    halflife_hours: float = 6.0,
    min_lag_hours: float = 0.5,
    countries: list[str] | None = None,
) -> Flow:
    flows = flows_of(
        aggregates,
        halflife_hours=halflife_hours,
        min_lag_hours=min_lag_hours,
        countries=countries,
    )
    assert len(flows) == 1
    return flows[0]


# heat


def test_heat_is_similarity_at_zero_lag() -> None:
    assert heat(1.0, 0.0, 6.0) == 1.0
    assert heat(0.8, 0.0, 6.0) == 0.8


def test_heat_halves_every_halflife() -> None:
    assert heat(1.0, 6.0, 6.0) == 0.5
    assert heat(1.0, 12.0, 6.0) == 0.25
    assert heat(0.8, 3.0, 3.0) == 0.4


@pytest.mark.parametrize("halflife", [0.0, -1.0, math.nan])
def test_heat_rejects_a_halflife_that_is_not_positive(halflife: float) -> None:
    with pytest.raises(ValueError):
        heat(1.0, 1.0, halflife)


def test_heat_is_elementwise_over_arrays() -> None:
    """compute_flows hands heat() a whole block of pairs at once."""
    similarity = np.array([1.0, 0.8, 0.3])
    hours = np.array([0.0, 3.0, 7.25])
    got = heat(similarity, hours, 3.0)
    assert isinstance(got, np.ndarray)
    pairs = zip(similarity.tolist(), hours.tolist(), strict=True)
    assert got.tolist() == [heat(s, h, 3.0) for s, h in pairs]
    assert got.tolist()[:2] == [1.0, 0.4]


@pytest.mark.parametrize("halflife", [0.5, 6.0, 7.3])
def test_every_flows_heat_is_heat_of_its_own_fields(halflife: float) -> None:
    """The flows' heat is heat() itself, to the last bit: a change to heat() (the function
    the tests above pin down) is a change to every flow, and nothing computes it twice."""
    flows = compute_flows(random_aggregates(5, 30, 60, 0.3), threshold=0.0, halflife_hours=halflife)
    assert len(flows) > 300
    for f in flows:
        assert f.heat == heat(f.similarity_score, f.time_delta_hours, halflife)


# hotspots


def test_hotspots_hand_computed() -> None:
    """velocity = 2V/(V+P), score = V x velocity x confidence, intensity = score / max score.

    US: V 8, P 8, velocity 1, confidence 0.75, score 6; BR and CO: V 2, P 0, velocity 2,
    score 4; DE: V 3, P 9, velocity 0.5, score 1.5.
    """
    hotspots = compute_hotspots(
        [
            agg("DE", "a", 3, previous=9),
            agg("CO", "a", 2, confidence=1.0),
            agg("US", "a", 4, previous=8, confidence=0.5),
            agg("BR", "a", 2, confidence=1.0),
            agg("US", "b", 4, previous=8, confidence=1.0),
        ]
    )
    assert [h.country for h in hotspots] == ["US", "BR", "CO", "DE"]
    us, br, co, de = hotspots
    assert (us.intensity, us.score) == (1.0, 6.0)
    assert (us.volume, us.velocity, us.avg_confidence, us.topic_count) == (8, 1.0, 0.75, 2)
    assert br.intensity == pytest.approx(4 / 6, rel=1e-12)
    assert (br.volume, br.velocity, br.avg_confidence, br.score) == (2, 2.0, 1.0, 4.0)
    assert co.intensity == br.intensity
    assert (de.velocity, de.score, de.intensity) == (0.5, 1.5, 0.25)


def test_velocity_is_never_zero_for_a_country_with_data() -> None:
    """However large the previous window, a country in the window has a velocity and an
    intensity above 0: sparse snapshots no longer zero every country."""
    hotspots = compute_hotspots([agg("US", "a", 1, previous=10**9), agg("BR", "a", 1)])
    assert all(h.velocity > 0 and h.intensity > 0 for h in hotspots)
    us = next(h for h in hotspots if h.country == "US")
    assert us.velocity == pytest.approx(2 / (1 + 10**9), rel=1e-12)


def test_score_is_comparable_across_answers() -> None:
    """Intensity is rescaled in every answer; score is not."""
    alone = compute_hotspots([agg("US", "a", 4, previous=4)])
    crowded = compute_hotspots([agg("US", "a", 4, previous=4), agg("BR", "a", 40)])
    us = next(h for h in crowded if h.country == "US")
    assert alone[0].intensity == 1.0 > us.intensity
    assert alone[0].score == us.score == 4.0


def test_hotspot_top_topics_keep_five_and_break_count_ties_by_label() -> None:
    labels = ["gamma", "epsilon", "delta", "beta", "alpha"]
    aggregates = [agg("US", label, 3, label=label, confidence=0.5) for label in labels]
    aggregates += [agg("US", "zeta", 9, confidence=0.25), agg("US", "eta", 1)]
    (hotspot,) = compute_hotspots(aggregates)
    assert hotspot.topic_count == 7
    assert hotspot.top_topics == (
        TopTopic("zeta", 9, 0.25),
        TopTopic("alpha", 3, 0.5),
        TopTopic("beta", 3, 0.5),
        TopTopic("delta", 3, 0.5),
        TopTopic("epsilon", 3, 0.5),
    )


def test_hotspot_top_topic_carries_its_own_label_and_count_weighted_confidence() -> None:
    aggregates = [
        AggregateRow("US", "world cup", "World Cup", 4, 3.0, T0, T0, 1),
        AggregateRow("BR", "world cup", "Copa do Mundo", 2, 2.0, T0, T0, 2),
    ]
    by_country = {h.country: h for h in compute_hotspots(aggregates)}
    assert by_country["US"].top_topics == (TopTopic("World Cup", 4, 0.75),)
    assert by_country["BR"].top_topics == (TopTopic("Copa do Mundo", 2, 1.0),)


def test_hotspot_intensities_are_zero_when_no_record_is_believed() -> None:
    hotspots = compute_hotspots(
        [agg("US", "a", 2, confidence=0.0), agg("BR", "a", 2, confidence=0.0)]
    )
    assert [(h.country, h.intensity, h.score) for h in hotspots] == [
        ("BR", 0.0, 0.0),
        ("US", 0.0, 0.0),
    ]


def test_hotspots_of_nothing() -> None:
    assert compute_hotspots([]) == []


def test_hotspots_reject_two_aggregates_for_one_topic_of_a_country() -> None:
    with pytest.raises(ValueError, match="US"):
        compute_hotspots([agg("US", "a"), agg("BR", "a"), agg("US", "a", hours=1)])


@pytest.mark.parametrize(
    "bad",
    [
        [agg("US", "a", 0)],
        [agg("US", "a", 2, previous=-1)],
        [agg("US", "a", 2, previous=3), agg("US", "b", 2, previous=4)],
    ],
)
def test_hotspots_reject_impossible_counts(bad: list[AggregateRow]) -> None:
    with pytest.raises(ValueError):
        compute_hotspots([agg("BR", "a"), *bad])


def test_hotspot_ties_with_huge_counts() -> None:
    """Counts too large for a packed sort key still rank by count, then label."""
    big = 2**59
    aggregates = [agg("US", k, big, label=k) for k in "fedcb"] + [agg("US", "a", big + 1)]
    aggregates += [agg(code, "z") for code in ("AR", "BR", "CL", "CO", "DE", "FR", "MX", "PE")]
    by_country = {h.country: h for h in compute_hotspots(aggregates)}
    assert [t.label for t in by_country["US"].top_topics] == ["a", "b", "c", "d", "e"]
    assert by_country["US"].top_topics[0].count == big + 1


# flows: direction and lag


def test_flow_goes_from_the_country_that_saw_the_topics_first() -> None:
    flow = only_flow(
        [agg("US", "a"), agg("US", "b"), agg("BR", "a", hours=3), agg("BR", "b", hours=3)]
    )
    assert (flow.from_country, flow.to_country) == ("US", "BR")
    assert flow.time_delta_hours == 3.0
    assert flow.similarity_score == pytest.approx(1.0, rel=1e-12)
    assert flow.heat == pytest.approx(0.5**0.5, rel=1e-12)


def test_flow_direction_follows_the_sign_of_the_median_lag() -> None:
    """For (a, b) = (AR, US), m > 0 means AR -> US and m < 0 means US -> AR."""
    flow = only_flow([agg("AR", "a"), agg("US", "a", hours=2)])
    assert (flow.from_country, flow.to_country, flow.time_delta_hours) == ("AR", "US", 2.0)
    flow = only_flow([agg("AR", "a", hours=2), agg("US", "a")])
    assert (flow.from_country, flow.to_country, flow.time_delta_hours) == ("US", "AR", 2.0)


def test_flow_with_a_zero_median_is_simultaneous() -> None:
    """Lags +2 h and -2 h: median 0, simultaneous, the alphabetically smaller country first."""
    aggregates = [agg("US", "a"), agg("US", "b", hours=2), agg("BR", "a", hours=2), agg("BR", "b")]
    flow = only_flow(aggregates)
    assert (flow.from_country, flow.to_country, flow.time_delta_hours) == ("BR", "US", 0.0)
    assert flow.simultaneous
    assert flow.heat == pytest.approx(flow.similarity_score, rel=1e-15)


@pytest.mark.parametrize(
    ("minutes", "min_lag_hours", "simultaneous"),
    [(29, 0.5, True), (30, 0.5, False), (31, 0.5, False), (59, 1.0, True), (1, 1 / 120, False)],
)
def test_a_median_lag_under_the_minimum_is_simultaneous(
    minutes: int, min_lag_hours: float, simultaneous: bool
) -> None:
    """US saw the topic first; under the minimum lag the pair is simultaneous and goes
    alphabetically (BR first), at or over it the flow is directed US -> BR. time_delta_hours
    and the heat are the lag's either way."""
    aggregates = [agg("US", "a"), agg("BR", "a", hours=minutes / 60)]
    flow = only_flow(aggregates, min_lag_hours=min_lag_hours)
    assert flow.simultaneous is simultaneous
    ends = ("BR", "US") if simultaneous else ("US", "BR")
    assert (flow.from_country, flow.to_country) == ends
    assert flow.time_delta_hours == pytest.approx(minutes / 60, rel=1e-12)
    assert flow.heat == heat(flow.similarity_score, flow.time_delta_hours, 6.0)


@pytest.mark.parametrize("min_lag_hours", [0.0, -1.0, math.nan])
def test_the_minimum_lag_must_be_positive(min_lag_hours: float) -> None:
    with pytest.raises(ValueError):
        flows_of([agg("US", "a"), agg("BR", "a")], min_lag_hours=min_lag_hours)


def test_lags_come_from_first_sightings_and_labels_from_the_window() -> None:
    """BR first saw the topic in the previous window (first_seen -20 h) and again in this one
    (+1 h): the lag uses -20 h. The display label is the earliest record in the window across
    countries: US's at 0 h, not BR's older spelling."""
    aggregates = [
        agg("US", "a", label="US spelling"),
        agg("BR", "a", hours=-20, window_hours=1, label="BR spelling"),
    ]
    flow = only_flow(aggregates)
    assert (flow.from_country, flow.to_country, flow.time_delta_hours) == ("BR", "US", 20.0)
    assert flow.shared_topics == ("US spelling",)


def test_even_median_is_the_mean_of_the_middle_two() -> None:
    """Lags 1, 2, 4 and 10 h: median 3 h (not 2, 4 or the mean 4.25)."""
    aggregates = [agg("US", k) for k in "abcd"]
    aggregates += [agg("BR", k, hours=h) for k, h in zip("abcd", [10, 1, 4, 2], strict=True)]
    flow = only_flow(aggregates)
    assert (flow.from_country, flow.time_delta_hours) == ("US", 3.0)


def test_lags_keep_microsecond_precision() -> None:
    """Lags of +1 us and -1 us, years apart, cancel exactly; a lone +1 us lag sets the direction."""
    tick = timedelta(microseconds=1)
    far = timedelta(days=3000, hours=7, microseconds=123457)
    us_a = AggregateRow("US", "a", "a", 1, 1.0, T0, T0, 0)
    us_b = AggregateRow("US", "b", "b", 1, 1.0, T0 + far, T0 + far, 0)
    br_a = AggregateRow("BR", "a", "a", 1, 1.0, T0 - tick, T0 - tick, 0)
    br_b = AggregateRow("BR", "b", "b", 1, 1.0, T0 + far + tick, T0 + far + tick, 0)
    half_a_tick = 1 / 7.2e9  # hours: any lag of 1 us or more is directed
    flow = only_flow([us_b, br_a, us_a, br_b], min_lag_hours=half_a_tick)
    assert (flow.from_country, flow.time_delta_hours, flow.simultaneous) == ("BR", 0.0, True)
    flow = only_flow([us_b, br_b], min_lag_hours=half_a_tick)
    assert (flow.from_country, flow.to_country, flow.simultaneous) == ("US", "BR", False)
    assert flow.time_delta_hours == pytest.approx(1 / 3.6e9, rel=1e-12)


def test_heat_decays_with_the_median_lag() -> None:
    aggregates = [agg("US", "a"), agg("BR", "a", hours=12)]
    assert only_flow(aggregates, halflife_hours=6.0).heat == pytest.approx(0.25, rel=1e-12)
    assert only_flow(aggregates, halflife_hours=12.0).heat == pytest.approx(0.5, rel=1e-12)


# flows: shared topics


def test_shared_topics_by_combined_count_then_label_at_most_ten() -> None:
    """Twelve shared topics; one topic of each country is not shared and never listed."""
    counts = {"k01": (5, 5), "k02": (1, 9), "k03": (9, 2), "k04": (3, 3), "k05": (2, 4)}
    counts |= {f"k{i:02}": (1, 1) for i in range(6, 13)}
    labels = {k: f"label {13 - int(k[1:]):02}" for k in counts}  # reversed against the keys
    aggregates = [agg("US", "us only", 50), agg("BR", "br only", 50)]
    for key, (us, br) in counts.items():
        aggregates += [agg("US", key, us, label=labels[key]), agg("BR", key, br, label=labels[key])]
    assert only_flow(aggregates).shared_topics == (
        "label 10",  # k03: 11
        "label 11",  # k02: 10, and "label 11" < "label 12"
        "label 12",  # k01: 10
        "label 08",  # k05: 6
        "label 09",  # k04: 6
        "label 01",  # k12: 2, the smallest of the seven labels tied at 2
        "label 02",
        "label 03",
        "label 04",
        "label 05",
    )


def test_display_label_is_the_earliest_record_across_all_countries() -> None:
    """Ties on first_seen go to the smallest label; CO and DE, outside the filter, count."""
    aggregates = [
        agg("BR", "world cup", label="world cup"),
        agg("US", "world cup", label="World Cup"),
        agg("CO", "world cup", hours=1, label="A World Cup"),
    ]
    flows = flows_of(aggregates, countries=["US", "BR"])
    assert [f.shared_topics for f in flows] == [("World Cup",)]
    aggregates.append(agg("DE", "world cup", hours=-1, label="WM"))
    flows = flows_of(aggregates, countries=["US", "BR"])
    assert [f.shared_topics for f in flows] == [("WM",)]


# flows: selection


def test_countries_filter_needs_both_ends() -> None:
    aggregates = [agg("US", "a"), agg("BR", "a", hours=1), agg("CO", "a", hours=2)]
    pairs = {(f.from_country, f.to_country) for f in flows_of(aggregates)}
    assert pairs == {("US", "BR"), ("US", "CO"), ("BR", "CO")}
    pairs = {(f.from_country, f.to_country) for f in flows_of(aggregates, countries=["co", "US"])}
    assert pairs == {("US", "CO")}
    assert flows_of(aggregates, countries=["US"]) == []
    assert flows_of(aggregates, countries=[]) == []


def test_idf_counts_every_country_even_outside_the_filter() -> None:
    """US {a, b} and BR {a, c}: a country sharing nothing with them still changes the idf."""
    pair = [agg("US", "a"), agg("US", "b"), agg("BR", "a"), agg("BR", "c")]

    def cosine(n: int) -> float:
        shared, own = math.log((1 + n) / 3) + 1, math.log((1 + n) / 2) + 1
        return shared**2 / (shared**2 + own**2)

    alone = only_flow(pair).similarity_score
    with_de = only_flow([*pair, agg("DE", "z")], countries=["US", "BR"]).similarity_score
    assert alone == pytest.approx(cosine(2), rel=1e-12)
    assert with_de == pytest.approx(cosine(3), rel=1e-12)
    assert abs(alone - with_de) > 0.01


def test_threshold_keeps_flows_at_or_above_it() -> None:
    """Heat exactly 0.5 passes a 0.5 threshold; 0.25 does not."""
    aggregates = [agg("US", "a"), agg("BR", "a", hours=6), agg("CO", "a", hours=12)]
    flows = flows_of(aggregates, threshold=0.5)
    assert [(f.from_country, f.to_country) for f in flows] == [("BR", "CO"), ("US", "BR")]
    assert [f.heat for f in flows] == pytest.approx([0.5, 0.5], rel=1e-12)


def test_threshold_zero_keeps_every_pair_with_a_shared_topic() -> None:
    aggregates = [agg("US", "a"), agg("BR", "a", hours=200), agg("CO", "b")]
    flows = flows_of(aggregates, threshold=0.0)
    assert [(f.from_country, f.to_country) for f in flows] == [("US", "BR")]
    assert 0 < flows[0].heat < 1e-9


# flows: why nothing is hot


def test_stats_name_the_hottest_pair_even_below_the_threshold() -> None:
    """Nothing reaches 0.6: the stats still say which pair is hottest and how many share."""
    aggregates = [agg("US", "a"), agg("BR", "a", hours=12), agg("CO", "a", hours=18)]
    aggregates.append(agg("DE", "b"))
    flows, stats = flows_and_stats(aggregates, threshold=0.6, halflife_hours=6.0)
    assert flows == []
    assert (stats.from_country, stats.to_country, stats.pairs) == ("BR", "CO", 3)
    assert stats.max_heat == pytest.approx(0.5, rel=1e-12)
    # The hottest pair is the first flow at threshold 0, whatever threshold was asked.
    first = flows_of(aggregates, threshold=0.0)[0]
    assert (first.heat, first.from_country, first.to_country) == (
        stats.max_heat,
        stats.from_country,
        stats.to_country,
    )


def test_stats_follow_the_countries_filter() -> None:
    aggregates = [agg("US", "a"), agg("BR", "a", hours=12), agg("CO", "a", hours=18)]
    _, stats = flows_and_stats(
        aggregates, threshold=0.9, halflife_hours=6.0, countries=["US", "BR"]
    )
    assert (stats.from_country, stats.to_country, stats.pairs) == ("US", "BR", 1)
    assert stats.max_heat == pytest.approx(0.25, rel=1e-12)


def test_stats_without_a_shared_topic() -> None:
    for aggregates, countries in [
        ([], None),
        ([agg("US", "a"), agg("BR", "b")], None),
        ([agg("US", "a"), agg("BR", "a")], ["US"]),
    ]:
        flows, stats = flows_and_stats(
            aggregates, threshold=0.0, halflife_hours=6.0, countries=countries
        )
        assert flows == []
        assert (stats.max_heat, stats.from_country, stats.to_country, stats.pairs) == (
            None,
            None,
            None,
            0,
        )


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_the_search_for_the_hottest_pair_stops_early_but_right(
    monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """With nothing over the threshold, the hottest pair is searched most similar first in
    growing batches; it must be the naive model's whatever the batch size."""
    monkeypatch.setattr(flows_module, "_FIRST_BATCH", batch)
    for seed in range(4):
        aggregates = random_aggregates(seed, 25, 40, 0.2)
        flows, stats = flows_and_stats(aggregates, threshold=1.5, halflife_hours=1.0)
        assert flows == []
        expected = naive_flows(aggregates, 1.0, None)
        assert_stats_match(stats, naive_flow_stats(expected))
        assert stats.pairs > 100


def test_flows_of_nothing_or_of_one_country() -> None:
    assert flows_of([]) == []
    assert flows_of([agg("US", "a"), agg("US", "b")]) == []


def test_flows_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        flows_of([agg("US", "a")], halflife_hours=0.0)
    with pytest.raises(ValueError):
        flows_of([agg("US", "a")], threshold=math.nan)
    with pytest.raises(ValueError):
        flows_of([agg("US", "a"), agg("US", "a", hours=1)])
    with pytest.raises(ValueError):
        flows_of([agg("US", "a", 0)])


# property tests

COUNTRIES = ("AR", "BR", "CO", "DE", "US")
KEYS = tuple(f"topic {c}" for c in "abcdefghijkl")


@st.composite
def aggregate_sets(draw: st.DrawFn, max_size: int = 40) -> list[AggregateRow]:
    """Unique (country, topic) cells; labels are spellings of the key, so they identify it."""
    cells = draw(
        st.lists(
            st.tuples(st.sampled_from(COUNTRIES), st.sampled_from(KEYS)),
            unique=True,
            max_size=max_size,
        )
    )
    previous = {c: draw(st.sampled_from([0, 0, 1, 7, 40])) for c in COUNTRIES}
    result = []
    for country, key in cells:
        count = draw(st.integers(1, 6))
        confidence = draw(st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]))
        minutes = draw(st.integers(-4, 4)) * 45  # a coarse grid: ties and zero medians happen
        later = draw(st.integers(0, 2)) * 45  # when the window's earliest record was
        result.append(
            AggregateRow(
                country=country,
                topic_key=key,
                label=draw(st.sampled_from([key, key.title(), key.upper()])),
                count=count,
                weighted_confidence=count * confidence,
                first_seen=T0 + timedelta(minutes=minutes),
                window_first_seen=T0 + timedelta(minutes=minutes + later),
                previous_volume=previous[country],
            )
        )
    return result


thresholds = st.sampled_from([-1.0, 0.0, 0.2, 0.5, 0.8, 1.0])
halflives = st.sampled_from([0.5, 1.0, 6.0])
filters = st.none() | st.sets(st.sampled_from(COUNTRIES))


@settings(max_examples=200, deadline=None)
@given(aggregate_sets(), thresholds, halflives, filters)
def test_flows_equal_the_naive_reference(
    aggregates: list[AggregateRow], threshold: float, halflife: float, countries: set[str] | None
) -> None:
    min_lag = halflife / 4  # 45-minute grid: medians fall on both sides of it
    flows, stats = flows_and_stats(
        aggregates,
        threshold=threshold,
        halflife_hours=halflife,
        min_lag_hours=min_lag,
        countries=countries,
    )
    expected = naive_flows(aggregates, halflife, countries, min_lag)
    assert_flows_match(flows, expected, threshold)
    assert_stats_match(stats, naive_flow_stats(expected))


@settings(max_examples=200, deadline=None)
@given(aggregate_sets())
def test_hotspots_equal_the_naive_reference(aggregates: list[AggregateRow]) -> None:
    hotspots = compute_hotspots(aggregates)
    if aggregates:
        assert_hotspots_match(hotspots, naive_hotspots(aggregates))
    else:
        assert hotspots == []


@settings(max_examples=150, deadline=None)
@given(aggregate_sets(), thresholds, halflives)
def test_flow_properties(aggregates: list[AggregateRow], threshold: float, halflife: float) -> None:
    flows = compute_flows(aggregates, threshold=threshold, halflife_hours=halflife)
    keys = [(-f.heat, f.from_country, f.to_country) for f in flows]
    assert keys == sorted(keys)
    pairs = [frozenset((f.from_country, f.to_country)) for f in flows]
    assert len(set(pairs)) == len(pairs)
    for f in flows:
        assert f.from_country != f.to_country
        assert f.heat >= threshold - HEAT_EPSILON
        assert 0.0 <= f.similarity_score <= 1.0
        assert f.heat <= f.similarity_score
        assert f.time_delta_hours >= 0.0
        assert 1 <= len(f.shared_topics) <= 10
        assert f.simultaneous == (f.time_delta_hours < 0.5)
        if f.simultaneous:
            assert f.from_country < f.to_country


@settings(max_examples=150, deadline=None)
@given(aggregate_sets())
def test_hotspot_properties(aggregates: list[AggregateRow]) -> None:
    hotspots = compute_hotspots(aggregates)
    keys = [(-h.intensity, h.country) for h in hotspots]
    assert keys == sorted(keys)
    for h in hotspots:
        assert 0.0 <= h.intensity <= 1.0
        assert 0.0 <= h.velocity <= 2.0
        assert len(h.top_topics) == min(5, h.topic_count)
    if any(h.velocity * h.avg_confidence > 0 for h in hotspots):
        assert max(h.intensity for h in hotspots) == 1.0


def random_aggregates(
    seed: int, n_countries: int, n_topics: int, density: float
) -> list[AggregateRow]:
    rng = random.Random(seed)
    codes = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(n_countries)]
    result = []
    for code in codes:
        for t in range(n_topics):
            if rng.random() < density:
                count = rng.randint(1, 20)
                result.append(
                    AggregateRow(
                        country=code,
                        topic_key=f"t{t}",
                        label=f"T{t}",
                        count=count,
                        weighted_confidence=count * rng.random(),
                        first_seen=T0 + timedelta(minutes=rng.randint(-60, 60) * 6),
                        window_first_seen=T0 + timedelta(minutes=rng.randint(60, 120) * 6),
                        previous_volume=7,
                    )
                )
    return result


@pytest.mark.parametrize("density", [0.05, 0.6])
def test_block_and_blas_limits_do_not_change_flows(
    monkeypatch: pytest.MonkeyPatch, density: float
) -> None:
    """Tiny memory limits (one partner per block, sparse similarities) give the same flows."""
    aggregates = random_aggregates(7, 30, 60, density)
    expected = naive_flows(aggregates, 6.0, None)
    roomy = compute_flows(aggregates, threshold=0.1, halflife_hours=6.0)
    assert_flows_match(roomy, expected, 0.1)
    monkeypatch.setattr(pairs_module, "_BLOCK_CELLS", 1)
    monkeypatch.setattr(pairs_module, "_DENSE_CELLS", 0)
    monkeypatch.setattr(flows_module, "_DENSE_CELLS", 0)
    tight = compute_flows(aggregates, threshold=0.1, halflife_hours=6.0)
    assert_flows_match(tight, expected, 0.1)
    assert len(tight) == len(roomy) > 10


def test_blocks_shared_over_threads_give_the_same_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large window's pair blocks go to a thread pool: the very same flows."""
    aggregates = random_aggregates(11, 40, 80, 0.5)
    alone = compute_flows(aggregates, threshold=0.05, halflife_hours=6.0)
    monkeypatch.setattr(pairs_module, "_PARALLEL_CELLS", 0)
    monkeypatch.setattr(pairs_module, "_THREADS", 4)
    monkeypatch.setattr(pairs_module, "_BLOCK_CELLS", 64)  # many blocks per owner, too
    shared = compute_flows(aggregates, threshold=0.05, halflife_hours=6.0)
    assert shared == alone and len(alone) > 20
    assert_flows_match(shared, naive_flows(aggregates, 6.0, None), 0.05)


def test_flows_with_counts_too_large_for_packed_keys() -> None:
    """Shared topics still rank by the sum of both countries' counts, then by label."""
    big = 2**61
    keys = "abcdefghijkl"
    aggregates = [agg("US", k, big + i, hours=i) for i, k in enumerate(keys)]
    aggregates += [agg("BR", k, big + 3 * (11 - i), hours=1) for i, k in enumerate(keys)]
    aggregates += [agg("BR", "m", big), agg("US", "n", big)]
    assert only_flow(aggregates).shared_topics == tuple("abcdefghij")
    assert_flows_match(flows_of(aggregates), naive_flows(aggregates, 6.0, None), 0.0)


@settings(max_examples=150, deadline=None)
@given(aggregate_sets(), thresholds, halflives, filters)
def test_the_column_table_gives_the_same_answers_as_rows(
    aggregates: list[AggregateRow], threshold: float, halflife: float, countries: set[str] | None
) -> None:
    """The repository's column table takes a path of its own; it must agree with plain rows."""
    table = AggregateTable.from_rows(aggregates)
    assert list(table) == aggregates
    for _ in range(2):  # the second time from the arrays derived the first time
        assert compute_flows(
            table, threshold=threshold, halflife_hours=halflife, countries=countries
        ) == compute_flows(
            aggregates, threshold=threshold, halflife_hours=halflife, countries=countries
        )
        assert compute_hotspots(table) == compute_hotspots(aggregates)


def test_no_collection_runs_while_flows_are_made() -> None:
    """A window's flows are made with the cyclic collector held off (they hold no cycles, and
    a collection would walk the window's millions of objects), and it is on again after: at
    most one collection, as it catches up on leaving (six on this input without the pause)."""
    aggregates = random_aggregates(3, 40, 120, 0.5)
    collections: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(counted)
    try:
        flows = compute_flows(aggregates, threshold=0.0, halflife_hours=6.0)
    finally:
        gc.callbacks.remove(counted)
    assert len(flows) > 500
    assert len(collections) <= 1
    assert gc.isenabled()
