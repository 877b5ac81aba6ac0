"""Tracing: one request is one trace (the caller's, when it sends a traceparent) holding the
spans of its steps, parented as they ran; log lines carry its id; and with neither Sentry nor
tracing configured the app imports neither."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from graph.http.app import create_app
from graph.observability.tracing import setup_tracing, span
from tests.support.factories import AS_OF, make_settings, record, write_headers
from tests.support.servers import RedisServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _traced_client(database_url: str, redis_url: str, exporter: InMemorySpanExporter) -> TestClient:
    settings = make_settings(database_url, redis_url=redis_url, log_level="INFO")
    assert setup_tracing(settings, exporter=exporter)
    return TestClient(create_app(settings))


def _in_trace(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    """The finished spans of the caller's trace (background rounds have traces of their own)."""
    spans = exporter.get_finished_spans()
    return tuple(s for s in spans if format(s.context.trace_id, "032x") == TRACE_ID)


def _system(spans: tuple[ReadableSpan, ...], system: str) -> list[ReadableSpan]:
    """The spans of one database or store's calls."""
    return [s for s in spans if s.attributes and s.attributes.get("db.system") == system]


def _by_id(spans: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def _ancestors(s: ReadableSpan, index: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while s.parent is not None and s.parent.span_id in index:
        s = index[s.parent.span_id]
        names.append(s.name)
    return names


@pytest.mark.postgres
def test_a_request_is_one_trace_with_its_steps_parented(
    postgres_url: str,
    throwaway_redis: RedisServer,
    exporter: InMemorySpanExporter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _traced_client(postgres_url, throwaway_redis.url, exporter) as client:
        assert client.post("/v1/trends", json=[record()], headers=write_headers()).is_success
        exporter.clear()
        capsys.readouterr()
        params = {"time_window": "24h", "as_of": AS_OF.isoformat()}
        headers = {"traceparent": TRACEPARENT, "X-Request-ID": "traced-1"}
        assert client.get("/v1/flows", params=params, headers=headers).status_code == 200
        request_spans = _in_trace(exporter)
        exporter.clear()
        query = {"query": "query Hot { hotspots { country } }"}
        assert client.post("/graphql", json=query, headers={"traceparent": TRACEPARENT}).is_success
        graphql_spans = _in_trace(exporter)
    out = capsys.readouterr().out

    index = _by_id(request_spans)
    [server] = [s for s in request_spans if s.name == "GET /v1/flows"]
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"  # type: ignore[union-attr]
    [lookup] = [s for s in request_spans if s.name == "cache.lookup"]
    assert lookup.attributes == {"cache.kind": "flows", "cache.hit": False}
    assert "GET /v1/flows" in _ancestors(lookup, index)
    redis = _system(request_spans, "redis")
    sql = _system(request_spans, "postgresql")
    assert redis and sql
    for child in (*redis, *sql):
        assert "GET /v1/flows" in _ancestors(child, index)
    assert any("cache.lookup" in _ancestors(s, index) for s in sql)  # a miss computes inside it

    [operation] = [s for s in graphql_spans if s.name == "graphql query Hot"]
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.name"] == "Hot"
    assert operation.attributes["graphql.operation.type"] == "query"
    assert "POST /graphql" in _ancestors(operation, _by_id(graphql_spans))

    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    [logged] = [line for line in lines if line.get("request_id") == "traced-1"]
    assert logged["trace_id"] == TRACE_ID


def test_an_ingest_span_counts_records_and_the_publisher_traces_its_round(
    tmp_path: Path, throwaway_redis: RedisServer, exporter: InMemorySpanExporter
) -> None:
    with _traced_client(f"sqlite:///{tmp_path / 'a.db'}", throwaway_redis.url, exporter) as c:
        batch = [record(), record("BR")]
        assert c.post("/v1/trends", json=batch, headers=write_headers()).is_success
        c.get("/health/ready")  # the publisher's round runs meanwhile
        for _ in range(200):
            if any(s.name == "live.publish" for s in exporter.get_finished_spans()):
                break
            c.get("/health")
    spans = exporter.get_finished_spans()
    [ingest] = [s for s in spans if s.name == "trendmap.ingest"]
    assert ingest.attributes is not None
    assert (ingest.attributes["ingest.records"], ingest.attributes["ingest.inserted"]) == (2, 2)
    assert "POST /v1/trends" in _ancestors(ingest, _by_id(spans))
    sqlite = _system(spans, "sqlite")
    assert any("trendmap.ingest" in _ancestors(s, _by_id(spans)) for s in sqlite)
    assert any(s.name == "live.publish" for s in spans)


def test_the_facade_does_nothing_while_tracing_is_off() -> None:
    with span("anything", {"a": 1}) as off:
        off.set("b", 2)
    assert span("anything") is off  # one shared object: nothing made per call


_IMPORTS_NOTHING = """
import sys
from starlette.testclient import TestClient
from graph.http.app import create_app
from tests.support.factories import make_settings
with TestClient(create_app(make_settings(sys.argv[1]))) as client:
    assert client.get("/v1/flows").status_code == 200
    assert client.get("/v1/flows").status_code == 200
    assert client.post("/graphql", json={"query": "{ hotspots { country } }"}).status_code == 200
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("sentry_sdk", "opentelemetry"))
print(loaded)
"""


def test_with_both_off_the_app_imports_neither(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_NOTHING, f"sqlite:///{tmp_path / 'a.db'}"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
