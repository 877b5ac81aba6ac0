"""GraphQL over HTTP: request errors keep their message, a document with several operations
names the one to run, and the endpoint's own refusals are GraphQL responses with the status
GraphQL over HTTP gives them (httpx against the ASGI app)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support.factories import write_headers

FLOWS = "query Q($tw: String!) { flows(timeWindow: $tw) { heat } }"
LIMITED = "query Q($n: Int) { hotspots(limit: $n) { country } }"
INSTANT = "query Q($at: DateTime) { hotspots(asOf: $at) { country } }"
TWO = "mutation M { ingestTrends(trends: []) { received } } query B { dataSpan { records } }"


def answer(client: TestClient, status: int = 200, **body: Any) -> dict[str, Any]:
    response = client.post("/graphql", json=body, headers=write_headers())
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        (FLOWS, {}, "Variable '$tw' has invalid value: Expected a value of non-null type"),
        (FLOWS, {"tw": None}, "Expected value of non-null type 'String!' not to be None"),
        (LIMITED, {"n": "abc"}, "Int cannot represent non-integer value: 'abc'"),
        (INSTANT, {"at": "abc"}, 'Value cannot represent a DateTime: "abc"'),
    ],
)
def test_variable_errors_keep_their_message(
    client: TestClient, query: str, variables: dict[str, Any], message: str
) -> None:
    body = answer(client, query=query, variables=variables)
    [error] = body["errors"]
    assert message in error["message"]
    assert error["message"] != "Unexpected error."
    assert body.get("data") is None


def test_several_operations_without_a_name_are_an_error(client: TestClient) -> None:
    body = answer(client, query=TWO)
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["message"] == "Must provide operation name if query contains multiple operations."
    # Nothing ran: the mutation would have answered received 0.
    chosen = answer(client, query=TWO, operationName="B")
    assert chosen == {"data": {"dataSpan": {"records": 0}}}
    assert answer(client, query=TWO, operationName="M")["data"]["ingestTrends"]["received"] == 0


def test_one_operation_needs_no_name(client: TestClient) -> None:
    fragment = "query { ...Span } fragment Span on Query { dataSpan { records } }"
    assert answer(client, query=fragment) == {"data": {"dataSpan": {"records": 0}}}


def test_a_mutation_over_get_is_405_allow_post(client: TestClient) -> None:
    response = client.get(
        "/graphql", params={"query": "mutation { ingestTrends(trends: []) { received } }"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    [error] = response.json()["errors"]
    assert "mutations are not allowed" in error["message"]
    assert error["extensions"] == {"code": "method_not_allowed", "status": 405}


def only_errors(response: Any, status: int, code: str) -> str:
    """A GraphQL response with ``errors`` alone, the status and code given; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"errors"}, body
    [error] = body["errors"]
    assert error["extensions"] == {"code": code, "status": status}
    message: str = error["message"]
    return message


def test_protocol_errors_are_graphql_responses(client: TestClient) -> None:
    no_query = client.post("/graphql", json={"variables": {}})
    assert "No GraphQL query found" in only_errors(no_query, 400, "bad_request")
    as_text = client.post(
        "/graphql", content="{ dataSpan { records } }", headers={"content-type": "text/plain"}
    )
    assert "text/plain" in only_errors(as_text, 415, "unsupported_media_type")
    untyped = client.post("/graphql", content=b'{"query": "{ dataSpan { records } }"}')
    only_errors(untyped, 415, "unsupported_media_type")
    batch = client.post("/graphql", json=[{"query": "{ dataSpan { records } }"}] * 2)
    assert "Batching is not enabled" in only_errors(batch, 400, "bad_request")
    unknown = client.post(
        "/graphql", json={"query": "query A { dataSpan { records } }", "operationName": "Z"}
    )
    assert 'Unknown operation named "Z"' in only_errors(unknown, 400, "bad_request")
    unreadable = client.post(
        "/graphql", content=b"{nope", headers={"content-type": "application/json"}
    )
    only_errors(unreadable, 400, "bad_request")


def test_json_with_a_charset_is_still_json(client: TestClient) -> None:
    response = client.post(
        "/graphql",
        content=b'{"query": "{ dataSpan { records } }"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.json() == {"data": {"dataSpan": {"records": 0}}}
