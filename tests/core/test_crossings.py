"""Crossings: a flow is new once per crossing of the threshold, within the countries asked."""

from __future__ import annotations

from graph.core.crossings import Crossings
from graph.core.flows import Flow


def flow(a: str, b: str, heat: float) -> Flow:
    return Flow(
        from_country=a,
        to_country=b,
        heat=heat,
        shared_topics=("x",),
        time_delta_hours=1.0,
        similarity_score=heat,
    )


def pairs(flows: list[Flow]) -> list[tuple[str, str]]:
    return [(f.from_country, f.to_country) for f in flows]


def test_a_flow_is_new_once_per_crossing() -> None:
    c = Crossings(None, 0.5, hot=set())
    assert pairs(c.update([flow("US", "CA", 0.6), flow("ES", "PT", 0.4)])) == [("US", "CA")]
    assert c.update([flow("US", "CA", 0.7), flow("ES", "PT", 0.45)]) == []
    assert pairs(c.update([flow("US", "CA", 0.3), flow("ES", "PT", 0.55)])) == [("ES", "PT")]
    # US→CA fell below the threshold; coming back makes it new again.
    assert pairs(c.update([flow("US", "CA", 0.8), flow("ES", "PT", 0.55)])) == [("US", "CA")]


def test_a_flow_changing_direction_is_not_new() -> None:
    crossings = Crossings(None, 0.5, hot={("US", "CA")})
    assert crossings.update([flow("CA", "US", 0.9)]) == []


def test_only_the_countries_asked_and_the_threshold_count() -> None:
    crossings = Crossings(frozenset({"US", "CA", "MX"}), 0.5, hot=set())
    fresh = crossings.update(
        [flow("US", "CA", 0.9), flow("US", "GB", 0.9), flow("MX", "US", 0.49999999999)]
    )
    assert pairs(fresh) == [("US", "CA"), ("MX", "US")]


def test_nothing_is_new_before_what_is_hot_is_known() -> None:
    crossings = Crossings(None, 0.5)
    assert crossings.update([flow("US", "CA", 0.9)]) == []
    assert pairs(crossings.update([flow("US", "CA", 0.9), flow("ES", "PT", 0.9)])) == [("ES", "PT")]


def test_start_takes_what_is_hot_unless_a_snapshot_came_first() -> None:
    crossings = Crossings(None, 0.5)
    crossings.start([flow("US", "CA", 0.9)])
    assert pairs(crossings.update([flow("US", "CA", 0.9), flow("ES", "PT", 0.9)])) == [("ES", "PT")]
    crossings.start([flow("JP", "KR", 0.9)])  # too late: the snapshot is newer
    assert pairs(crossings.update([flow("JP", "KR", 0.9)])) == [("JP", "KR")]


def test_the_flows_handed_out_are_the_snapshots_own_objects() -> None:
    crossings = Crossings(None, 0.5, hot=set())
    snapshot = [flow("US", "CA", 0.9)]
    [fresh] = crossings.update(snapshot)
    assert fresh is snapshot[0]
