"""Prometheus metrics: Metrics (one app's registry: the request histogram, and collectors
that read the service's in-memory figures at scrape time) and the GraphQL operation label.
graph.http.middleware.metrics times requests and serves ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import HTTPConnection
from strawberry.extensions import SchemaExtension

if TYPE_CHECKING:
    from graph.wiring import AppState

BREAKER_STATES = ("closed", "open", "half-open")
# From a cached answer (about a millisecond) to a cold computation (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OPERATION_KEY = "metrics_operation"
_LABEL_MEMO_SIZE = 1024
_STATUS_CLASSES = {status: f"{status // 100}xx" for status in range(100, 600)}


class Breaker(Protocol):
    """What the collector needs of a circuit breaker (graph.breaker.CircuitBreaker has it)."""

    def snapshot(self) -> Mapping[str, object]: ...


class AdmissionFigures(Protocol):
    """What the collector reads of admission control (graph.http.middleware.admission)."""

    @property
    def inflight(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def max_inflight(self) -> int: ...
    @property
    def rejected(self) -> int: ...


class Metrics:
    """One app's registry: the request histogram, admission's figures when given, and whatever
    :meth:`watch` or :meth:`register` adds while the app runs."""

    def __init__(self, *, admission: AdmissionFigures | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "trendmap_request_duration_seconds",
            "HTTP request latency, by route (GraphQL: by operation) and status class.",
            ("route", "operation", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if admission is not None:
            self.registry.register(_AdmissionCollector(admission))
        # The labelled children, so a request does not go through labels()'s lock and checks.
        self._observers: dict[tuple[str, str, str], Callable[[float], None]] = {}

    def register(self, collector: Collector) -> Callable[[], None]:
        """Add a collector to the scrape; the function returned removes it."""
        self.registry.register(collector)
        return lambda: self.registry.unregister(collector)

    def watch(self, state: AppState) -> Callable[[], None]:
        """Scrape the running app's figures (cache, subscriptions, ingests, feed breakers)
        until the function returned is called (the lifespan's end)."""
        return self.register(_StateCollector(state))

    def observe(self, route: str, operation: str, status: int, seconds: float) -> None:
        key = (route, operation, _STATUS_CLASSES.get(status) or f"{status // 100}xx")
        observe = self._observers.get(key)
        if observe is None:
            observe = self._observers[key] = self.latency.labels(*key).observe
        observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape's body and content type (OpenMetrics when the scraper asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StateCollector(Collector):
    """The figures the running app keeps as plain counters, read at scrape time."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from _state_metrics(self.state)
        breakers = self.state.feeds.breakers()
        if breakers:
            yield from _breaker_metrics(breakers)


class _AdmissionCollector(Collector):
    def __init__(self, admission: AdmissionFigures) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        return _admission_metrics(self.admission)


class BreakerCollector(Collector):
    """Circuit breakers as (source, country, breaker), read from ``breakers`` at each scrape."""

    def __init__(self, breakers: Callable[[], Iterable[tuple[str, str, Breaker]]]) -> None:
        self.breakers = breakers

    def collect(self) -> Iterator[Metric]:
        return _breaker_metrics(self.breakers())


def _state_metrics(state: AppState) -> Iterator[Metric]:
    lookups = CounterMetricFamily(
        "trendmap_cache_lookups",
        "Answers served from the response cache (hit) or computed (miss), by kind.",
        labels=("kind", "result"),
    )
    for (kind, hit), n in sorted(state.cache.lookups.items()):
        lookups.add_metric((kind, "hit" if hit else "miss"), n)
    yield lookups

    # Entries this worker's writes dropped to keep the cache within CACHE_MAX_ENTRIES/BYTES.
    yield CounterMetricFamily(
        "trendmap_cache_evictions",
        "Cached entries dropped by this worker's writes to keep within the cache's bounds.",
        value=state.cache.store.evictions if state.cache.store is not None else 0,
    )

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


def _admission_metrics(admission: AdmissionFigures) -> Iterator[Metric]:
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
            connection.scope.setdefault("state", {})[OPERATION_KEY] = label
        yield
