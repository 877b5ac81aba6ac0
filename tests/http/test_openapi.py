"""/openapi.json: what it publishes is what the running app enforces."""

from __future__ import annotations

import re
from typing import Any

from tests.support.factories import record, write_headers


def parameter(document: Any, path: str, name: str) -> Any:
    [found] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    return found


def test_the_published_maxima_are_the_settings(app_with: Any) -> None:
    client = app_with(max_flows=50, max_page_size=20, flow_threshold=0.25)
    document = client.get("/openapi.json").json()
    for path in ("/v1/flows", "/v1/flows.geojson"):
        assert parameter(document, path, "limit")["schema"]["maximum"] == 50
        assert "0.25" in parameter(document, path, "threshold")["description"]
    assert parameter(document, "/v1/trends", "first")["schema"]["maximum"] == 20
    # And the app does refuse what the document says is out of range.
    assert client.get("/v1/flows", params={"limit": 51}).status_code == 400
    assert client.get("/v1/flows", params={"limit": 50}).status_code == 200
    assert client.get("/v1/trends", params={"first": 21}).status_code == 400


def test_two_apps_publish_their_own_maxima(app_with: Any) -> None:
    low = app_with(max_flows=5).get("/openapi.json").json()
    default = app_with().get("/openapi.json").json()
    assert parameter(low, "/v1/flows", "limit")["schema"]["maximum"] == 5
    assert parameter(default, "/v1/flows", "limit")["schema"]["maximum"] == 10_000


def test_a_record_the_document_describes_is_accepted(app_with: Any) -> None:
    client = app_with()
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TrendIn"]
    sample = record("US", "Alpha")
    assert set(schema["required"]) <= set(sample)
    assert set(sample) <= set(schema["properties"])
    response = client.post("/v1/trends", json=[sample], headers=write_headers())
    assert response.status_code == 200


def test_flows_and_hotspots_schemas_name_every_field_the_api_sends(app_with: Any) -> None:
    client = app_with()
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["Flow"]["properties"]) == {
        "from_country",
        "to_country",
        "heat",
        "shared_topics",
        "time_delta_hours",
        "similarity_score",
        "simultaneous",
    }
    assert set(schemas["Flow"]["required"]) == set(schemas["Flow"]["properties"])
    assert set(schemas["Hotspot"]["properties"]) >= {
        "country",
        "intensity",
        "score",
        "volume",
        "velocity",
        "avg_confidence",
        "top_topics",
    }
    assert {"max_heat", "pairs"} <= set(schemas["Metadata"]["properties"])
    assert set(schemas["TopTopic"]["properties"]) == {"label", "count", "confidence"}


COUNTRY_VALUES = ["US", "us,br", " Us , ,BR ", "", "00", "XX", "USA", "US;BR", "U"]


def test_the_countries_pattern_is_what_the_server_accepts(app_with: Any) -> None:
    """Schemathesis ST202: a value the document allows must not be refused, and the other way
    round. Every REST parameter named countries has the one pattern."""
    client = app_with()
    document = client.get("/openapi.json").json()
    patterns = {
        parameter(document, path, "countries")["schema"]["pattern"]
        for path in ("/v1/flows", "/v1/hotspots", "/v1/trends", "/v1/topics")
    }
    [pattern] = patterns
    for value in COUNTRY_VALUES:
        allowed = re.fullmatch(pattern, value) is not None
        status = client.get("/v1/hotspots", params={"countries": value}).status_code
        assert (status == 200) == allowed, (value, status)


def test_a_record_country_the_schema_allows_is_accepted(app_with: Any) -> None:
    client = app_with()
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TrendIn"]
    pattern = schema["properties"]["country"]["pattern"]
    for value in ["US", "br", " co ", "00", "XX", "USA", "U"]:
        allowed = re.fullmatch(pattern, value) is not None
        body = [record(value, "Alpha")]
        status = client.post("/v1/trends", json=body, headers=write_headers()).status_code
        assert (status == 200) == allowed, (value, status)


def test_an_empty_cursor_is_page_one(app_with: Any) -> None:
    client = app_with()
    body = [record("US", f"Topic {n}", hours_ago=n) for n in range(1, 4)]
    assert client.post("/v1/trends", json=body, headers=write_headers()).status_code == 200
    page_one = client.get("/v1/trends", params={"first": 2}).json()
    empty = client.get("/v1/trends", params={"first": 2, "after": ""})
    assert empty.status_code == 200, empty.text
    assert empty.json()["trends"] == page_one["trends"]
    query = '{ trends(first: 2, after: "") { edges { cursor } pageInfo { hasPreviousPage } } }'
    answer = client.post("/graphql", json={"query": query}).json()
    assert answer["data"]["trends"]["pageInfo"]["hasPreviousPage"] is False
    assert [e["cursor"] for e in answer["data"]["trends"]["edges"]] == [
        t["cursor"] for t in page_one["trends"]
    ]
