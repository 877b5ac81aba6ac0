"""Session consistency at the edge: generations on writes, min_generation on reads, ETag and 304."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support.factories import AS_OF, as_input, record, write_headers

ISO_AS_OF = AS_OF.isoformat()
HISTORY = {"country": "US", "since": "2026-11-19T12:00:00Z", "until": ISO_AS_OF}
READS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/flows", {"as_of": ISO_AS_OF, "threshold": 0.1}),
    ("/v1/flows", {}),  # a sliding window
    ("/v1/hotspots", {"as_of": ISO_AS_OF}),
    ("/v1/flows.geojson", {"as_of": ISO_AS_OF}),
    ("/v1/hotspots.geojson", {"as_of": ISO_AS_OF}),
    ("/v1/trends", {}),
    ("/v1/span", {}),
    ("/v1/topics", {"as_of": ISO_AS_OF}),
    ("/v1/topics/spread", {"topic": "World Cup", "until": ISO_AS_OF}),
    ("/v1/hotspots/history", HISTORY),
]


def _batch(count: int = 10) -> list[dict[str, Any]]:
    return [
        record("US", "World Cup", hours_ago=3, count=count),
        record("BR", "World Cup", hours_ago=2, count=count),
    ]


def _write(client: TestClient, batch: list[dict[str, Any]]) -> int:
    response = client.post("/v1/trends", json=batch, headers=write_headers())
    assert response.status_code == 200, response.text
    generation = response.json()["generation"]
    assert isinstance(generation, int)
    assert response.headers["x-trendmap-generation"] == str(generation)
    return generation


@pytest.mark.parametrize("use_cache", [True, False])
def test_every_write_answers_a_larger_generation(app_with: Any, use_cache: bool) -> None:
    client = app_with(use_cache=use_cache)
    first = _write(client, _batch(10))
    second = _write(client, _batch(11))
    assert second > first
    # Changing nothing raises nothing, and answers the next generation.
    assert _write(client, _batch(11)) == second + 1
    assert _write(client, _batch(12)) == second + 1


@pytest.mark.parametrize(("path", "params"), READS)
def test_cacheable_answers_carry_an_etag_and_304_when_it_matches(
    app_with: Any, path: str, params: dict[str, str]
) -> None:
    client = app_with()
    _write(client, _batch())
    first = client.get(path, params=params)
    assert first.status_code == 200, first.text
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and tag.endswith('"')
    same = client.get(path, params=params, headers={"If-None-Match": tag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == tag
    assert "content-type" not in same.headers
    # Weak comparison, lists and the wildcard.
    for header in (tag.removeprefix("W/"), f'"other", {tag}', "*"):
        assert client.get(path, params=params, headers={"If-None-Match": header}).status_code == 304
    assert client.get(path, params=params, headers={"If-None-Match": '"x"'}).status_code == 200
    # A write retires the tag.
    _write(client, _batch(20))
    after = client.get(path, params=params, headers={"If-None-Match": tag})
    assert after.status_code == 200
    assert after.headers["etag"] != tag


def test_the_etag_names_the_query_not_the_token(app_with: Any) -> None:
    client = app_with()
    _write(client, _batch())
    base = client.get("/v1/flows", params={"as_of": ISO_AS_OF})
    tag = base.headers["etag"]
    with_token = client.get(
        "/v1/flows", params={"as_of": ISO_AS_OF, "min_generation": 1, "zz": "1"}
    )
    assert with_token.headers["etag"] != tag  # an unknown parameter changes the warnings
    asked = client.get(
        "/v1/flows",
        params={"as_of": ISO_AS_OF, "min_generation": 1},
        headers={"If-None-Match": tag},
    )
    assert asked.status_code == 304
    other = client.get("/v1/flows", params={"as_of": ISO_AS_OF, "threshold": 0.2})
    assert other.headers["etag"] != tag


def test_answers_name_their_generation(app_with: Any) -> None:
    client = app_with()
    generation = _write(client, _batch())
    answer = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF})
    assert answer.headers["x-trendmap-generation"] == str(generation)
    assert "x-trendmap-generation" not in client.get("/v1/trends").headers  # not cached


def test_reads_with_min_generation_see_the_write(app_with: Any) -> None:
    client = app_with(cache_local_seconds=30)
    _write(client, _batch(10))
    before = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF}).json()["hotspots"]
    generation = _write(client, _batch(50))
    for asking in (
        {"params": {"as_of": ISO_AS_OF, "min_generation": generation}},
        {"params": {"as_of": ISO_AS_OF}, "headers": {"X-Trendmap-Min-Generation": str(generation)}},
        # Not issued yet (a token from before a restart of the in-process store): the database.
        {"params": {"as_of": ISO_AS_OF, "min_generation": generation + 1000}},
    ):
        response = client.get("/v1/hotspots", **asking)
        assert response.status_code == 200, response.text
        assert response.json()["warnings"] == []  # min_generation is a known parameter
        after = response.json()["hotspots"]
        assert after != before
        assert {h["country"]: h["volume"] for h in after} == {"US": 50, "BR": 50}
    # The last was answered from the database, not from the entry cached at `generation`.
    assert response.json()["metadata"]["cache_hit"] is False
    assert "x-trendmap-generation" not in response.headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "is not a non-negative integer"),
        ("abc", "is not a non-negative integer"),
        ("1.5", "is not a non-negative integer"),
        ("", "is not a non-negative integer"),
        ("١٢", "is not a non-negative integer"),  # digits, but not ASCII ones
        ("9" * 19, "must be at most 9223372036854775807"),
        ("9" * 5000, "must be at most 9223372036854775807"),
    ],
)
def test_a_bad_min_generation_is_a_400_naming_it(app_with: Any, value: str, expected: str) -> None:
    client = app_with()
    for path, params in READS:
        response = client.get(path, params={**params, "min_generation": value})
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert {"error", "detail", "request_id", "timestamp"} <= set(body)
        assert body["field"] == "min_generation" and expected in body["detail"], body
    sent = value[:100].encode()  # header bytes as the client sent them
    header = client.get("/v1/flows", headers={"X-Trendmap-Min-Generation": sent})
    assert header.status_code == 400
    assert header.json()["field"] == "X-Trendmap-Min-Generation"


def test_the_larger_of_parameter_and_header_counts(app_with: Any) -> None:
    client = app_with()
    generation = _write(client, _batch())
    client.get("/v1/hotspots", params={"as_of": ISO_AS_OF})
    cached = client.get(
        "/v1/hotspots",
        params={"as_of": ISO_AS_OF, "min_generation": 0},
        headers={"X-Trendmap-Min-Generation": str(generation)},
    )
    assert cached.json()["metadata"]["cache_hit"] is True
    beyond = client.get(
        "/v1/hotspots",
        params={"as_of": ISO_AS_OF, "min_generation": generation + 1},
        headers={"X-Trendmap-Min-Generation": "0"},
    )
    assert beyond.json()["metadata"]["cache_hit"] is False


def test_the_openapi_document_declares_the_session_parameters(app_with: Any) -> None:
    client = app_with()
    document = client.get("/openapi.json").json()
    for path, _ in READS:
        operation = document["paths"][path]["get"]
        names = {(p["name"], p["in"]) for p in operation["parameters"]}
        assert {("min_generation", "query"), ("X-Trendmap-Min-Generation", "header")} <= names
        assert "304" in operation["responses"]
        assert "ETag" in operation["responses"]["200"]["headers"]
    written = document["paths"]["/v1/trends"]["post"]["responses"]["200"]
    assert "X-Trendmap-Generation" in written["headers"]
    schema = written["content"]["application/json"]["schema"]
    assert "generation" in schema["required"]


INGEST = """
mutation($trends: [TrendInput!]!) { ingestTrends(trends: $trends) { inserted generation } }
"""
HOTSPOTS = f'{{ hotspots(asOf: "{ISO_AS_OF}") {{ country volume }} }}'


def test_graphql_writes_answer_the_generation_and_reads_honour_the_header(app_with: Any) -> None:
    client = app_with(cache_local_seconds=30)

    def ingest(count: int) -> int:
        response = client.post(
            "/graphql",
            json={"query": INGEST, "variables": {"trends": [as_input(r) for r in _batch(count)]}},
            headers=write_headers(),
        )
        result = response.json()["data"]["ingestTrends"]
        assert response.headers["x-trendmap-generation"] == str(result["generation"])
        generation: int = result["generation"]
        return generation

    first = ingest(10)
    assert client.post("/graphql", json={"query": HOTSPOTS}).json()["data"]["hotspots"]
    second = ingest(30)
    assert second > first
    answer = client.post(
        "/graphql",
        json={"query": HOTSPOTS},
        headers={"X-Trendmap-Min-Generation": str(second)},
    ).json()
    assert {h["country"]: h["volume"] for h in answer["data"]["hotspots"]} == {"US": 30, "BR": 30}
    refused = client.post(
        "/graphql", json={"query": HOTSPOTS}, headers={"X-Trendmap-Min-Generation": "soon"}
    ).json()
    [error] = refused["errors"]
    assert "X-Trendmap-Min-Generation" in error["message"]
