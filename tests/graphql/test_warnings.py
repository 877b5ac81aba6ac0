"""Warnings belong to the operation that produced them, on a WebSocket too."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient, WebSocketTestSession

from graph.http.app import create_app
from tests.support.factories import make_settings, spread, write_headers

FLOWS = "query($limit: Int) { flows(threshold: 0, limit: $limit) { fromCountry } }"
HOT_FLOWS = "subscription { hotFlows(threshold: 0.5, includeCurrent: true) { fromCountry } }"


def operate(ws: WebSocketTestSession, id: str, query: str, **variables: Any) -> dict[str, Any]:
    ws.send_json(
        {"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
    )
    message: dict[str, Any] = ws.receive_json()
    assert (message["type"], message["id"]) == ("next", id), message
    return message


def test_a_websocket_operation_carries_only_its_own_warnings(database_url: str) -> None:
    """Strawberry keeps one context per socket: warnings kept there would repeat on every later
    message (and switch off the shared encoding of live events)."""
    with TestClient(create_app(make_settings(database_url, max_flows=1))) as client:
        for a, b, topic in [("FR", "BE", "Alpha"), ("DE", "AT", "Gamma")]:
            stored = client.post("/v1/trends", json=spread(a, b, [topic]), headers=write_headers())
            assert stored.status_code == 200
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init"})
            assert ws.receive_json()["type"] == "connection_ack"
            truncated = operate(ws, "1", FLOWS)["payload"]
            assert "truncated: 2 flows" in truncated["extensions"]["warnings"][0]
            assert ws.receive_json() == {"id": "1", "type": "complete"}
            limited = operate(ws, "2", FLOWS, limit=1)["payload"]
            assert len(limited["data"]["flows"]) == 1
            assert "extensions" not in limited or not limited["extensions"].get("warnings")
            assert ws.receive_json() == {"id": "2", "type": "complete"}
            event = operate(ws, "3", HOT_FLOWS)["payload"]
            assert set(event) == {"data"}, event  # what the shared encoding needs
            ws.send_json({"id": "3", "type": "complete"})
