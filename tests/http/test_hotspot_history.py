"""hotspotHistory end to end, on SQLite and PostgreSQL: every point equals the single-as_of
hotspot answer for that country (REST and GraphQL alike); bad input is a 400 naming the field."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.core.records import topic_key
from tests.support.factories import AS_OF, record, write_headers

ISO_AS_OF = AS_OF.isoformat()
COUNTRIES = ["US", "BR", "JP"]
LABELS = ["World Cup", "world  cup", "Election", "Oscars", "100% Sale"]
FIGURES = ("score", "volume", "velocity", "avg_confidence", "topic_count")

HISTORY = """
query History($country: String!, $w: String!, $since: DateTime, $until: DateTime, $step: String) {
  hotspotHistory(country: $country, timeWindow: $w, since: $since, until: $until, step: $step) {
    asOf score volume velocity avgConfidence topicCount
  }
}"""


def seeded(client: TestClient, seed: int = 11) -> None:
    """Random records over the 40 hours before AS_OF, some exactly on whole hours."""
    rng = random.Random(seed)
    records, seen = [], set()
    for _ in range(90):
        hours = rng.choice([rng.uniform(0, 40), float(rng.randint(0, 40))])
        r = record(
            rng.choice(COUNTRIES),
            rng.choice(LABELS),
            hours_ago=round(hours, 2),
            count=rng.randint(1, 40),
            confidence=round(rng.random(), 3),
        )
        natural = (r["country"], topic_key(r["topic_label"]), r["timestamp"])
        if natural not in seen:
            seen.add(natural)
            records.append(r)
    response = client.post("/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200, response.text


def history(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get("/v1/hotspots/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def single(client: TestClient, country: str, window: str, as_of: str) -> dict[str, Any]:
    """The country's figures in the hotspots answer at one instant (zeros when absent)."""
    params = {"time_window": window, "as_of": as_of, "countries": country}
    response = client.get("/v1/hotspots", params=params)
    assert response.status_code == 200, response.text
    rows = response.json()["hotspots"]
    if not rows:
        return dict.fromkeys(FIGURES, 0)
    return {name: rows[0][name] for name in FIGURES}


def approx(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: pytest.approx(v, rel=1e-9, abs=1e-12) for k, v in figures.items()}


@pytest.mark.parametrize(("window", "step", "hours"), [("6h", "1h", 30), ("1h", "1h", 40)])
def test_every_point_equals_the_single_as_of_answer(
    client: TestClient, window: str, step: str, hours: int
) -> None:
    seeded(client)
    since = (AS_OF - timedelta(hours=hours)).isoformat()
    for country in COUNTRIES:
        params = {"country": country.lower(), "time_window": window, "step": step}
        body = history(client, **params, since=since, until=ISO_AS_OF)
        points = body["hotspot_history"]
        assert len(points) == hours + 1 == body["metadata"]["point_count"]
        assert points[0]["as_of"] == since and points[-1]["as_of"] == ISO_AS_OF
        assert any(p["volume"] > 0 for p in points)
        for point in points:
            want = single(client, country, window, point["as_of"])
            assert {k: point[k] for k in FIGURES} == approx(want), point["as_of"]
        variables = {"country": country, "w": window, "since": since, "until": ISO_AS_OF}
        variables["step"] = step
        graphql = client.post("/graphql", json={"query": HISTORY, "variables": variables})
        got = graphql.json()["data"]["hotspotHistory"]
        assert len(got) == len(points)
        for g, p in zip(got, points, strict=True):
            camel = (g["score"], g["volume"], g["velocity"], g["avgConfidence"], g["topicCount"])
            assert camel == tuple(p[k] for k in FIGURES)
            assert datetime.fromisoformat(g["asOf"]) == datetime.fromisoformat(p["as_of"])
    # The step defaults to the window.
    default = history(client, country="US", time_window=window, since=since, until=ISO_AS_OF)
    assert len(default["hotspot_history"]) == hours // int(window[:-1]) + 1


def test_a_longer_step_and_a_country_without_data(client: TestClient) -> None:
    seeded(client)
    since = (AS_OF - timedelta(hours=48)).isoformat()
    body = history(client, country="BR", time_window="6h", step="12h", since=since, until=ISO_AS_OF)
    assert len(body["hotspot_history"]) == 5  # since, +12h, ... up to AS_OF
    meta = body["metadata"]
    assert (meta["country"], meta["time_window"], meta["step"]) == ("BR", "6h", "12h")
    empty = history(client, country="FR", since=since, until=ISO_AS_OF)["hotspot_history"]
    assert [p["volume"] for p in empty] == [0, 0, 0]
    assert all(p["score"] == p["velocity"] == p["topic_count"] == 0 for p in empty)


def test_defaults_are_the_seven_days_before_now(client: TestClient) -> None:
    now = datetime.now(UTC)
    client.post("/v1/trends", json=[record("US", "Marathon", as_of=now)], headers=write_headers())
    body = history(client, country="US")
    meta = body["metadata"]
    since, until = (datetime.fromisoformat(meta[k]) for k in ("since", "until"))
    assert until - since == timedelta(days=7)
    assert abs(until - now) < timedelta(minutes=1)
    assert len(body["hotspot_history"]) == 8  # 24h steps over seven days, both ends
    assert body["hotspot_history"][-1]["volume"] == 10


def test_answers_are_cached_until_the_next_ingest(client: TestClient) -> None:
    seeded(client)
    params = {"country": "US", "until": ISO_AS_OF, "step": "6h"}
    first, second = (history(client, **params) for _ in range(2))
    assert (first["metadata"]["cache_hit"], second["metadata"]["cache_hit"]) == (False, True)
    assert first["hotspot_history"] == second["hotspot_history"]
    client.post("/v1/trends", json=[record("US", "Fresh", hours_ago=0)], headers=write_headers())
    third = history(client, **params)
    assert third["metadata"]["cache_hit"] is False
    assert third["hotspot_history"][-1]["volume"] == first["hotspot_history"][-1]["volume"] + 10


BAD = [
    ({}, "country"),
    ({"country": ""}, "country"),
    ({"country": "XX"}, "country"),
    ({"country": "U\x00S"}, "country"),
    ({"country": "US,BR"}, "country"),
    ({"country": "US", "time_window": "2h"}, "time_window"),
    ({"country": "US", "step": "30m"}, "step"),
    ({"country": "US", "step": ""}, "step"),
    ({"country": "US", "step": "1h\x00"}, "step"),
    ({"country": "US", "since": "yesterday"}, "since"),
    ({"country": "US", "until": "2026-11-20T12:00:00"}, "until"),
    ({"country": "US", "since": "2026-11-20T12:00:01Z", "until": ISO_AS_OF}, "since"),
    ({"country": "US", "since": "9999-01-01T00:00:00Z"}, "since"),  # after now
    ({"country": "US", "since": "2026-10-01T00:00:00Z", "until": ISO_AS_OF, "step": "1h"}, "step"),
    ({"country": "US", "since": "2020-01-01T00:00:00Z"}, "since"),  # 500+ days to now, no step
]


@pytest.mark.parametrize(("params", "field"), BAD)
def test_bad_input_is_a_400_naming_the_field(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get("/v1/hotspots/history", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid_parameter", field)
    assert set(body) >= {"detail", "request_id", "timestamp"}


def test_five_hundred_points_pass_and_501_do_not(client: TestClient) -> None:
    since = AS_OF - timedelta(hours=499)
    ok = history(client, country="US", since=since.isoformat(), until=ISO_AS_OF, step="1h")
    assert len(ok["hotspot_history"]) == 500
    too_many = (since - timedelta(hours=1)).isoformat()
    params = {"country": "US", "since": too_many, "until": ISO_AS_OF, "step": "1h"}
    response = client.get("/v1/hotspots/history", params=params)
    assert response.status_code == 400 and response.json()["field"] == "step"
    assert "501 points" in response.json()["detail"]


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"country": "XX", "w": "24h"}, "country"),
        ({"country": "a\x00", "w": "24h"}, "country"),
        ({"country": "US", "w": "2h"}, "timeWindow"),
        ({"country": "US", "w": "24h", "step": "2d"}, "step"),
        (
            {"country": "US", "w": "24h", "since": ISO_AS_OF, "until": "2026-11-19T00:00:00Z"},
            "since",
        ),
        (
            {"country": "US", "w": "1h", "since": "2026-01-01T00:00:00Z", "until": ISO_AS_OF},
            "since",
        ),
        ({"country": "US", "w": "24h", "since": "2026-10-01T00:00:00Z", "step": "1h"}, "step"),
    ],
)
def test_graphql_refuses_the_same_input(
    client: TestClient, variables: dict[str, Any], field: str
) -> None:
    response = client.post("/graphql", json={"query": HISTORY, "variables": variables})
    body = response.json()
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["extensions"]["status"] == 400
    assert error["extensions"]["field"] == field
