"""GraphQL errors in the logs: a client's mistake is one JSON line without a traceback; a bug
is one JSON line with its stack. Nothing else is written, on stdout or stderr."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.http.app import create_app
from graph.observability.log import configure_logging
from tests.support.factories import make_settings, write_headers

MISTAKES: list[dict[str, Any]] = [
    {"query": '{ flows(timeWindow: "5h") { heat } }'},  # a bad argument (a domain error)
    {"query": "{ flows "},  # syntax
    {"query": "{ flows { nope } }"},  # validation
    {"query": "query Q($n: Int) { hotspots(limit: $n) { country } }", "variables": {"n": "x"}},
    {"query": "query A { dataSpan { records } } query B { dataSpan { records } }"},
    {"query": "mutation { ingestTrends(trends: [{country: 1}]) { received } }"},
]


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Everything written since the last read: each line must be a JSON object."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.strip() == "", captured.err
    parsed = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in parsed)
    return parsed


def test_a_clients_mistakes_are_one_line_each_without_a_traceback(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    with TestClient(create_app(make_settings(database_url, log_level="INFO"))) as client:
        lines(capsys)
        for body in MISTAKES:
            answer = client.post("/graphql", json=body, headers=write_headers())
            assert answer.json()["errors"], body
            logged = lines(capsys)
            assert not [line for line in logged if "Traceback" in json.dumps(line)], logged
            assert not [line for line in logged if line["level"] in ("error", "critical")]
            [refused] = [line for line in logged if line["event"] == "graphql client error"]
            errors = answer.json()["errors"]
            assert refused["level"] == "info" and refused["count"] == len(errors), refused
            assert refused["errors"][0]["message"] == errors[0]["message"]
    lines(capsys)


def test_many_errors_are_still_one_bounded_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'l.db'}", log_level="INFO")
    with TestClient(create_app(settings)) as client:
        lines(capsys)
        fields = " ".join(f"nope{i}" for i in range(40))
        query = "{ dataSpan { " + fields + " } " + "x" * 2000 + " }"
        assert len(client.post("/graphql", json={"query": query}).json()["errors"]) > 5
        [refused] = [line for line in lines(capsys) if line["event"] == "graphql client error"]
        assert refused["count"] > 5 and len(refused["errors"]) == 5
        assert len(json.dumps(refused)) < 5 * 400


def test_a_bug_is_one_line_with_its_stack(
    capsys: pytest.CaptureFixture[str], schemaless_postgres_url: str
) -> None:
    """A database without the schema fails inside a resolver: a bug as far as GraphQL knows."""
    settings = make_settings(schemaless_postgres_url, auto_migrate=False, log_level="INFO")
    with TestClient(create_app(settings)) as client:
        lines(capsys)
        answer = client.post("/graphql", json={"query": "{ trends { totalCount } }"})
        assert answer.json()["errors"][0]["message"] == "Unexpected error."
        logged = lines(capsys)
    [bug] = [line for line in logged if line["level"] == "error"]
    assert bug["event"] == "graphql error" and bug["path"] == ["trends"]
    assert bug["exception"].startswith("Traceback (most recent call last):")
    assert "trends_archive" in bug["exception"]


def test_strawberrys_own_log_records_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        raise RuntimeError("in a WebSocket task")
    except RuntimeError:
        logging.getLogger("strawberry.ws.task").exception("Exception in worker task")
    [line] = lines(capsys)
    assert line["event"] == "Exception in worker task" and line["level"] == "error"
    assert line["logger"] == "strawberry.ws.task"
    assert "RuntimeError: in a WebSocket task" in line["exception"]
