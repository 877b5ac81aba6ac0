"""A subscriber that leaves while a result is on its way is not a server error."""

from __future__ import annotations

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.http.exceptions import WebSocketDisconnected

from graph.graphql.transport import client_left


async def _receive() -> Message:
    return {"type": "websocket.disconnect", "code": 1006}


async def _send(_message: Message) -> None:
    return None


def _socket(state: WebSocketState) -> WebSocket:
    ws = WebSocket({"type": "websocket", "path": "/graphql", "headers": []}, _receive, _send)
    ws.client_state = state
    return ws


def test_a_peer_gone_under_a_send_is_the_client_leaving() -> None:
    live = _socket(WebSocketState.CONNECTED)
    assert client_left(WebSocketDisconnected(), live)
    assert client_left(WebSocketDisconnect(1006), live)
    assert client_left(ConnectionResetError(), live)


def test_a_send_after_the_close_is_the_client_leaving() -> None:
    closed = _socket(WebSocketState.DISCONNECTED)
    assert client_left(
        RuntimeError('Cannot call "send" once a close message has been sent.'), closed
    )


def test_a_bug_is_still_a_bug() -> None:
    live = _socket(WebSocketState.CONNECTED)
    assert not client_left(RuntimeError("something broke"), live)
    assert not client_left(KeyError("flows"), _socket(WebSocketState.DISCONNECTED))
