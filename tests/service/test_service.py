"""Flows and hotspots through the whole stack equal DESIGN.md's definitions.

Random records that nobody tuned go in through REST; answers come out of REST and GraphQL,
for every window, several as_of points, with and without a country filter, on SQLite and
PostgreSQL. They are compared with a naive model computed straight from the raw records.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.core.flows import Flow
from graph.core.hotspots import Hotspot, TopTopic
from graph.core.windows import Span, TimeWindow
from tests.support.factories import write_headers
from tests.support.reference import (
    assert_flows_match,
    assert_hotspots_match,
    naive_flows,
    naive_hotspots,
    naive_window,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
COUNTRIES = ["AR", "BR", "CO", "DE", "JP", "US"]
LABELS = [
    "World Cup",
    "world cup",
    "Storm",
    "Election",
    "Anime",
    "Bitcoin",
    "Oscars",
    "Strike",
    "Eclipse",
    "Marathon",
    "Budget",
    "Derby",
    "Festival",
    "Flu",
    "Heatwave",
]


def random_records(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(350):
        moment = T0 + timedelta(minutes=rng.randrange(0, 48 * 60), seconds=rng.randrange(60))
        out.append(
            {
                "timestamp": moment.isoformat(),
                "country": rng.choice(COUNTRIES).lower(),
                "topic_label": rng.choice(LABELS),
                "count": rng.randint(1, 1000),
                "confidence": round(rng.random(), 4),
                "sources": None,
            }
        )
    return out


def rest_flows(body: dict[str, Any]) -> list[Flow]:
    return [
        Flow(
            from_country=f["from_country"],
            to_country=f["to_country"],
            heat=f["heat"],
            similarity_score=f["similarity_score"],
            time_delta_hours=f["time_delta_hours"],
            shared_topics=tuple(f["shared_topics"]),
        )
        for f in body["flows"]
    ]


def graphql_flows(data: list[dict[str, Any]]) -> list[Flow]:
    return [
        Flow(
            from_country=f["fromCountry"],
            to_country=f["toCountry"],
            heat=f["heat"],
            similarity_score=f["similarityScore"],
            time_delta_hours=f["timeDeltaHours"],
            shared_topics=tuple(f["sharedTopics"]),
        )
        for f in data
    ]


def rest_hotspots(body: dict[str, Any]) -> list[Hotspot]:
    return [
        Hotspot(
            h["country"],
            h["intensity"],
            h["topic_count"],
            h["volume"],
            h["velocity"],
            h["avg_confidence"],
            tuple(TopTopic(t["label"], t["count"], t["confidence"]) for t in h["top_topics"]),
        )
        for h in body["hotspots"]
    ]


FLOWS_QUERY = """query($w: String!, $c: [String!], $t: Float, $asOf: DateTime) {
  flows(timeWindow: $w, countries: $c, threshold: $t, asOf: $asOf) {
    fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore } }"""


@pytest.mark.parametrize("seed", [11, 29])
def test_answers_equal_the_definitions(client: TestClient, seed: int) -> None:
    records = random_records(seed)
    response = client.post("/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200
    halflife = 6.0
    checked_flows = 0
    for as_of in (
        T0 + timedelta(hours=20),
        T0 + timedelta(hours=36, minutes=17),
        T0 + timedelta(hours=48),
    ):
        for window in TimeWindow:
            aggregates = naive_window(records, Span(window, as_of))
            for countries in (None, ["BR", "co", "US", "JP"]):
                wanted = {c.upper() for c in countries} if countries else None
                for threshold in (0.0, 0.3):
                    params: dict[str, Any] = {
                        "time_window": window.value,
                        "as_of": as_of.isoformat(),
                        "threshold": threshold,
                    }
                    if countries:
                        params["countries"] = ",".join(countries)
                    expected = naive_flows(aggregates, halflife, wanted)
                    body = client.get("/v1/flows", params=params).json()
                    assert_flows_match(rest_flows(body), expected, threshold)
                    graph = client.post(
                        "/graphql",
                        json={
                            "query": FLOWS_QUERY,
                            "variables": {
                                "w": window.value,
                                "c": countries,
                                "t": threshold,
                                "asOf": as_of.isoformat(),
                            },
                        },
                    ).json()
                    assert graph["data"]["flows"] == [
                        {
                            "fromCountry": f.from_country,
                            "toCountry": f.to_country,
                            "heat": f.heat,
                            "sharedTopics": list(f.shared_topics),
                            "timeDeltaHours": f.time_delta_hours,
                            "similarityScore": f.similarity_score,
                        }
                        for f in rest_flows(body)
                    ]
                    checked_flows += len(body["flows"])
                hot = client.get(
                    "/v1/hotspots",
                    params={
                        "time_window": window.value,
                        "as_of": as_of.isoformat(),
                        **({"countries": ",".join(countries)} if countries else {}),
                    },
                ).json()
                reference = naive_hotspots(aggregates) if aggregates else {}
                if wanted is not None:
                    reference = {c: h for c, h in reference.items() if c in wanted}
                assert_hotspots_match(rest_hotspots(hot), reference)
                order = [(-h["intensity"], h["country"]) for h in hot["hotspots"]]
                assert order == sorted(order)
    assert checked_flows > 50, "the data should give flows to compare"
