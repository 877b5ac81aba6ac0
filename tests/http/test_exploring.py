"""dataSpan, topics and topicSpread end to end, on SQLite and PostgreSQL: REST and GraphQL
agree with each other and with a naive computation from the raw records; bad input is a 400
naming the field (GraphQL: ``extensions.field``); an unseen topic is a 404."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.core.records import topic_key
from tests.support.factories import AS_OF, record, write_headers

ISO_AS_OF = AS_OF.isoformat()
LABELS = ["World Cup", "world  cup", "WORLD CUP ", "Election", "election", "Oscars", "100% Sale"]
COUNTRIES = ["US", "BR", "CO", "JP", "DE"]
WINDOWS = {"1h": 1, "6h": 6, "12h": 12, "24h": 24}

SPAN = "{ dataSpan { first last records countries } }"
TOPICS = """
query Topics($w: String!, $asOf: DateTime, $countries: [String!], $search: String, $limit: Int!) {
  topics(timeWindow: $w, asOf: $asOf, countries: $countries, search: $search, limit: $limit) {
    key label count countryCount countries firstSeen
  }
}"""
SPREAD = """
query Spread($topic: String!, $since: DateTime, $until: DateTime) {
  topicSpread(topic: $topic, since: $since, until: $until) {
    key label countries { country firstSeen lastSeen count confidence }
  }
}"""


def seeded(client: TestClient, seed: int = 7) -> list[dict[str, Any]]:
    """Random records (natural keys unique) through REST, some exactly on window bounds."""
    rng = random.Random(seed)
    records, seen = [], set()
    for _ in range(80):
        hours = rng.choice([rng.uniform(0, 30), 0.0, 1.0, 6.0, 24.0])
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
    return records


def moment(r: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(r["timestamp"])


def naive_topics(
    records: list[dict[str, Any]],
    hours: int,
    as_of: datetime,
    countries: set[str] | None = None,
    search: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    inside = [r for r in records if as_of - timedelta(hours=hours) < moment(r) <= as_of]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in inside:
        by_key.setdefault(topic_key(r["topic_label"]), []).append(r)
    answer = []
    for key, group in by_key.items():
        if search is not None and topic_key(search) not in key:
            continue
        chosen = [r for r in group if countries is None or r["country"] in countries]
        if not chosen:
            continue
        first, label = min((moment(r), r["topic_label"].strip()) for r in group)
        codes = sorted({r["country"] for r in chosen})
        answer.append(
            {
                "key": key,
                "label": label,
                "count": sum(r["count"] for r in chosen),
                "country_count": len(codes),
                "countries": codes,
                "first_seen": first,
            }
        )
    answer.sort(key=lambda t: (-t["country_count"], -t["count"], t["label"]))
    return answer[:limit]


def naive_spread(
    records: list[dict[str, Any]], key: str, since: datetime, until: datetime
) -> dict[str, Any]:
    group = [
        r for r in records if topic_key(r["topic_label"]) == key and since <= moment(r) <= until
    ]
    countries = []
    for code in {r["country"] for r in group}:
        mine = [r for r in group if r["country"] == code]
        total = sum(r["count"] for r in mine)
        countries.append(
            {
                "country": code,
                "first_seen": min(moment(r) for r in mine),
                "last_seen": max(moment(r) for r in mine),
                "count": total,
                "confidence": pytest.approx(
                    sum(r["count"] * r["confidence"] for r in mine) / total
                ),
            }
        )
    countries.sort(key=lambda c: (c["first_seen"], c["country"]))
    label = min((moment(r), r["topic_label"].strip()) for r in group)[1]
    return {"key": key, "label": label, "countries": countries}


def snake(item: Any) -> Any:
    """GraphQL's camelCase answer in REST's snake_case, timestamps as datetimes."""
    if isinstance(item, list):
        return [snake(i) for i in item]
    if not isinstance(item, dict):
        return item
    out = {}
    for name, value in item.items():
        name = {"countryCount": "country_count", "firstSeen": "first_seen"}.get(name, name)
        name = {"lastSeen": "last_seen"}.get(name, name)
        out[name] = snake(value)
    return out


def timed(item: Any) -> Any:
    """REST JSON with its timestamps as datetimes."""
    if isinstance(item, list):
        return [timed(i) for i in item]
    if isinstance(item, dict):
        return {
            k: datetime.fromisoformat(v) if k in TIMES and v is not None else timed(v)
            for k, v in item.items()
        }
    return item


TIMES = {"first_seen", "last_seen", "first", "last"}


def gql(client: TestClient, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_data_span_counts_the_archive(client: TestClient) -> None:
    empty = client.get("/v1/span").json()["data_span"]
    assert empty == {"first": None, "last": None, "records": 0, "countries": 0}
    records = seeded(client)
    expected = {
        "first": min(moment(r) for r in records),
        "last": max(moment(r) for r in records),
        "records": len(records),
        "countries": len({r["country"] for r in records}),
    }
    rest = client.get("/v1/span").json()
    assert timed(rest["data_span"]) == expected
    assert rest["metadata"]["cache_hit"] is False  # the ingest retired the empty answer
    assert timed(snake(gql(client, SPAN)["data"]["dataSpan"])) == expected


@pytest.mark.parametrize("window", list(WINDOWS))
def test_topics_match_the_naive_model_in_both_apis(client: TestClient, window: str) -> None:
    records = seeded(client)
    cases: list[dict[str, Any]] = [
        {},
        {"countries": ["br", "US"]},
        {"search": " CUP"},
        {"search": "% s", "limit": 1},
        {"countries": ["JP"], "search": "e", "limit": 3},
    ]
    for as_of in (AS_OF, AS_OF - timedelta(hours=6), AS_OF - timedelta(hours=24)):
        for case in cases:
            limit = case.get("limit", 20)
            wanted = {c.upper() for c in case["countries"]} if "countries" in case else None
            expected = naive_topics(
                records, WINDOWS[window], as_of, wanted, case.get("search"), limit
            )
            params = {"time_window": window, "as_of": as_of.isoformat(), **case}
            if "countries" in case:
                params["countries"] = ",".join(case["countries"])
            rest = client.get("/v1/topics", params=params)
            assert rest.status_code == 200, rest.text
            assert timed(rest.json()["topics"]) == expected, (as_of, case)
            assert rest.json()["metadata"]["topic_count"] == len(expected)
            variables = {"w": window, "asOf": as_of.isoformat(), "limit": limit}
            variables |= {k: v for k, v in case.items() if k != "limit"}
            body = gql(client, TOPICS, **variables)
            assert timed(snake(body["data"]["topics"])) == expected, (as_of, case)


def test_topic_spread_matches_the_naive_model_in_both_apis(client: TestClient) -> None:
    records = seeded(client)
    since, until = AS_OF - timedelta(hours=20), AS_OF - timedelta(hours=1)
    for topic in ("world cup", "ELECTION ", "oscars", "100%   sale"):
        expected = naive_spread(records, topic_key(topic), since, until)
        params = {"topic": topic, "since": since.isoformat(), "until": until.isoformat()}
        rest = client.get("/v1/topics/spread", params=params)
        assert rest.status_code == 200, rest.text
        assert timed(rest.json()["topic_spread"]) == expected
        assert rest.json()["metadata"]["since"] == since.isoformat()
        body = gql(client, SPREAD, topic=topic, since=since.isoformat(), until=until.isoformat())
        assert timed(snake(body["data"]["topicSpread"])) == expected


def test_spread_defaults_to_the_last_seven_days(client: TestClient) -> None:
    now = datetime.now(UTC)
    old, recent = (record("US", "Marathon", hours_ago=h, as_of=now) for h in (8 * 24, 2))
    recent_br = record("BR", "marathon", hours_ago=1, as_of=now)
    client.post("/v1/trends", json=[old, recent, recent_br], headers=write_headers())
    body = client.get("/v1/topics/spread", params={"topic": "marathon"}).json()
    assert [c["country"] for c in body["topic_spread"]["countries"]] == ["US", "BR"]
    assert body["topic_spread"]["countries"][0]["count"] == 10  # the old record is out
    span = datetime.fromisoformat(body["metadata"]["until"]) - datetime.fromisoformat(
        body["metadata"]["since"]
    )
    assert span == timedelta(days=7)


def test_answers_are_cached_until_the_next_ingest(client: TestClient) -> None:
    seeded(client)
    params = {"as_of": ISO_AS_OF, "search": "cup"}
    first, second = (client.get("/v1/topics", params=params).json() for _ in range(2))
    assert (first["metadata"]["cache_hit"], second["metadata"]["cache_hit"]) == (False, True)
    assert first["topics"] == second["topics"]
    client.post("/v1/trends", json=[record("DE", "World Cup")], headers=write_headers())
    third = client.get("/v1/topics", params=params).json()
    assert third["metadata"]["cache_hit"] is False
    assert "DE" in third["topics"][0]["countries"]


def test_an_unseen_topic_is_a_404_in_rest_and_null_in_graphql(client: TestClient) -> None:
    seeded(client)
    params = {"topic": "World Cup", "until": (AS_OF - timedelta(days=30)).isoformat()}
    for _ in range(2):  # the second answer comes from the cache: still a 404
        rest = client.get("/v1/topics/spread", params=params)
        assert rest.status_code == 404
        assert set(rest.json()) >= {"error", "detail", "request_id", "timestamp"}
    body = gql(client, SPREAD, topic="never seen")
    assert body == {"data": {"topicSpread": None}}  # GraphQL: null, not an error


def test_a_404_for_a_topic_names_the_span_and_how_to_reach_older_records(
    client: TestClient,
) -> None:
    """A user of the real archive asks for a topic from a month ago without a span: the 404
    says which span was searched, that it was the default, and where the archive's span is."""
    now = datetime.now(UTC)
    client.post(
        "/v1/trends",
        json=[record("US", "Marathon", hours_ago=30 * 24, as_of=now)],
        headers=write_headers(),
    )
    detail = client.get("/v1/topics/spread", params={"topic": "marathon"}).json()["detail"]
    assert "'marathon'" in detail and "the last 7 days" in detail and "/v1/span" in detail
    until = (now - timedelta(days=60)).replace(microsecond=0)
    params = {"topic": "marathon", "until": until.isoformat()}
    detail = client.get("/v1/topics/spread", params=params).json()["detail"]
    assert until.isoformat() in detail and "last 7 days" not in detail


LONG = "x" * 10_000
BAD_TOPICS = [
    ({"time_window": "2h"}, "time_window"),
    ({"time_window": ""}, "time_window"),
    ({"as_of": "yesterday"}, "as_of"),
    ({"as_of": "2026-11-20T12:00:00"}, "as_of"),
    ({"countries": "US,XX"}, "countries"),
    ({"countries": "U\x00S"}, "countries"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": ""}, "limit"),
    ({"search": ""}, "search"),
    ({"search": "   "}, "search"),
    ({"search": "cup\x00"}, "search"),
    ({"search": LONG}, "search"),
    ({"search": "y" * 201}, "search"),
]
BAD_SPREADS = [
    ({}, "topic"),
    ({"topic": ""}, "topic"),
    ({"topic": " \t "}, "topic"),
    ({"topic": "a\x00b"}, "topic"),
    ({"topic": LONG}, "topic"),
    ({"topic": "cup", "since": "2026-13-01T00:00:00Z"}, "since"),
    ({"topic": "cup", "until": "soon"}, "until"),
    ({"topic": "cup", "since": "2026-11-20T12:00:01Z", "until": ISO_AS_OF}, "since"),
    ({"topic": "cup", "since": "9999-01-01T00:00:00Z"}, "since"),  # after now
]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        *(("/v1/topics", p, f) for p, f in BAD_TOPICS),
        *(("/v1/topics/spread", p, f) for p, f in BAD_SPREADS),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid_parameter", field)
    assert set(body) >= {"detail", "request_id", "timestamp"}


GRAPHQL_BAD = [
    (TOPICS, {"w": "2h", "limit": 20}, "timeWindow"),
    (TOPICS, {"w": "24h", "asOf": "2026-11-20T12:00:00", "limit": 20}, None),
    (TOPICS, {"w": "24h", "countries": ["XX"], "limit": 20}, "countries"),
    (TOPICS, {"w": "24h", "limit": 0}, "limit"),
    (TOPICS, {"w": "24h", "limit": "ten"}, None),  # refused by GraphQL's own coercion
    (TOPICS, {"w": "24h", "search": "", "limit": 20}, "search"),
    (TOPICS, {"w": "24h", "search": LONG, "limit": 20}, "search"),
    (TOPICS, {"w": "24h", "search": "a\x00", "limit": 20}, "search"),
    (SPREAD, {"topic": ""}, "topic"),
    (SPREAD, {"topic": "a\x00"}, "topic"),
    (SPREAD, {"topic": "cup", "since": ISO_AS_OF, "until": "2026-11-19T00:00:00Z"}, "since"),
]


@pytest.mark.parametrize(("query", "variables", "field"), GRAPHQL_BAD)
def test_graphql_refuses_the_same_input(
    client: TestClient, query: str, variables: dict[str, Any], field: str | None
) -> None:
    body = gql(client, query, **variables)
    assert body.get("data") in (None, {"topics": None}, {"topicSpread": None})
    [error] = body["errors"]
    if field is not None:
        assert error["extensions"]["status"] == 400
        assert error["extensions"]["field"] == field
