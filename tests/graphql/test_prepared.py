"""Prepared operations (graph.graphql.prepared): a query run again without Strawberry's pipeline
answers exactly as the pipeline would, and the pipeline answers whatever meets an error.

Two apps over one database, one with prepared operations off, each asked the same requests
in turn: same status, same headers that matter, same bytes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from graph.graphql.limits import CACHED_DOCUMENT_CHARS
from graph.graphql.prepared import PreparedOperation, PreparedOperations
from graph.graphql.response_cache import document_hash
from graph.http.app import create_app
from graph.observability.tracing import setup_tracing, shutdown_tracing
from tests.support.factories import AS_OF, make_settings, record, write_headers
from tests.support.layers import graphql_schema_of

FLOWS = """
query Flows($t: Float, $w: String! = "24h", $asOf: DateTime, $limit: Int, $more: Boolean!) {
  flows(timeWindow: $w, threshold: $t, asOf: $asOf, limit: $limit) {
    id fromCountry toCountry heat
    lag: timeDeltaHours
    ...Shared @include(if: $more)
    __typename
  }
}
fragment Shared on Flow { sharedTopics similarityScore }
"""
TWO = """
query Hot($asOf: DateTime, $countries: [String!]) {
  hotspots(asOf: $asOf, countries: $countries) { country intensity topTopics { label } }
}
query Trends($first: Int) { trends(first: $first) { edges { node { country } } } }
"""
# Headers a client reads; the rest (request id, rate limits, date) differ between any two.
COMPARED = ("content-type", "cache-control", "etag", "x-trendmap-generation", "allow")


@pytest.fixture
def pair(tmp_path: Any) -> Iterator[tuple[TestClient, TestClient]]:
    """(prepared, pipeline only): two apps on one SQLite file, answers never kept (each
    request executes), flows truncated past 2 so that answers carry warnings."""
    settings = make_settings(
        f"sqlite:///{tmp_path / 'prepared.db'}", graphql_response_cache_entries=0, max_flows=2
    )
    with TestClient(create_app(settings)) as prepared, TestClient(create_app(settings)) as plain:
        graphql_schema_of(plain).prepared.enabled = False
        records = [
            record(country, topic, hours_ago=hours, count=count)
            for topic, count in (("Alpha", 90), ("Beta", 60), ("Gamma", 30))
            for country, hours in (("US", 5), ("BR", 4), ("MX", 3), ("CO", 2))
        ]
        assert prepared.post("/v1/trends", json=records, headers=write_headers()).is_success
        yield prepared, plain


def _same(clients: tuple[TestClient, TestClient], method: str, **request: Any) -> Any:
    """Ask both apps; their answers must match. The prepared app's answer."""
    prepared, plain = clients
    ours, theirs = (client.request(method, "/graphql", **request) for client in (prepared, plain))
    assert ours.status_code == theirs.status_code
    assert ours.content == theirs.content
    for name in COMPARED:
        assert ours.headers.get(name) == theirs.headers.get(name), name
    return ours


def _post(query: str, variables: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {"json": {"query": query, "variables": variables, **more}}


def test_a_prepared_query_answers_as_the_pipeline_does(pair: tuple[TestClient, TestClient]) -> None:
    prepared = graphql_schema_of(pair[0]).prepared
    as_of = (AS_OF + timedelta(hours=1)).isoformat()
    first = _same(pair, "POST", **_post(FLOWS, {"t": 0.1, "asOf": as_of, "more": True}))
    assert len(prepared) == 1 and prepared.runs == 0  # remembered, run by the pipeline
    assert first.json()["extensions"]["warnings"]  # truncated at MAX_FLOWS = 2
    for n, variables in enumerate(
        [
            {"t": 0.1, "asOf": as_of, "more": True},
            {"t": 0.2, "asOf": as_of, "more": False},
            {"t": 0.1, "asOf": as_of, "more": True, "limit": 1},
            {"t": 0.99, "asOf": as_of, "more": True},  # no flows
            {"t": 0.1, "w": "6h", "asOf": as_of, "more": False},
        ],
        start=1,
    ):
        answer = _same(pair, "POST", **_post(FLOWS, variables))
        assert "errors" not in answer.json()
        assert prepared.runs == n
    # As a GET, and asking for GraphQL's own media type.
    variables = orjson.dumps({"t": 0.3, "asOf": as_of, "more": True}).decode()
    query = {"query": FLOWS, "variables": variables}
    accept = {"accept": "application/graphql-response+json"}
    assert "errors" not in _same(pair, "GET", params=query, headers=accept).json()
    _same(pair, "POST", **_post(FLOWS, {"t": 0.3, "asOf": as_of, "more": True}), headers=accept)
    assert prepared.runs == 7


def test_a_prepared_query_that_meets_an_error_is_answered_by_the_pipeline(
    pair: tuple[TestClient, TestClient],
) -> None:
    prepared = graphql_schema_of(pair[0]).prepared
    _same(pair, "POST", **_post(FLOWS, {"t": 0.1, "more": True}))
    accept = {"accept": "application/graphql-response+json"}
    for variables, code in [
        ({"t": "hot", "more": True}, None),  # not a Float: a request error (400 with this accept)
        ({"t": 0.1}, None),  # $more is required
        ({"t": 0.1, "w": "5y", "more": True}, "invalid_parameter"),  # a domain error
        ({"t": 7.0, "more": True}, "invalid_parameter"),  # threshold out of range
    ]:
        for headers in ({}, accept):
            answer = _same(pair, "POST", **_post(FLOWS, variables), headers=headers)
            [error] = answer.json()["errors"]
            if code is not None:
                assert error["extensions"]["code"] == code
    assert prepared.runs == 0
    # Whatever a client puts in operationName, variables or extensions, the answer is the
    # pipeline's (an empty object as extensions is no junk: that one runs prepared).
    for junk in ({}, [], 3, "x"):
        refused = _same(pair, "POST", **_post(FLOWS, {"t": 0.1, "more": True}, operationName=junk))
        assert refused.status_code == 400
        _same(pair, "POST", **_post(FLOWS, junk))  # type: ignore[arg-type]
        _same(pair, "POST", **_post(FLOWS, {"t": 0.1, "more": True}, extensions=junk))
    assert prepared.runs == 1


def test_each_operation_of_a_document_is_prepared_on_its_own(
    pair: tuple[TestClient, TestClient],
) -> None:
    prepared = graphql_schema_of(pair[0]).prepared
    as_of = (AS_OF + timedelta(hours=1)).isoformat()
    for _ in range(2):
        _same(pair, "POST", **_post(TWO, {"asOf": as_of}, operationName="Hot"))
        _same(pair, "POST", **_post(TWO, {"first": 2}, operationName="Trends"))
        _same(pair, "POST", **_post(TWO, {"countries": ["BR"]}, operationName="Hot"))
    assert len(prepared) == 2 and prepared.runs == 4
    # Without a name the document is refused (two operations), prepared or not.
    _same(pair, "POST", **_post(TWO, {"first": 2}))
    assert prepared.runs == 4


def test_a_persisted_query_is_prepared_by_its_hash(pair: tuple[TestClient, TestClient]) -> None:
    prepared = graphql_schema_of(pair[0]).prepared
    digest = document_hash(FLOWS)
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    for client in pair:  # each app registers the document
        registered = client.post("/graphql", json={"query": FLOWS, "extensions": persisted,
                                                   "variables": {"more": True}})  # fmt: skip
        assert "errors" not in registered.json()
    for threshold in (0.1, 0.2):
        variables = orjson.dumps({"t": threshold, "more": True}).decode()
        params = {"extensions": orjson.dumps(persisted).decode(), "variables": variables}
        assert "errors" not in _same(pair, "GET", params=params).json()
    assert prepared.runs == 2


def test_only_documents_that_reached_execution_as_queries_are_prepared(
    pair: tuple[TestClient, TestClient],
) -> None:
    prepared = graphql_schema_of(pair[0]).prepared
    client = pair[0]
    for request in [
        {"query": "{ flows { nope } }"},  # invalid: never executed
        {"query": "{ flows(timeWindow: 3) { heat } }"},
        {
            "query": "mutation M($t: [TrendInput!]!) { ingestTrends(trends: $t) { received } }",
            "variables": {"t": []},
        },
        {"query": "{ hotspots { country } " + " " * CACHED_DOCUMENT_CHARS + "}"},  # too long
    ]:
        client.post("/graphql", json=request, headers=write_headers())
    assert len(prepared) == 0
    client.post("/graphql", json={"query": '{ flows(timeWindow: "5y") { heat } }'})
    assert len(prepared) == 1  # a domain error, after validation: the document is fine


def test_prepared_operations_are_bounded() -> None:
    operations = PreparedOperations(max_entries=3)
    documents = [f"{{ d{n} }}" for n in range(5)]
    for text in documents:
        operations.remember(document_hash(text), None, _operation(text))
    assert len(operations) == 3
    assert operations.get(document_hash(documents[0]), None) is None
    assert operations.get(document_hash(documents[4]), None) is not None
    off = PreparedOperations(enabled=False)
    off.remember("h", None, _operation("{ a }"))
    assert len(off) == 0 and off.get("h", None) is None


def _operation(text: str) -> PreparedOperation:
    from graphql import parse

    return PreparedOperation(parse(text), None, True)


def test_traced_operations_always_go_through_the_pipeline(tmp_path: Any) -> None:
    """The operation's span is an extension's: with tracing on, nothing is prepared."""
    exporter = InMemorySpanExporter()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'traced.db'}", graphql_response_cache_entries=0
    )
    try:
        assert setup_tracing(settings, exporter=exporter)
        with TestClient(create_app(settings)) as client:
            prepared = graphql_schema_of(client).prepared
            assert not prepared.enabled
            query = "query Hot($c: [String!]) { hotspots(countries: $c) { country } }"
            for countries in (["US"], ["BR"]):
                answer = client.post(
                    "/graphql", json={"query": query, "variables": {"c": countries}}
                )
                assert "errors" not in answer.json()
            spans = [s for s in exporter.get_finished_spans() if s.name == "graphql query Hot"]
            assert len(spans) == 2 and prepared.runs == 0
    finally:
        shutdown_tracing()
