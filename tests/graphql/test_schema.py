"""The GraphQL API end to end, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.http.app import create_app
from tests.support.factories import AS_OF, as_input, make_settings, record, write_headers

INGEST = """
mutation Ingest($trends: [TrendInput!]!) {
  ingestTrends(trends: $trends) { received inserted updated unchanged }
}
"""


def gql(
    client: TestClient, query: str, variables: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    response = client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def seed(client: TestClient) -> None:
    records = []
    for topic, n in [("World Cup", 50), ("Election", 30)]:
        records.append(record("US", topic, hours_ago=4, count=n, sources=["https://x.test/a"]))
        records.append(record("CO", topic, hours_ago=2, count=n))
    body = gql(client, INGEST, {"trends": [as_input(r) for r in records]}, **write_headers())
    assert body["data"]["ingestTrends"] == {
        "received": 4,
        "inserted": 4,
        "updated": 0,
        "unchanged": 0,
    }


def test_ingest_is_idempotent(client: TestClient) -> None:
    seed(client)
    again = gql(
        client,
        INGEST,
        {
            "trends": [
                as_input(
                    record("US", "World Cup", hours_ago=4, count=50, sources=["https://x.test/a"])
                )
            ]
        },
        **write_headers(),
    )
    assert again["data"]["ingestTrends"]["unchanged"] == 1


def test_flows_query_asks_for_exactly_its_fields(client: TestClient) -> None:
    seed(client)
    body = gql(
        client,
        """query($asOf: DateTime) { flows(timeWindow: "24h", threshold: 0.1, asOf: $asOf) {
             fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore } }""",
        {"asOf": AS_OF.isoformat()},
    )
    assert "errors" not in body
    [flow] = body["data"]["flows"]
    assert (flow["fromCountry"], flow["toCountry"]) == ("US", "CO")
    assert flow["timeDeltaHours"] == pytest.approx(2.0)
    assert flow["sharedTopics"] == ["World Cup", "Election"]
    assert flow["heat"] == pytest.approx(flow["similarityScore"] * 0.5 ** (2 / 6))
    only_heat = gql(client, '{ flows(threshold: 0.1, asOf: "' + AS_OF.isoformat() + '") { heat } }')
    assert list(only_heat["data"]["flows"][0]) == ["heat"]


FLOW_STATS = """query($asOf: DateTime, $c: [String!]) {
  flowStats(timeWindow: "24h", asOf: $asOf, countries: $c) {
    maxHeat fromCountry toCountry pairs } }"""


def test_flow_stats_name_the_hottest_pair_whatever_the_threshold(client: TestClient) -> None:
    seed(client)
    body = gql(client, FLOW_STATS, {"asOf": AS_OF.isoformat()})
    assert "errors" not in body
    stats = body["data"]["flowStats"]
    assert (stats["fromCountry"], stats["toCountry"], stats["pairs"]) == ("US", "CO", 1)
    rest = client.get("/v1/flows", params={"as_of": AS_OF.isoformat(), "threshold": 0}).json()
    assert stats["maxHeat"] == rest["flows"][0]["heat"] == pytest.approx(0.5 ** (2 / 6))
    alone = gql(client, FLOW_STATS, {"asOf": AS_OF.isoformat(), "c": ["us"]})
    assert alone["data"]["flowStats"] == {
        "maxHeat": None,
        "fromCountry": None,
        "toCountry": None,
        "pairs": 0,
    }
    bad = gql(client, '{ flowStats(timeWindow: "2h") { pairs } }')
    assert bad["errors"][0]["extensions"]["field"] == "timeWindow"


def test_flow_stats_and_new_fields_are_described(client: TestClient) -> None:
    body = gql(
        client,
        """{ __type(name: "FlowStats") { description fields { name description } }
             __schema { queryType { fields { name description args { name description } } } } }""",
    )
    flow_stats = body["data"]["__type"]
    assert flow_stats["description"]
    assert {f["name"] for f in flow_stats["fields"]} == {
        "maxHeat",
        "fromCountry",
        "toCountry",
        "pairs",
    }
    assert all(f["description"] for f in flow_stats["fields"])
    [field] = [
        f for f in body["data"]["__schema"]["queryType"]["fields"] if f["name"] == "flowStats"
    ]
    assert field["description"]
    assert {a["name"] for a in field["args"]} == {"timeWindow", "asOf", "countries"}
    assert all(a["description"] for a in field["args"])


def test_hotspots_and_flows_expose_the_new_fields(client: TestClient) -> None:
    seed(client)
    body = gql(
        client,
        """query($asOf: DateTime) {
          hotspots(asOf: $asOf) { country intensity score volume velocity avgConfidence }
          flows(asOf: $asOf, threshold: 0) { fromCountry toCountry simultaneous } }""",
        {"asOf": AS_OF.isoformat()},
    )
    assert "errors" not in body
    rest = client.get("/v1/hotspots", params={"as_of": AS_OF.isoformat()}).json()["hotspots"]
    assert body["data"]["hotspots"] == [
        {
            "country": h["country"],
            "intensity": h["intensity"],
            "score": h["score"],
            "volume": h["volume"],
            "velocity": h["velocity"],
            "avgConfidence": h["avg_confidence"],
        }
        for h in rest
    ]
    assert body["data"]["flows"] == [
        {"fromCountry": "US", "toCountry": "CO", "simultaneous": False}
    ]


def test_rest_and_graphql_agree(client: TestClient) -> None:
    seed(client)
    rest = client.get("/v1/flows", params={"as_of": AS_OF.isoformat(), "threshold": 0.1}).json()
    graph = gql(
        client, '{ flows(threshold: 0.1, asOf: "' + AS_OF.isoformat() + '") { fromCountry heat } }'
    )["data"]["flows"]
    assert [(f["from_country"], f["heat"]) for f in rest["flows"]] == [
        (f["fromCountry"], f["heat"]) for f in graph
    ]


def test_hotspots_query(client: TestClient) -> None:
    seed(client)
    body = gql(
        client,
        """query($asOf: DateTime) { hotspots(asOf: $asOf, countries: ["co"]) {
        country intensity topicCount topTopics { label count confidence } } }""",
        {"asOf": AS_OF.isoformat()},
    )
    [co] = body["data"]["hotspots"]
    assert co["country"] == "CO"
    assert co["topicCount"] == 2
    assert co["topTopics"][0] == {"label": "World Cup", "count": 50, "confidence": 0.9}


def test_trends_connection_pages(client: TestClient) -> None:
    seed(client)
    query = """query($after: String) { trends(first: 3, after: $after) {
        totalCount pageInfo { hasNextPage endCursor hasPreviousPage }
        edges { cursor node { id timestamp country topicLabel count confidence sources } } } }"""
    first = gql(client, query)["data"]["trends"]
    assert first["totalCount"] == 4
    assert first["pageInfo"]["hasNextPage"] is True
    assert len(first["edges"]) == 3
    second = gql(client, query, {"after": first["pageInfo"]["endCursor"]})["data"]["trends"]
    assert second["pageInfo"] == {
        **second["pageInfo"],
        "hasNextPage": False,
        "hasPreviousPage": True,
    }
    ids = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    assert len(set(ids)) == 4
    us = [e["node"] for e in first["edges"] + second["edges"] if e["node"]["country"] == "US"]
    assert us[0]["sources"] == ["https://x.test/a"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ('{ flows(timeWindow: "2h") { heat } }', "timeWindow"),
        ("{ flows(threshold: 2) { heat } }", "threshold"),
        ('{ flows(countries: ["US", "XX"]) { heat } }', "countries"),
        ('{ flows(asOf: "2026-11-20T12:00:00") { heat } }', "asOf"),
        ("{ hotspots(limit: 0) { country } }", "limit"),
        ("{ trends(first: 5000) { totalCount } }", "first"),
        ('{ trends(after: "zzz") { totalCount } }', "after"),
    ],
)
def test_bad_arguments_are_domain_errors(client: TestClient, query: str, field: str) -> None:
    body = gql(client, query)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "invalid_parameter"
    assert error["extensions"]["status"] == 400
    assert error["extensions"]["field"] == field
    assert error["message"].startswith(field)


def test_ingest_needs_the_write_key(client: TestClient) -> None:
    body = gql(client, INGEST, {"trends": [as_input(record())]})
    assert body["errors"][0]["extensions"]["code"] == "unauthenticated"
    wrong = gql(client, INGEST, {"trends": [as_input(record())]}, Authorization="Bearer no")
    assert wrong["errors"][0]["extensions"]["status"] == 401
    assert client.get("/v1/trends").json()["total_count"] == 0


def test_bad_record_rejects_the_batch_with_its_index(client: TestClient) -> None:
    batch = [as_input(record("US", "ok")), as_input(record("US", "bad", confidence=1.5))]
    body = gql(client, INGEST, {"trends": batch}, **write_headers())
    [error] = body["errors"]
    assert error["extensions"]["code"] == "invalid_records"
    assert error["extensions"]["errors"][0]["trends"] == 1
    assert error["extensions"]["errors"][0]["field"] == "confidence"
    naive = dict(as_input(record()), timestamp="2026-11-20T10:00:00")
    body = gql(client, INGEST, {"trends": [naive]}, **write_headers())
    assert body["errors"][0]["extensions"]["errors"][0]["field"] == "timestamp"
    assert client.get("/v1/trends").json()["total_count"] == 0


def test_database_down_is_a_domain_error(tmp_path: Any) -> None:
    settings = make_settings(
        "postgresql://postgres@127.0.0.1:1/none", auto_migrate=False, db_connect_timeout_seconds=1
    )
    with TestClient(create_app(settings)) as client:
        body = gql(client, "{ flows { heat } }")
        assert body["errors"][0]["extensions"]["code"] == "dependency_unavailable"
        bad_syntax = gql(client, "{ flows { heat ")
        assert "Syntax Error" in bad_syntax["errors"][0]["message"]


def test_unexpected_errors_are_masked(schemaless_postgres_url: str) -> None:
    """A database without the schema raises a non-domain error: masked, never shown."""
    settings = make_settings(schemaless_postgres_url, auto_migrate=False)
    with TestClient(create_app(settings)) as client:
        body = gql(client, "{ flows { heat } }")
        [error] = body["errors"]
        assert error["message"] == "Unexpected error."
        assert "trends_archive" not in str(body)
        rest = client.get("/v1/flows")
        assert rest.status_code == 500
        assert rest.json()["error"] == "internal_error"
        assert "trends_archive" not in rest.text and "Traceback" not in rest.text


def test_graphql_over_get(client: TestClient) -> None:
    response = client.get("/graphql", params={"query": "{ hotspots { country } }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"hotspots": []}}


def test_a_truncated_answer_says_so(database_url: str) -> None:
    """Beyond MAX_FLOWS the answer is cut, and both APIs say so in their warnings."""
    with TestClient(create_app(make_settings(database_url, max_flows=1))) as client:
        client.post(
            "/v1/trends",
            json=[record(c, "Shared", hours_ago=h) for c, h in [("US", 3), ("BR", 2), ("CO", 1)]],
            headers=write_headers(),
        )
        params = {"as_of": AS_OF.isoformat(), "threshold": 0}
        rest = client.get("/v1/flows", params=params).json()
        assert len(rest["flows"]) == 1
        assert rest["warnings"] and "truncated: 3 flows" in rest["warnings"][0]
        query = '{ flows(threshold: 0, asOf: "' + AS_OF.isoformat() + '") { heat } }'
        body = gql(client, query)
        assert len(body["data"]["flows"]) == 1
        assert "truncated: 3 flows" in body["extensions"]["warnings"][0]
        limited = gql(client, query.replace("threshold: 0,", "threshold: 0, limit: 1,"))
        assert "extensions" not in limited or not limited["extensions"].get("warnings")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(b"{", 400, "bad_request"), (b"[1, 2]", 400, "bad_request"), (b'"x"', 400, "bad_request")],
)
def test_unreadable_graphql_requests_are_graphql_errors(
    client: TestClient, body: bytes, status: int, code: str
) -> None:
    response = client.post(
        "/graphql", content=body, headers={"content-type": "application/json", "X-Request-ID": "g1"}
    )
    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": code, "status": status}
    assert response.headers["x-request-id"] == "g1"
    assert client.put("/graphql").json()["error"] == "method_not_allowed"


def test_argument_names_are_strawberrys_worked_out_once() -> None:
    from strawberry.schema.name_converter import NameConverter

    from graph.graphql.schema import ArgumentNames, make_schema
    from graph.settings import Settings

    schema = make_schema(Settings())
    names = schema.config.name_converter
    assert isinstance(names, ArgumentNames)
    arguments = [
        argument
        for definition in (schema.query, schema.mutation, schema.subscription)
        for field in definition.__strawberry_definition__.fields  # type: ignore[union-attr]
        for argument in field.arguments
    ]
    assert len(arguments) > 20
    plain = NameConverter()
    for argument in arguments:
        first = names.from_argument(argument)
        assert first == plain.from_argument(argument)
        assert names.from_argument(argument) is first  # kept, not camel-cased again
    assert "timeWindow" in {names.from_argument(a) for a in arguments}
