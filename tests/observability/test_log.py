"""One JSON log line per request, with the fields DESIGN.md names."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from starlette.testclient import TestClient

from graph.http.app import create_app
from graph.observability.log import configure_logging, logger
from tests.support.factories import AS_OF, make_settings


@pytest.fixture
def info_client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, log_level="INFO"))) as client:
        yield client


def test_a_flows_request_logs_one_line_with_its_fields(info_client: TestClient) -> None:
    client = info_client
    with structlog.testing.capture_logs() as logs:
        client.get(
            "/v1/flows",
            params={"countries": "us,br", "time_window": "6h", "as_of": AS_OF.isoformat()},
            headers={"X-Request-ID": "log-test-1"},
        )
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["request_id"] == "log-test-1"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/flows", 200)
    assert line["latency_ms"] >= 0
    assert line["cache_hit"] is False
    assert (line["countries"], line["time_window"], line["flow_count"]) == ("BR,US", "6h", 0)


def test_errors_are_logged_with_their_status(info_client: TestClient) -> None:
    with structlog.testing.capture_logs() as logs:
        info_client.get("/v1/flows", params={"time_window": "5h"})
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == 400


def test_lines_are_json(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    configure_logging("INFO")
    logger.info("hello", answer=42)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "hello" and line["answer"] == 42 and line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_level_filters(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, log_level="WARNING"))) as client:
        client.get("/health")
    assert '"event":"request"' not in capsys.readouterr().out


def test_commands_log_to_whatever_stderr_is_when_they_log(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from graph.observability.log import configure_logging, logger

    configure_logging("INFO", stderr=True)
    try:
        later = io.StringIO()
        monkeypatch.setattr(sys, "stderr", later)  # e.g. a test's capture, after configuring
        logger.info("feed failed", country="US")
        assert json.loads(later.getvalue())["event"] == "feed failed"
    finally:
        configure_logging("INFO")


def test_request_ids_are_unique_hex_and_new_after_a_fork() -> None:
    import os

    from graph.observability.log import new_request_id

    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write)
    forked = os.read(read, 64).decode()
    os.close(read)
    assert forked[:20] != next(iter(ids))[:20], "a forked worker drew the same prefix"


@pytest.mark.parametrize(("level", "lines"), [("WARNING", 0), ("INFO", 2)])
def test_answers_from_the_front_door_log_at_the_configured_level(
    capsys: pytest.CaptureFixture[str], database_url: str, level: str, lines: int
) -> None:
    """The front door answers the repeated read itself, and writes its line only when INFO
    lines are written (it asks the level configure_logging set, not structlog each time)."""
    with TestClient(create_app(make_settings(database_url, log_level=level))) as client:
        capsys.readouterr()
        for _ in range(2):
            assert client.get("/v1/flows", params={"time_window": "6h"}).status_code == 200
        out = capsys.readouterr().out
    requests = [json.loads(line) for line in out.splitlines() if '"event":"request"' in line]
    assert len(requests) == lines
    if lines:
        assert requests[1].get("fast_path") is True
