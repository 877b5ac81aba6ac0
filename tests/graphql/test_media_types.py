"""GraphQL over HTTP's media types: the answer's type follows Accept, request errors are 400s
with no data under application/graphql-response+json and stay 200s under application/json, and
an Accept that allows neither is a 406 (graphql-http audits 22EB, 865D, 556A, D586, 51FE, 74FF,
5E5B, 86EE). SQLite is enough: nothing here depends on the database."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.graphql.transport import negotiate

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
SPAN = "{ dataSpan { records } }"
FLOWS = "query Q($tw: String!) { flows(timeWindow: $tw) { heat } }"


@pytest.fixture
def client(app_with: Any) -> TestClient:
    built: TestClient = app_with()
    return built


def post(client: TestClient, accept: str | None, **body: Any) -> Any:
    headers = {} if accept is None else {"accept": accept}
    return client.post("/graphql", json=body, headers=headers)


def media_type(response: Any) -> str:
    content_type: str = response.headers["content-type"]
    return content_type.split(";")[0].strip()


def refused(response: Any, status: int = 400) -> str:
    """A request error as application/graphql-response+json: the status, no data; its message."""
    assert response.status_code == status, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body
    assert set(body) == {"errors"}, body
    message: str = body["errors"][0]["message"]
    return message


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),  # 22EB
        (f"{GRAPHQL_RESPONSE}; charset=utf-8, {JSON}; charset=utf-8", GRAPHQL_RESPONSE),
        (JSON, JSON),
        ("*/*", JSON),  # 47DE: a wildcard gets JSON, which every client reads
        ("application/*", JSON),
        ("text/html, */*;q=0.8", JSON),
        (f"{JSON};q=0.9, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=0.5, {JSON}", JSON),
        (f"{JSON};q=0, */*", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=0, */*", JSON),
        (f"{GRAPHQL_RESPONSE};q=oops, {JSON}", JSON),
    ],
)
def test_the_answer_has_the_type_accept_prefers(
    client: TestClient, accept: str, expected: str
) -> None:
    response = post(client, accept, query=SPAN)
    assert response.status_code == 200
    assert media_type(response) == expected
    assert response.json() == {"data": {"dataSpan": {"records": 0}}}


def test_no_accept_is_json(client: TestClient) -> None:
    """80D8: no Accept header at all (not even httpx's default) is application/json."""
    request = client.build_request("POST", "/graphql", json={"query": SPAN})
    del request.headers["accept"]
    response = client.send(request)
    assert response.status_code == 200
    assert media_type(response) == JSON
    assert negotiate(None) == negotiate("") == JSON


@pytest.mark.parametrize("accept", ["text/plain", "text/html", f"{JSON};q=0", "image/*, nonsense"])
def test_an_accept_allowing_neither_type_is_406(client: TestClient, accept: str) -> None:
    response = post(client, accept, query=SPAN)
    assert response.status_code == 406, response.text
    assert media_type(response) == JSON
    body = response.json()
    assert set(body) == {"errors"}
    [error] = body["errors"]
    assert GRAPHQL_RESPONSE in error["message"]
    assert error["extensions"] == {"code": "not_acceptable", "status": 406}


def test_a_json_parsing_failure_is_400_without_data(client: TestClient) -> None:
    """865D, 556A, D586."""
    response = client.post(
        "/graphql",
        content=b'{ "not a JSON',
        headers={"content-type": JSON, "accept": GRAPHQL_RESPONSE},
    )
    refused(response)


@pytest.mark.parametrize(
    "body",
    [
        {"query": 42},
        {"query": SPAN, "variables": "nope"},
        {"query": SPAN, "extensions": "nope"},
        {"query": SPAN, "operationName": "Z"},
    ],
)
def test_invalid_parameters_are_400_without_data(client: TestClient, body: Any) -> None:
    """51FE, 74FF, 5E5B."""
    refused(post(client, GRAPHQL_RESPONSE, **body))


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        ("{ dataSpan { records ", None, "Syntax Error"),
        ("{ nope }", None, "Cannot query field 'nope' on type 'Query'."),  # 86EE
        (FLOWS, {}, "Variable '$tw' has invalid value"),
        (FLOWS, {"tw": 6}, "Variable '$tw' has invalid value"),
        (
            "mutation M { ingestTrends(trends: []) { received } } query B { dataSpan { records } }",
            None,
            "Must provide operation name if query contains multiple operations.",
        ),
    ],
)
def test_request_errors_are_400_without_data(
    client: TestClient, query: str, variables: Any, message: str
) -> None:
    response = post(client, GRAPHQL_RESPONSE, query=query, variables=variables)
    assert message in refused(response)


@pytest.mark.parametrize("accept", [None, JSON, "*/*"])
def test_request_errors_stay_200_with_json(client: TestClient, accept: str | None) -> None:
    response = post(client, accept, query="{ nope }")
    assert response.status_code == 200
    assert media_type(response) == JSON
    body = response.json()
    assert body["data"] is None
    assert "Cannot query field 'nope'" in body["errors"][0]["message"]


def test_a_field_error_is_200_with_data(client: TestClient) -> None:
    """An error once the operation runs is the result's: 200, with data, in either type."""
    query = "query Q($n: Int) { dataSpan { records } hotspots(limit: $n) { country } }"
    response = post(client, GRAPHQL_RESPONSE, query=query, variables={"n": -1})
    assert response.status_code == 200, response.text
    assert media_type(response) == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" in body
    assert body["errors"][0]["path"] == ["hotspots"]


def test_a_mutation_over_get_keeps_405_in_the_graphql_type(client: TestClient) -> None:
    response = client.get(
        "/graphql",
        params={"query": "mutation { ingestTrends(trends: []) { received } }"},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert refused(response, 405)
    assert response.headers["allow"] == "POST"
