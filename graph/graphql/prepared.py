"""PreparedOperations: queries this worker has run once through Strawberry's pipeline, run again
without it.

Strawberry runs every operation through its extensions' hooks: the parser and validation
caches, the limits, the safelist, single-operation and introspection checks, error masking,
warnings, the metrics label and the response cache's recorder, each a context manager entered
and left per request. For a query whose document has been parsed, validated and executed here
before, none of them can decide anything new: validation reads the document, never the
variables (graph.graphql.limits). What is left is graphql-core's execution. So a document that
reached execution as a query is remembered by (document hash, operation name), and the next
request for it, whatever its variables, is executed directly, with what the hooks would have
added (warnings, the label, the recorder's note) added here.

The prepared run only ever answers when it met no error. Errors are logged, masked and
formatted by the pipeline, so a prepared run that met one is dropped and the request goes the
pipeline's way (the pipeline's answer is the one a client gets; a query reads and writes
nothing, so running it twice is safe). Not used while an extension wraps resolvers or traces
operations (tracing on): those must see every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

from graphql import DocumentNode, execute
from strawberry.execution import optimized_is_awaitable
from strawberry.http import GraphQLRequestData
from strawberry.schema import Schema
from strawberry.types import ExecutionResult
from strawberry.utils.await_maybe import await_maybe

from graph.cache.lru import BoundedLRU
from graph.graphql.warnings import collecting_warnings, warnings_extensions

# Documents kept per process: as many as the parser cache keeps (graph.graphql.limits).
PREPARED_OPERATIONS = 64
# Strawberry's own test for awaitable results, as its pipeline passes it to graphql-core.
_IS_AWAITABLE = cast(Callable[[Any], TypeGuard[Awaitable[Any]]], optimized_is_awaitable)


@dataclass(frozen=True, slots=True)
class PreparedOperation:
    """A query document that passed every check here, and what its pipeline run noted."""

    document: DocumentNode
    # The operation's label for the request histogram (None with metrics off).
    label: str | None
    # Every root field may be kept by the response cache (graph.graphql.response_cache).
    cacheable: bool


class PreparedOperations:
    """Prepared queries by (document hash, operation name), the least recently used dropped
    past ``max_entries``."""

    def __init__(self, max_entries: int = PREPARED_OPERATIONS, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.runs = 0  # answered by a prepared run (for tests and curiosity)
        # Counted in entries only: a document is kept only when the parser cache would keep
        # it, at most CACHED_DOCUMENT_CHARS long (graph.graphql.transport).
        self._entries: BoundedLRU[tuple[str, str | None], PreparedOperation] = BoundedLRU(
            max_entries=max_entries, max_bytes=max_entries
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, document_hash: str, operation_name: str | None) -> PreparedOperation | None:
        return self._entries.get((document_hash, operation_name)) if self.enabled else None

    def remember(
        self, document_hash: str, operation_name: str | None, operation: PreparedOperation
    ) -> None:
        if self.enabled:
            self._entries.put((document_hash, operation_name), operation, size=1)

    async def run(
        self,
        schema: Schema,
        operation: PreparedOperation,
        data: GraphQLRequestData,
        context: Any,
    ) -> ExecutionResult | None:
        """``data`` executed as ``operation``, as Strawberry's pipeline would have answered it;
        None when the run met an error (the pipeline answers that request)."""
        with collecting_warnings() as warnings:
            result = await await_maybe(
                execute(
                    schema._schema,
                    operation.document,
                    root_value=None,
                    context_value=context,
                    variable_values=data.variables,
                    operation_name=data.operation_name,
                    executor_class=schema.execution_context_class,
                    is_awaitable=_IS_AWAITABLE,
                    operation_extensions=data.extensions,
                )
            )
        if result.errors:
            return None
        self.runs += 1
        return ExecutionResult(
            data=result.data, errors=None, extensions=warnings_extensions(warnings)
        )
