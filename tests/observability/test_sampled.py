"""Sampling decided before the ASGI instrumentation: a dropped request makes no span at all
(nor does anything inside it), a kept one is traced as before, the share kept is the sampler's
ratio (not its square), and a caller's traceparent still decides for its request."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from starlette.testclient import TestClient

from graph.http.app import create_app
from graph.observability.tracing import setup_tracing
from tests.support.factories import make_settings

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FLOWS = {"time_window": "24h"}
QUERY = {"query": "query Hot { hotspots { country } }"}


def _client(database_url: str, exporter: InMemorySpanExporter, sampler: Sampler) -> TestClient:
    settings = make_settings(database_url, log_level="INFO")
    assert setup_tracing(settings, exporter=exporter, sampler=sampler)
    return TestClient(create_app(settings))


def _logged(out: str, request_id: str) -> dict[str, object]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("request_id") == request_id]
    return line


def test_a_dropped_request_makes_no_span_and_keeps_a_trace_id_in_its_log_line(
    database_url: str, exporter: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    with _client(database_url, exporter, ParentBased(TraceIdRatioBased(0.0))) as client:
        capsys.readouterr()
        for n in range(3):
            headers = {"X-Request-ID": f"dropped-{n}"}
            assert client.get("/v1/flows", params=FLOWS, headers=headers).status_code == 200
        assert client.post("/graphql", json=QUERY, headers={"X-Request-ID": "dropped-q"}).is_success
        out = capsys.readouterr().out
    # Neither the server span nor any inside it (SQL, the cache lookup, the GraphQL operation).
    assert exporter.get_finished_spans() == ()
    ids = {_logged(out, rid)["trace_id"] for rid in ("dropped-0", "dropped-1", "dropped-q")}
    assert len(ids) == 3 and all(len(str(i)) == 32 for i in ids)


def test_a_kept_request_is_one_trace_under_the_id_drawn_for_it(
    database_url: str, exporter: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    with _client(database_url, exporter, ParentBased(TraceIdRatioBased(1.0))) as client:
        exporter.clear()
        capsys.readouterr()
        assert client.post("/graphql", json=QUERY, headers={"X-Request-ID": "kept"}).is_success
        out = capsys.readouterr().out
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.name == "POST /graphql"]
    assert server.parent is None
    trace_id = server.context.trace_id
    inside = [s for s in spans if s.context.trace_id == trace_id]
    assert "graphql query Hot" in {s.name for s in inside}
    assert _logged(out, "kept")["trace_id"] == format(trace_id, "032x")


def test_the_share_kept_is_the_samplers_ratio(
    database_url: str, exporter: InMemorySpanExporter
) -> None:
    """Decided once per request: a second draw by the instrumentation would keep a quarter at
    a ratio of a half."""
    requests = 400
    with _client(database_url, exporter, ParentBased(TraceIdRatioBased(0.5))) as client:
        exporter.clear()
        for _ in range(requests):
            assert client.get("/v1/flows", params=FLOWS).status_code == 200
    kept = [s for s in exporter.get_finished_spans() if s.name == "GET /v1/flows"]
    # Binomial(400, 0.5): 200 +- 10; its square would give 100 +- 8.7.
    assert 150 <= len(kept) <= 250


@pytest.mark.parametrize(("ratio", "flags", "traced"), [(0.0, "01", True), (1.0, "00", False)])
def test_a_callers_traceparent_decides_for_its_request(
    database_url: str, exporter: InMemorySpanExporter, ratio: float, flags: str, traced: bool
) -> None:
    traceparent = f"00-{CALLER_TRACE}-00f067aa0ba902b7-{flags}"
    with _client(database_url, exporter, ParentBased(TraceIdRatioBased(ratio))) as client:
        exporter.clear()
        headers = {"traceparent": traceparent}
        assert client.get("/v1/flows", params=FLOWS, headers=headers).status_code == 200
    spans = exporter.get_finished_spans()
    in_callers = [s for s in spans if format(s.context.trace_id, "032x") == CALLER_TRACE]
    assert bool(in_callers) is traced
    assert len(in_callers) == len(spans)
