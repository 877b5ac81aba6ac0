"""The one error path: every refusal, whoever makes it, in the same document and headers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from graph.core.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    TooManyConnections,
    Unauthenticated,
)
from graph.http.errors import HTTPError, error_for_status, send_error
from graph.http.middleware.request_log import RequestLogMiddleware


async def sent(scope: Scope, exc: Any, headers: Any = ()) -> list[Message]:
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    await send_error(scope, send, exc, headers)
    return messages


def test_raw_http_refusals_carry_their_headers() -> None:
    asyncio.run(_raw_http_refusals())


async def _raw_http_refusals() -> None:
    scope = {"type": "http", "state": {"request_id": "r-1"}}
    start, body = await sent(scope, RateLimited("over", retry_after=7), [(b"ratelimit", b"x")])
    assert start["status"] == 429
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"7"
    assert headers[b"ratelimit"] == b"x"
    assert int(headers[b"content-length"]) == len(body["body"])
    document = orjson.loads(body["body"])
    assert (document["error"], document["detail"], document["request_id"]) == (
        "rate_limited",
        "over",
        "r-1",
    )
    [start, _] = await sent(scope, Unauthenticated("who?"))
    assert dict(start["headers"])[b"www-authenticate"] == b"Bearer"


def test_websocket_refusals_are_responses_where_the_server_can_else_close_codes() -> None:
    asyncio.run(_websocket_refusals())


async def _websocket_refusals() -> None:
    extension = {"type": "websocket", "extensions": {"websocket.http.response": {}}}
    start, body = await sent(extension, TooManyConnections("full", retry_after=5))
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 503)
    assert dict(start["headers"])[b"retry-after"] == b"5"
    assert orjson.loads(body["body"])["error"] == "too_many_connections"
    plain = {"type": "websocket"}
    [close] = await sent(plain, TooManyConnections("full", retry_after=5))
    assert (close["type"], close["code"]) == ("websocket.close", 1013)
    [close] = await sent(plain, RateLimited("over", retry_after=1))
    assert close["code"] == 1008


def test_framework_statuses_map_to_domain_errors() -> None:
    assert isinstance(error_for_status(400, "x"), BadRequest)
    assert isinstance(error_for_status(404, "x"), NotFound)
    assert isinstance(error_for_status(405, "x"), MethodNotAllowed)
    other = error_for_status(418, "teapot")
    assert isinstance(other, HTTPError)
    assert (other.status, other.code) == (418, "http_error")


def test_an_escaped_exception_is_a_500_in_the_error_format() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("secret stack detail")

    client = TestClient(RequestLogMiddleware(broken))
    response = client.get("/anything", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    body = response.json()
    assert (body["error"], body["request_id"]) == ("internal_error", "boom-1")
    assert "secret" not in response.text
