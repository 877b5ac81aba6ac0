"""Error tracking: real bugs reach a Sentry server (here, one on loopback) once each, tagged and
without credentials; client mistakes never do."""

from __future__ import annotations

import gzip
import json
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from starlette.testclient import TestClient

from graph.cli.main import main
from graph.http.app import create_app
from graph.observability.sentry import FILTERED, before_send, shutdown_sentry
from tests.support.factories import WRITE_KEY, make_settings, record, write_headers


class SentryServer:
    """Takes envelopes on ``/api/<project>/envelope/`` and keeps their events."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                server.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.http.server_address[1]}/1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        """Every event received so far, after the SDK has sent what it queued."""
        sentry_sdk.flush(5)
        return [event for body in self.bodies for event in _events(body)]


def _events(envelope: bytes) -> Iterator[dict[str, Any]]:
    """The ``event`` items of one envelope (a header line, then item headers and payloads)."""
    rest = envelope.split(b"\n", 1)[1]
    while rest.strip():
        header_line, rest = rest.split(b"\n", 1)
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        if header.get("type") == "event":
            yield json.loads(payload)


@pytest.fixture
def sentry_server() -> Iterator[SentryServer]:
    server = SentryServer()
    yield server
    shutdown_sentry()
    server.http.shutdown()
    server.http.server_close()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "trendmap.db"


@pytest.fixture
def client(sentry_server: SentryServer, archive: Path) -> Iterator[TestClient]:
    settings = make_settings(f"sqlite:///{archive}", sentry_dsn=sentry_server.dsn)
    with TestClient(create_app(settings)) as test_client:
        assert test_client.post("/v1/trends", json=[record()], headers=write_headers()).is_success
        yield test_client


def _corrupt(archive: Path) -> None:
    """A row written around the service (by hand, a broken migration): its timestamp is not
    one. Reading it is a real fault in the running app, not a client's mistake."""
    with sqlite3.connect(archive) as connection:
        connection.execute(
            "INSERT INTO trends_archive (timestamp, country, topic_label, topic_key, count,"
            " confidence, sources) VALUES ('not a time', 'US', 'x', 'x', 1, 0.5, '[]')"
        )


def test_a_500_is_sent_once_with_its_tags_and_without_the_credential(
    client: TestClient, sentry_server: SentryServer, archive: Path
) -> None:
    _corrupt(archive)
    headers = {**write_headers(), "X-Request-ID": "bug-500"}
    assert client.get("/v1/trends", headers=headers).status_code == 500
    [event] = sentry_server.events()
    tags = event["tags"]
    assert tags["request_id"] == "bug-500"
    assert tags["route"] == "/v1/trends"
    assert tags["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    raw = b"".join(sentry_server.bodies)
    assert WRITE_KEY.encode() not in raw and b"Bearer" not in raw


def test_client_mistakes_send_nothing(client: TestClient, sentry_server: SentryServer) -> None:
    assert client.get("/v1/flows", params={"time_window": "5h"}).status_code == 400
    assert client.get("/v1/nowhere").status_code == 404
    assert client.post("/v1/trends", json=[record()]).status_code == 401
    invalid = client.post("/graphql", json={"query": "{ flows { nonsense } }"})
    assert invalid.json()["errors"][0]["message"].startswith("Cannot query field")
    coerced = client.post(
        "/graphql",
        json={"query": "query($n: Int!) { trends(first: $n) { edges { cursor } } }",
              "variables": {"n": "many"}},
    )  # fmt: skip
    assert coerced.json()["errors"]
    refused = client.post("/graphql", json={"query": '{ flows(timeWindow: "5h") { id } }'})
    assert refused.json()["errors"][0]["extensions"]["code"] == "invalid_parameter"
    assert sentry_server.events() == []


def test_a_masked_graphql_error_is_sent_once_with_its_operation(
    client: TestClient, sentry_server: SentryServer, archive: Path
) -> None:
    _corrupt(archive)
    answer = client.post(
        "/graphql",
        json={"query": "query Recent { trends { edges { node { id } } } }"},
        headers={"X-Request-ID": "bug-gql", "Authorization": f"Bearer {WRITE_KEY}"},
    ).json()
    assert answer["errors"][0]["message"] == "Unexpected error."
    [event] = sentry_server.events()
    tags = event["tags"]
    assert (tags["request_id"], tags["route"]) == ("bug-gql", "/graphql")
    assert (tags["graphql.operation"], tags["graphql.operation_type"]) == ("Recent", "query")
    assert WRITE_KEY.encode() not in b"".join(sentry_server.bodies)


def test_before_send_drops_bodies_and_filters_credentials() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    event = {
        "request": {
            "data": '[{"topic_label": "secret plans"}]',
            "cookies": {"session": "s"},
            "headers": {"Authorization": "Bearer k", "X-Request-ID": "r", "X-Api-Key": "k2"},
        },
        "exception": {"values": [{"value": f"token {jwt} and key my-api-key-1 refused"}]},
        "breadcrumbs": {"values": [{"message": "sent Bearer abc.def"}]},
    }
    scrubbed = before_send(("my-api-key-1",))(event, None)
    request = scrubbed["request"]
    assert "data" not in request and "cookies" not in request
    assert request["headers"] == {
        "Authorization": FILTERED,
        "X-Request-ID": "r",
        "X-Api-Key": FILTERED,
    }
    text = json.dumps(scrubbed)
    assert jwt not in text and "my-api-key-1" not in text and "abc.def" not in text


def test_a_dsn_without_the_extra_is_one_line_and_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("SENTRY_DSN", "http://public@127.0.0.1:9/1")
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # as if not installed
    assert main(["serve", "--port", "9"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: setting SENTRY_DSN:")
    assert "pip install 'trendmap[sentry]'" in line
