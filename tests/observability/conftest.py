"""Fixtures shared by the tracing tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graph.observability.tracing import shutdown_tracing


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans in memory; tracing is shut down after the test, whatever it started."""
    spans = InMemorySpanExporter()
    yield spans
    shutdown_tracing()
