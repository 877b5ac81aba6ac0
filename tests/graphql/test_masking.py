"""What GraphQL masks: bugs only. Request errors (syntax, validation, a variable's value, which
operation) and domain errors keep their message, over HTTP and both WebSocket protocols."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from graphql import GraphQLError, parse
from starlette.testclient import TestClient

from graph.core.errors import InvalidParameter
from graph.graphql.errors import is_request_error, should_mask
from graph.http.app import create_app
from tests.support.factories import make_settings

LIMITED = "query Q($n: Int) { hotspots(limit: $n) { country } }"
MISSING = "query Q($tw: String!) { flows(timeWindow: $tw) { heat } }"
CASES = [
    (LIMITED, {"n": "abc"}, "Int cannot represent non-integer value: 'abc'"),
    (MISSING, {}, "Expected a value of non-null type 'String!' to be provided"),
]


@pytest.fixture
def sqlite_client(tmp_path: Any) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 'm.db'}"))) as client:
        yield client


def opened(ws: Any) -> None:
    ws.send_json({"type": "connection_init"})
    assert ws.receive_json()["type"] == "connection_ack"


@pytest.mark.parametrize(("query", "variables", "message"), CASES)
def test_variable_errors_are_not_masked_over_graphql_transport_ws(
    sqlite_client: TestClient, query: str, variables: dict[str, Any], message: str
) -> None:
    with sqlite_client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        opened(ws)
        payload = {"query": query, "variables": variables}
        ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        reply = ws.receive_json()
        errors = reply["payload"] if reply["type"] == "error" else reply["payload"]["errors"]
        [error] = errors
        assert message in error["message"], reply


@pytest.mark.parametrize(("query", "variables", "message"), CASES)
def test_variable_errors_are_not_masked_over_legacy_graphql_ws(
    sqlite_client: TestClient, query: str, variables: dict[str, Any], message: str
) -> None:
    with sqlite_client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
        opened(ws)
        payload = {"query": query, "variables": variables}
        ws.send_json({"id": "1", "type": "start", "payload": payload})
        reply = ws.receive_json()
        assert reply["type"] in ("data", "error"), reply
        errors = reply["payload"]["errors"] if reply["type"] == "data" else [reply["payload"]]
        [error] = errors
        assert message in error["message"], reply


def test_variable_errors_are_not_masked_in_subscriptions(sqlite_client: TestClient) -> None:
    query = "subscription S($t: Float) { hotFlows(threshold: $t) { heat } }"
    with sqlite_client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        opened(ws)
        payload = {"query": query, "variables": {"t": "hot"}}
        ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        reply = ws.receive_json()
        [error] = reply["payload"] if reply["type"] == "error" else reply["payload"]["errors"]
        assert "Float cannot represent non numeric value: 'hot'" in error["message"]


def test_which_errors_are_masked() -> None:
    node = parse("query Q($n: Int) { a }").definitions[0]
    variable = node.variable_definitions[0]  # type: ignore[attr-defined]
    refused = GraphQLError("Variable '$n' ...", variable, original_error=ValueError("no"))
    assert is_request_error(refused) and not should_mask(refused)
    # A bug in a scalar refusing a variable's value is still a bug.
    buggy = GraphQLError("Variable '$n' ...", variable, original_error=KeyError("x"))
    assert should_mask(buggy)
    assert not should_mask(GraphQLError("Syntax Error: ..."))
    domain = InvalidParameter("limit", "too big")
    assert not should_mask(GraphQLError(str(domain), path=["a"], original_error=domain))
    # A field that failed is masked, whatever it raised; so is a failure outside any field.
    assert should_mask(GraphQLError("boom", path=["a"], original_error=ValueError("boom")))
    assert should_mask(GraphQLError("boom", original_error=RuntimeError("boom")))
