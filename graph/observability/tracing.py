"""Tracing: OpenTelemetry spans when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_TRACES_EXPORTER``
is set (``trendmap[otel]``), and :func:`span`, the facade our own steps use.

The maintained instrumentations make the spans where they exist: each HTTP request and
WebSocket (ASGI, honouring an incoming W3C ``traceparent``), PostgreSQL and SQLite statements
(SQLAlchemy), Redis commands and feed fetches (httpx). Our own domain steps (the GraphQL
operation, a cache lookup, an ingest, a live publication, a poll round) open theirs through
:func:`span`, which returns one shared do-nothing object while tracing is off: no import of
``opentelemetry`` and no measurable cost on the cached-read path. Attributes name what a step
did (operation name and type, hit or miss, record counts), never a query's variables or a
record's content.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.middleware import Middleware
    from strawberry.extensions import SchemaExtension

    from graph.settings import Settings

__all__ = [
    "asgi_middleware",
    "enabled",
    "graphql_extensions",
    "instrument_engine",
    "setup_tracing",
    "shutdown_tracing",
    "span",
]

Attribute = str | bool | int | float


class _NoSpan:
    """What :func:`span` gives while tracing is off: one shared object that does nothing."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def set(self, _key: str, _value: Attribute) -> None:
        return None

    def rename(self, _name: str) -> None:
        return None


_NO_SPAN = _NoSpan()


class _Span(_NoSpan):
    """A real span, current while the block runs; exceptions are recorded on it."""

    def __init__(self, tracer: Tracer, name: str, attributes: Mapping[str, Attribute]) -> None:
        self._manager = tracer.start_as_current_span(name, attributes=attributes)

    def __enter__(self) -> _Span:
        self._span = self._manager.__enter__()
        return self

    def __exit__(  # type: ignore[override]
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._manager.__exit__(kind, exc, traceback)

    def set(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)

    def rename(self, name: str) -> None:
        self._span.update_name(name)


class _State:
    provider: TracerProvider | None = None
    tracer: Tracer | None = None
    engines = False  # SQLAlchemy's instrumentation is on


_state = _State()


def span(name: str, attributes: Mapping[str, Attribute] | None = None) -> _NoSpan:
    """A span around a block (``with span("cache.lookup") as s: ...; s.set("cache.hit", hit)``),
    a child of the current one; nothing at all while tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        return _NO_SPAN
    return _Span(tracer, name, attributes or {})


def enabled() -> bool:
    return _state.tracer is not None


def wanted(settings: Settings) -> bool:
    """Whether the settings ask for tracing: an OTLP endpoint, or an exporter other than none."""
    exporter = settings.otel_traces_exporter
    if exporter is not None:
        return exporter != "none"
    return bool(settings.otel_exporter_otlp_endpoint)


def _exporter(settings: Settings) -> SpanExporter:
    if settings.otel_traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = settings.otel_exporter_otlp_endpoint
    # Without an endpoint the exporter reads OTEL_EXPORTER_OTLP_*ENDPOINT itself (default
    # localhost:4318); with one it posts to its /v1/traces, as the specification says.
    return OTLPSpanExporter(endpoint=f"{base.rstrip('/')}/v1/traces" if base else None)


def setup_tracing(
    settings: Settings, exporter: SpanExporter | None = None, sampler: Sampler | None = None
) -> bool:
    """Start tracing for this process when the settings ask for it, or with ``exporter`` (tests
    pass an in-memory one; its spans are exported as each ends). The sampler is the SDK's
    (``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``) unless one is given. True when
    tracing is on; already on, it is left as it is."""
    if _state.tracer is not None:
        return True
    if exporter is None and not wanted(settings):
        return False
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from graph.observability import log
    from graph.observability.sampled import PresetTraceIds

    resource = Resource.create({"service.name": settings.otel_service_name})
    provider = TracerProvider(sampler=sampler, resource=resource, id_generator=PresetTraceIds())
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _state.provider = provider
    _state.tracer = provider.get_tracer("trendmap")
    log.trace_ids = _trace_ids
    return True


def _trace_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids in hex, for the log lines; None outside a span."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def asgi_middleware() -> list[Middleware]:
    """The ASGI instrumentation, outermost: one server span per request or WebSocket, a child
    of the caller's ``traceparent`` when it sends one; a request the sampler drops skips it
    (graph.observability.sampled). None while tracing is off."""
    if _state.provider is None:
        return []
    from starlette.middleware import Middleware

    from graph.observability.sampled import SampledTracing

    return [Middleware(SampledTracing, provider=_state.provider)]


def instrument_engine(engine: AsyncEngine) -> None:
    """Spans for the engine's statements (PostgreSQL or SQLite), while tracing is on."""
    if _state.provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range stops below SQLAlchemy 2.1, whose engine events it uses unchanged
    # (tests/observability/test_tracing.py checks the statements' spans).
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=_state.provider, skip_dep_check=True
    )
    _state.engines = True


def uninstrument_engines() -> None:
    """No more spans for the engines' statements (the lifespan ends)."""
    if not _state.engines:
        return
    _state.engines = False
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().uninstrument()


def shutdown_tracing() -> None:
    """Export what is pending and stop tracing (a no-op when it is off)."""
    provider = _state.provider
    if provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    from graph.observability import log

    uninstrument_engines()
    HTTPXClientInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    log.trace_ids = None
    _state.provider = _state.tracer = None
    provider.shutdown()


def graphql_extensions() -> list[type[SchemaExtension]]:
    """The schema extension that gives each GraphQL operation its span; none while off."""
    if _state.tracer is None:
        return []
    from graph.observability.graphql_span import OperationSpan

    return [OperationSpan]
