"""MAX_CONNECTIONS: past the cap a connection gets a prompt 503 in the error format and is
closed, WebSockets count, the health checks still answer, and the connections within the cap
are served throughout. The app runs under uvicorn with our protocol on a loopback port, in a
thread (the `trendmap serve` wiring is tested in test_timeouts)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import uvicorn

from graph.http.app import create_app
from graph.http.protocol import ConnectionLimits
from graph.settings import Settings
from tests.support.factories import make_settings
from tests.support.servers import Served, free_port

CAP = 5


@contextlib.contextmanager
def served_in_thread(settings: Settings) -> Iterator[Served]:
    """The app under uvicorn with our protocol, as `trendmap serve` configures it."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        http=ConnectionLimits.from_settings(settings).protocol(),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}", None)  # type: ignore[arg-type]
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    database = f"sqlite:///{tmp_path_factory.mktemp('cap') / 'c.db'}"
    settings = make_settings(
        database, rate_limit_enabled=False, max_connections=CAP, ws_init_timeout_seconds=30
    )
    with served_in_thread(settings) as served:
        yield served


def connect(server: Served) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    conn.settimeout(5)
    return conn


def read_response(conn: socket.socket) -> tuple[int, bytes, bytes]:
    """Status, lower-cased head and body of one response (Content-Length framed)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(65536)
        assert chunk, f"closed without an answer: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    head = head.lower()
    if b"content-length: " in head:
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += conn.recv(65536)
    return int(head.split(b" ")[1]), head, body


def get(conn: socket.socket, path: str) -> tuple[int, bytes, bytes]:
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return read_response(conn)


def websocket(conn: socket.socket) -> tuple[int, bytes, bytes]:
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall(
        (
            "GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    return read_response(conn)


def assert_refused_and_closed(conn: socket.socket, answer: tuple[int, bytes, bytes]) -> None:
    status, head, body = answer
    document = json.loads(body)
    assert (status, document["error"]) == (503, "too_many_connections"), body
    assert f"maximum of {CAP} connections" in document["detail"]
    assert document["request_id"]
    assert b"retry-after: 1" in head and b"connection: close" in head
    assert conn.recv(1) == b""  # closed


def wait_until_served(server: Served) -> None:
    """The closed connections' places come free as the server sees them go."""
    deadline = time.monotonic() + 5
    while True:
        with connect(server) as conn:
            if get(conn, "/v1/flows")[0] == 200:
                return
        assert time.monotonic() < deadline, "the places never came free"
        time.sleep(0.05)


def test_past_the_cap_a_prompt_503_and_the_others_are_served(server: Served) -> None:
    with ExitStack() as stack:
        held = [stack.enter_context(connect(server)) for _ in range(CAP)]
        for conn in held:  # each one seen by the server, and kept alive
            assert get(conn, "/health")[0] == 200
        with connect(server) as extra:
            started = time.monotonic()
            answer = get(extra, "/v1/flows")
            assert time.monotonic() - started < 1
            assert_refused_and_closed(extra, answer)
        with connect(server) as probe:  # a load balancer's check still gets through
            assert get(probe, "/health")[0] == 200
        for conn in held:
            assert get(conn, "/v1/flows")[0] == 200
    wait_until_served(server)


def test_websockets_count_and_are_refused_past_the_cap(server: Served) -> None:
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(server)) for _ in range(CAP)]
        for conn in sockets:
            assert websocket(conn)[0] == 101
        with connect(server) as extra:
            assert_refused_and_closed(extra, get(extra, "/v1/hotspots"))
        with connect(server) as extra:
            assert_refused_and_closed(extra, websocket(extra))
    wait_until_served(server)
    with connect(server) as conn:
        assert websocket(conn)[0] == 101


def test_a_slow_request_past_the_cap_is_still_bounded_by_the_header_deadline(
    tmp_path: Path,
) -> None:
    """The deadline holds for every connection, admitted or not: a 408, the close, a free place."""
    settings = make_settings(
        f"sqlite:///{tmp_path / 'd.db'}", max_connections=1, http_header_timeout_seconds=0.5
    )
    with served_in_thread(settings) as server, connect(server) as first:
        assert get(first, "/health")[0] == 200
        with connect(server) as slow:
            slow.sendall(b"GET /v1/flows HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            status, head, body = read_response(slow)
            assert 0.4 <= time.monotonic() - started <= 1.5
            assert (status, json.loads(body)["error"]) == (408, "request_timeout")
            assert b"connection: close" in head and slow.recv(1) == b""
        assert first.recv(1) == b""  # idle past the deadline too: closed
        wait_until_served(server)
