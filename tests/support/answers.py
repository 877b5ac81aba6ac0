"""The whole stack's answers checked against the naive model (tests/support/reference.py).

:func:`check_window` asks REST and GraphQL for one window's flows, flow stats and hotspots and
compares each with the model computed straight from the raw records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.testclient import TestClient

from graph.core.flows import Flow, FlowStats
from graph.core.hotspots import Hotspot, TopTopic
from graph.core.windows import Span, TimeWindow
from tests.support.reference import (
    assert_flows_match,
    assert_hotspots_match,
    assert_stats_match,
    naive_flow_stats,
    naive_flows,
    naive_hotspots,
    naive_window,
)

FLOWS_QUERY = """query($w: String!, $c: [String!], $t: Float, $asOf: DateTime) {
  flows(timeWindow: $w, countries: $c, threshold: $t, asOf: $asOf) {
    fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore simultaneous }
  flowStats(timeWindow: $w, countries: $c, asOf: $asOf) { maxHeat fromCountry toCountry pairs }
}"""

HOTSPOTS_QUERY = """query($w: String!, $c: [String!], $asOf: DateTime) {
  hotspots(timeWindow: $w, countries: $c, asOf: $asOf) {
    country intensity score topicCount volume velocity avgConfidence
    topTopics { label count confidence } } }"""


def rest_flows(body: dict[str, Any]) -> list[Flow]:
    return [Flow(**{**f, "shared_topics": tuple(f["shared_topics"])}) for f in body["flows"]]


def rest_stats(metadata: dict[str, Any]) -> FlowStats:
    hottest = metadata["max_heat"]
    if hottest is None:
        return FlowStats(None, None, None, metadata["pairs"])
    return FlowStats(
        hottest["heat"], hottest["from_country"], hottest["to_country"], metadata["pairs"]
    )


def graphql_flows(data: list[dict[str, Any]]) -> list[Flow]:
    return [
        Flow(
            from_country=f["fromCountry"],
            to_country=f["toCountry"],
            heat=f["heat"],
            shared_topics=tuple(f["sharedTopics"]),
            time_delta_hours=f["timeDeltaHours"],
            similarity_score=f["similarityScore"],
            simultaneous=f["simultaneous"],
        )
        for f in data
    ]


def graphql_stats(data: dict[str, Any]) -> FlowStats:
    return FlowStats(data["maxHeat"], data["fromCountry"], data["toCountry"], data["pairs"])


def rest_hotspots(body: dict[str, Any]) -> list[Hotspot]:
    return [
        Hotspot(
            **{
                **h,
                "top_topics": tuple(TopTopic(**t) for t in h["top_topics"]),
            }
        )
        for h in body["hotspots"]
    ]


def graphql_hotspots(data: list[dict[str, Any]]) -> list[Hotspot]:
    return [
        Hotspot(
            country=h["country"],
            intensity=h["intensity"],
            score=h["score"],
            topic_count=h["topicCount"],
            volume=h["volume"],
            velocity=h["velocity"],
            avg_confidence=h["avgConfidence"],
            top_topics=tuple(TopTopic(**t) for t in h["topTopics"]),
        )
        for h in data
    ]


def check_window(
    client: TestClient,
    records: list[dict[str, Any]],
    window: TimeWindow,
    as_of: datetime,
    countries: list[str] | None,
    thresholds: tuple[float, ...] = (0.0, 0.3),
    halflife: float = 6.0,
) -> tuple[list[Flow], list[Hotspot]]:
    """REST and GraphQL equal the model for one window; returns REST's flows (at the first
    threshold) and hotspots."""
    aggregates = naive_window(records, Span(window, as_of))
    wanted = {c.upper() for c in countries} if countries else None
    expected = naive_flows(aggregates, halflife, wanted)
    stats = naive_flow_stats(expected)
    first: list[Flow] = []
    filters: dict[str, Any] = {"countries": ",".join(countries)} if countries else {}
    variables = {"w": window.value, "c": countries, "asOf": as_of.isoformat()}
    for threshold in thresholds:
        params = {"time_window": window.value, "as_of": as_of.isoformat(), **filters}
        body = client.get("/v1/flows", params={**params, "threshold": threshold}).json()
        flows = rest_flows(body)
        assert_flows_match(flows, expected, threshold)
        assert_stats_match(rest_stats(body["metadata"]), stats)
        graph = client.post(
            "/graphql", json={"query": FLOWS_QUERY, "variables": {**variables, "t": threshold}}
        ).json()
        assert "errors" not in graph, graph
        assert graphql_flows(graph["data"]["flows"]) == flows
        assert graphql_stats(graph["data"]["flowStats"]) == rest_stats(body["metadata"])
        if threshold == thresholds[0]:
            first = flows
    params = {"time_window": window.value, "as_of": as_of.isoformat(), **filters}
    hot = rest_hotspots(client.get("/v1/hotspots", params=params).json())
    reference = naive_hotspots(aggregates) if aggregates else {}
    if wanted is not None:
        reference = {c: h for c, h in reference.items() if c in wanted}
    assert_hotspots_match(hot, reference)
    order = [(-h.intensity, h.country) for h in hot]
    assert order == sorted(order)
    graph = client.post("/graphql", json={"query": HOTSPOTS_QUERY, "variables": variables}).json()
    assert "errors" not in graph, graph
    assert graphql_hotspots(graph["data"]["hotspots"]) == hot
    return first, hot
