"""Prometheus metrics at ``/metrics``: request latency, the cache, live subscriptions, ingests,
admission and breakers.

The request path pays for one histogram observation and nothing else. Every other figure
(cache hits and misses, live subscriptions, deliveries and drops, ingested records, admission,
breaker states) is a plain counter the service already keeps in memory, read by a collector
when Prometheus scrapes, so hot paths such as a fan-out to thousands of subscribers never touch
prometheus_client.

Labels stay bounded: REST requests are labelled by the route's path template (``unmatched``
for any unknown path), GraphQL requests by operation type and root fields (``query flows``),
never by client-chosen operation names, and the status by class (``2xx``).

Metrics are per process. With ``--workers N`` a scrape is answered by whichever worker the
kernel hands the connection to, so scrape one worker per container (the usual deployment) or
put each worker on its own port. prometheus_client's multiprocess mode is not used: it would
aggregate the counters but not the live figures, which are read from each worker's memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

if TYPE_CHECKING:
    from graph.http.middleware.admission import Admission
    from graph.wiring import AppState

METRICS_PATH = "/metrics"
BREAKER_STATES = ("closed", "open", "half-open")
# From a cached answer (about a millisecond) to a cold computation (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_OPERATION_KEY = "metrics_operation"
_LABEL_MEMO_SIZE = 1024


class Breaker(Protocol):
    """What the collector needs of a circuit breaker (graph.breaker.CircuitBreaker has it)."""

    def snapshot(self) -> Mapping[str, object]: ...


# Every feed breaker the process holds, as (source, country, breaker); read at each scrape.
BreakerSource = Callable[[], Iterable[tuple[str, str, Breaker]]]


class Metrics:
    """One app's registry: the request histogram and the collector of in-memory figures.

    ``state`` is set by the lifespan (the figures need it); ``admission`` and ``breakers`` are
    set by whoever owns them. Until then their metrics are simply absent from a scrape.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "trendmap_request_duration_seconds",
            "HTTP request latency, by route (GraphQL: by operation) and status class.",
            ("route", "operation", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.state: AppState | None = None
        self.admission: Admission | None = None
        self.breakers: BreakerSource | None = None
        self.registry.register(_StateCollector(self))
        # The labelled children, so a request does not go through labels()'s lock and checks.
        self._observers: dict[tuple[str, str, str], Callable[[float], None]] = {}

    def observe(self, route: str, operation: str, status: int, seconds: float) -> None:
        key = (route, operation, f"{status // 100}xx")
        observe = self._observers.get(key)
        if observe is None:
            observe = self._observers[key] = self.latency.labels(*key).observe
        observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape's body and content type (OpenMetrics when the scraper asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StateCollector(Collector):
    """The figures the service keeps as plain counters, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        state = self.metrics.state
        if state is not None:
            yield from _state_metrics(state)
        admission = self.metrics.admission
        if admission is not None:
            yield from _admission_metrics(admission)
        if self.metrics.breakers is not None:
            yield from _breaker_metrics(self.metrics.breakers())


def _state_metrics(state: AppState) -> Iterator[Metric]:
    lookups = CounterMetricFamily(
        "trendmap_cache_lookups",
        "Answers served from the response cache (hit) or computed (miss), by kind.",
        labels=("kind", "result"),
    )
    for (kind, hit), n in sorted(state.cache.lookups.items()):
        lookups.add_metric((kind, "hit" if hit else "miss"), n)
    yield lookups

    breaker = GaugeMetricFamily(
        "trendmap_cache_breaker_state",
        "The response cache store's circuit breaker: 1 for its current state.",
        labels=("state",),
    )
    current = state.cache.breaker.snapshot()["state"]
    for name in BREAKER_STATES:
        breaker.add_metric((name,), 1.0 if current == name else 0.0)
    yield breaker

    live = state.broadcaster
    yield GaugeMetricFamily(
        "trendmap_subscriptions_active",
        "Live hotFlows subscriptions on this worker.",
        value=live.subscriber_count,
    )
    yield CounterMetricFamily(
        "trendmap_subscription_deliveries",
        "Flows handed to live subscribers.",
        value=live.delivered,
    )
    yield CounterMetricFamily(
        "trendmap_subscriptions_dropped",
        "Live subscribers dropped for falling behind (closed with 1008).",
        value=live.dropped,
    )

    records = CounterMetricFamily(
        "trendmap_ingested_records",
        "Records stored through the service, by outcome of the upsert.",
        labels=("result",),
    )
    for outcome, n in state.service.ingested.items():
        records.add_metric((outcome,), n)
    yield records


def _admission_metrics(admission: Admission) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "trendmap_inflight_requests", "HTTP requests being served.", value=admission.inflight
    )
    yield GaugeMetricFamily(
        "trendmap_queued_requests", "HTTP requests waiting for a slot.", value=admission.queued
    )
    yield GaugeMetricFamily(
        "trendmap_inflight_requests_limit",
        "MAX_INFLIGHT_REQUESTS: the most requests served at once.",
        value=admission.max_inflight,
    )
    yield CounterMetricFamily(
        "trendmap_rejected_requests",
        "HTTP requests refused with 503 because the worker was at capacity.",
        value=admission.rejected,
    )


def _breaker_metrics(breakers: Iterable[tuple[str, str, Breaker]]) -> Iterator[Metric]:
    states = GaugeMetricFamily(
        "trendmap_source_breaker_state",
        "Each feed source's circuit breaker per country: 1 for its current state.",
        labels=("source", "country", "state"),
    )
    failures = GaugeMetricFamily(
        "trendmap_source_breaker_failures",
        "Consecutive failures counted by each feed source's breaker per country.",
        labels=("source", "country"),
    )
    for source, country, breaker in breakers:
        snapshot = breaker.snapshot()
        current = snapshot.get("state")
        for name in BREAKER_STATES:
            states.add_metric((source, country, name), 1.0 if current == name else 0.0)
        count = snapshot.get("consecutive_failures", 0)
        failures.add_metric((source, country), float(count) if isinstance(count, int) else 0.0)
    yield states
    yield failures


class MetricsMiddleware:
    """Times every HTTP request, and answers ``GET /metrics`` itself.

    Outermost, so the time includes every middleware (rate limits, admission) and their
    refusals are counted too; and so ``/metrics`` is never rate-limited or refused for load
    (a scraper that gets 503s when the service is busiest would see nothing when it matters).
    A request refused before routing is labelled with its path when that is one of ``paths``
    (the app's route templates: ours have no parameters), else ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, paths: Iterable[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH:
            await self._scrape(scope, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", None)
            if path is None and scope["path"] in self.paths:
                path = scope["path"]
            if path is None:
                route_label, operation = "unmatched", scope["method"]
            else:
                route_label = path
                state = scope.get("state") or {}
                operation = state.get(_OPERATION_KEY) or (
                    "not executed" if path == "/graphql" else scope["method"]
                )
            self.metrics.observe(route_label, operation, status, time.perf_counter() - started)

    async def _scrape(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"", "text/plain", [(b"allow", b"GET, HEAD")])
            return
        accept = None
        for key, value in scope["headers"]:
            if key == b"accept":
                accept = value.decode("latin-1")
        body, content_type = self.metrics.exposition(accept)
        await _respond(send, 200, b"" if scope["method"] == "HEAD" else body, content_type)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


_labels: dict[tuple[str, str | None], str] = {}


def operation_label(document: Any, operation_type: str, operation_name: str | None) -> str:
    """``query flows``, ``query __schema``, ``mutation ingestTrends``: the type and the sorted
    root field names of the operation executed (validated against the schema, so bounded)."""
    fields: set[str] = set()
    for definition in getattr(document, "definitions", ()):
        if getattr(definition, "kind", None) != "operation_definition":
            continue
        name = getattr(definition.name, "value", None) if definition.name else None
        if operation_name is not None and name != operation_name:
            continue
        for selection in definition.selection_set.selections:
            if getattr(selection, "kind", None) == "field":
                fields.add(selection.name.value)
            else:
                fields.add("fragment")
        break
    return f"{operation_type} {','.join(sorted(fields))}".strip()


class OperationLabel(SchemaExtension):
    """Name the GraphQL operation of an HTTP request for MetricsMiddleware's histogram."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        connection = getattr(context.context, "connection", None)
        if isinstance(connection, HTTPConnection) and connection.scope["type"] == "http":
            key = (context.query or "", context.operation_name)
            label = _labels.get(key)
            if label is None:
                label = operation_label(
                    context.graphql_document,
                    context.operation_type.value,
                    context.operation_name,
                )
                if len(_labels) >= _LABEL_MEMO_SIZE:
                    _labels.clear()
                _labels[key] = label
            connection.scope.setdefault("state", {})[_OPERATION_KEY] = label
        yield
