"""WebSocket rules and CORS, each at its edge (body limits are in test_rest)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from tests.support.servers import subscribed

PROTOCOL = ["graphql-transport-ws"]
SUBSCRIBE = {"query": "subscription { hotFlows { heat } }"}


def closed_with(ws: Any) -> int:
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_json()
    return int(closed.value.code)


def test_connection_init_must_come_in_time(app_with: Any) -> None:
    client = app_with(ws_init_timeout_seconds=0.2)
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        assert closed_with(ws) == 4408


def test_subscribe_before_ack_is_refused(app_with: Any) -> None:
    client = app_with()
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_json({"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
        assert closed_with(ws) == 4401


def test_duplicate_ids_and_second_inits_are_refused(app_with: Any) -> None:
    client = app_with()
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
        ws.send_json({"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
        assert closed_with(ws) == 4409
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
        ws.send_json({"type": "connection_init"})
        assert closed_with(ws) == 4429


def test_at_most_so_many_subscriptions_per_connection(app_with: Any) -> None:
    client = app_with(ws_max_subscriptions=20)
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
        for i in range(20):
            ws.send_json({"id": str(i), "type": "subscribe", "payload": SUBSCRIBE})
        subscribed(client, 20)
        ws.send_json({"id": "20", "type": "subscribe", "payload": SUBSCRIBE})
        message = ws.receive_json()
        assert message["id"] == "20"
        assert message["payload"]["errors"][0]["extensions"]["code"] == "limit_exceeded"
        # Ending one frees a place.
        ws.send_json({"id": "0", "type": "complete"})
        ws.send_json({"id": "21", "type": "subscribe", "payload": SUBSCRIBE})
        ws.send_json({"type": "ping"})
        seen = []
        while (message := ws.receive_json())["type"] != "pong":
            seen.append(message)
        assert not [m for m in seen if m.get("id") == "21"]  # no error for id 21


def test_messages_at_the_size_limit_pass_one_byte_more_closes(app_with: Any) -> None:
    client = app_with(ws_max_message_bytes=1024)
    base = {"type": "connection_init", "payload": {"pad": ""}}
    room = 1024 - len(json.dumps(base, separators=(",", ":")))
    at = json.dumps({**base, "payload": {"pad": "x" * room}}, separators=(",", ":"))
    assert len(at.encode()) == 1024
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_text(at)
        assert ws.receive_json()["type"] == "connection_ack"
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_text(at.replace('"x', '"xx', 1))
        assert closed_with(ws) == 1009


def test_connections_beyond_the_limit_are_refused_cleanly(app_with: Any) -> None:
    client = app_with(ws_max_connections=2)
    first = client.websocket_connect("/graphql", subprotocols=PROTOCOL)
    second = client.websocket_connect("/graphql", subprotocols=PROTOCOL)
    first.__enter__()
    second.__enter__()
    try:
        with pytest.raises(WebSocketDenialResponse) as refused:
            with client.websocket_connect("/graphql", subprotocols=PROTOCOL):
                pass
        assert refused.value.status_code == 503
        assert refused.value.json()["error"] == "too_many_connections"
    finally:
        second.__exit__(None, None, None)
        first.__exit__(None, None, None)
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:  # room again
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"


def test_cors_only_for_the_configured_origins(app_with: Any) -> None:
    closed = app_with()
    response = closed.get("/v1/flows", headers={"Origin": "https://map.example"})
    assert "access-control-allow-origin" not in response.headers
    opened = app_with(cors_origins=("https://map.example",))
    preflight = opened.options(
        "/graphql",
        headers={"Origin": "https://map.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == "https://map.example"
    other = opened.get("/v1/flows", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
