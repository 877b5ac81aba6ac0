"""OperationSpan: one span per GraphQL operation, named by its type and name (imported only
while tracing is on, by graph.observability.tracing).

Strawberry's own OpenTelemetryExtension is not used: it records the document's text and every
resolver's arguments on its spans, and opens a span per resolved field. This one records the
operation's name and type and how many errors it had, nothing a client sent as a value.
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from graph.observability.tracing import span


class OperationSpan(SchemaExtension):
    """A ``graphql.operation`` span around parsing, validation and execution."""

    def on_operation(self) -> Iterator[None]:
        with span("graphql.operation") as traced:
            yield
            context = self.execution_context
            name = context.operation_name
            kind = None
            if context.graphql_document is not None:
                try:
                    kind = context.operation_type.value
                except Exception:  # noqa: BLE001 - no such operation: a request error, already told
                    kind = None
            if kind is not None:
                traced.set("graphql.operation.type", kind)
            if name:
                traced.set("graphql.operation.name", name)
            traced.rename(" ".join(part for part in ("graphql", kind, name) if part))
            result = context.result
            errors = getattr(result, "errors", None) or context.pre_execution_errors or []
            traced.set("graphql.errors", len(errors))
