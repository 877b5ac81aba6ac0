"""Header and body deadlines on a real `trendmap serve`, driven by raw sockets: a slow client
gets a 408 in the error format and its connection closed, on time (the timeouts are 1 s)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.support.factories import WRITE_KEY, record
from tests.support.servers import Served, running_server

TIMEOUT = 1.0
TOLERANCE = 1.0  # the server's timer fires on time; this is for a loaded test machine
MAX_BODY = 1024


def _serve(tmp_path_factory: pytest.TempPathFactory, rate_limits: bool) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("timeouts")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp / 't.db'}",
        LOG_LEVEL="WARNING",
        API_KEYS=WRITE_KEY,
        RATE_LIMIT_ENABLED=str(rate_limits).lower(),
        HTTP_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        HTTP_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
        MAX_BODY_BYTES=str(MAX_BODY),
    )
    with running_server(tmp, env) as served:
        yield served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory, rate_limits=False)


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Rate limits on: the limiter reads a GraphQL body early, to count its operations."""
    yield from _serve(tmp_path_factory, rate_limits=True)


def connect(server: Served) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    conn.settimeout(TIMEOUT + TOLERANCE + 5)
    return conn


def until_closed(conn: socket.socket) -> tuple[float, bytes]:
    """Everything the server sends until it closes, and how long that took."""
    started, received = time.monotonic(), b""
    while chunk := conn.recv(65536):
        received += chunk
    return time.monotonic() - started, received


def one_response(conn: socket.socket) -> bytes:
    """One response with a Content-Length, the connection left open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += conn.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def status_and_document(response: bytes) -> tuple[int, dict[str, object], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body), head.lower()


def post_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_refused_in_time(conn: socket.socket, status: int, code: str) -> None:
    elapsed, response = until_closed(conn)
    got, document, head = status_and_document(response)
    assert (got, document["error"]) == (status, code), response
    assert document["request_id"] and document["timestamp"]
    assert b"connection: close" in head
    assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + TOLERANCE, elapsed


def test_headers_that_never_end_get_a_408_and_the_close(server: Served) -> None:
    with connect(server) as conn:
        conn.sendall(b"GET /v1/flows HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert_refused_in_time(conn, 408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed(server: Served) -> None:
    with connect(server) as conn:
        elapsed, response = until_closed(conn)
    assert response == b""
    assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + TOLERANCE, elapsed


def test_headers_sent_slowly_within_the_timeout_are_served(server: Served) -> None:
    with connect(server) as conn:
        for part in (b"GET /health HT", b"TP/1.1\r\nHost: x\r\n", b"Connection: close\r\n\r\n"):
            conn.sendall(part)
            time.sleep(TIMEOUT / 4)
        _, response = until_closed(conn)
    assert response.startswith(b"HTTP/1.1 200"), response


def test_the_deadline_starts_again_after_each_response(server: Served) -> None:
    """A kept-alive connection is not cut while it is in use, only when it idles."""
    with connect(server) as conn:
        for _ in range(3):
            time.sleep(TIMEOUT * 0.6)
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert one_response(conn).startswith(b"HTTP/1.1 200")
        elapsed, rest = until_closed(conn)
    assert rest == b""
    assert elapsed <= TIMEOUT + TOLERANCE


def test_a_body_that_does_not_come_gets_a_408_and_the_close(server: Served) -> None:
    with connect(server) as conn:
        conn.sendall(post_head("/graphql", "Content-Length: 100") + b'{"query": "{')
        assert_refused_in_time(conn, 408, "request_timeout")


def test_with_rate_limits_on_a_body_that_does_not_come_gets_a_408_on_time(
    limited_server: Served,
) -> None:
    """Every layer that reads a body early (the limiter, the fast path) keeps the one deadline."""
    with connect(limited_server) as conn:
        conn.sendall(post_head("/graphql", "Content-Length: 100") + b'{"query": "{')
        assert_refused_in_time(conn, 408, "request_timeout")
    with connect(limited_server) as conn:
        conn.sendall(post_head("/graphql", "Content-Length: 100"))  # and no body at all
        assert_refused_in_time(conn, 408, "request_timeout")


def test_a_write_whose_body_stalls_stores_nothing(server: Served) -> None:
    body = orjson.dumps([record()])
    with connect(server) as conn:
        auth, length = f"Authorization: Bearer {WRITE_KEY}", f"Content-Length: {len(body)}"
        conn.sendall(post_head("/v1/trends", auth, length) + body[:-5])
        assert_refused_in_time(conn, 408, "request_timeout")
    with connect(server) as conn:
        conn.sendall(b"GET /v1/trends HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _, response = until_closed(conn)
    assert json.loads(response.partition(b"\r\n\r\n")[2])["trends"] == []


def test_a_body_sent_slowly_within_the_timeout_is_read(server: Served) -> None:
    with connect(server) as conn:
        query = b'{"query": "{ __typename }"}'
        head = post_head("/graphql", f"Content-Length: {len(query)}", "Connection: close")
        conn.sendall(head + query[:10])
        time.sleep(TIMEOUT / 2)
        conn.sendall(query[10:])
        _, response = until_closed(conn)
    assert response.startswith(b"HTTP/1.1 200"), response
    assert json.loads(response.partition(b"\r\n\r\n")[2]) == {"data": {"__typename": "Query"}}


def test_a_huge_chunk_that_never_comes_is_not_held(server: Served) -> None:
    with connect(server) as conn:
        conn.sendall(post_head("/graphql", "Transfer-Encoding: chunked") + b"FFFFFFFFFF\r\n{")
        assert_refused_in_time(conn, 408, "request_timeout")


def test_a_huge_chunk_is_cut_off_at_the_body_limit(server: Served) -> None:
    with connect(server) as conn:
        conn.sendall(post_head("/graphql", "Transfer-Encoding: chunked") + b"FFFFFFFFFF\r\n")
        started = time.monotonic()
        try:  # the server may close before it has read all of this
            conn.sendall(b"x" * (MAX_BODY + 1))
        except OSError:
            pass
        elapsed, response = until_closed(conn)
    status, document, head = status_and_document(response)
    assert (status, document["error"]) == (413, "payload_too_large")
    assert b"connection: close" in head
    assert time.monotonic() - started < TIMEOUT  # at once, not at a deadline
    assert elapsed < TIMEOUT
