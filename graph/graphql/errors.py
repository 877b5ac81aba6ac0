"""GraphQL errors: the client's (shown as they are, logged as one line) and bugs (masked to
"Unexpected error.", logged as one line with their stack); and GraphQL's rule that a document
with several operations names the one to run.

A request error comes from the request itself, before any field runs: its syntax, validation,
a variable's value, or which operation to run. graphql-core keeps the scalar's own refusal as
the ``original_error`` of a variable's coercion error, so "has an original error" does not mean
"foreign": such errors are told apart by where they are (no path, at a variable definition)
and by what was raised (what a scalar raises to refuse a value).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import strawberry
from graphql import GraphQLError, OperationDefinitionNode, VariableDefinitionNode
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext

from graph.core.errors import TrendmapError
from graph.observability.log import logger, request_id_of
from graph.observability.sentry import report_exception

# Which operation to run (none, an unknown name, a type the transport does not carry).
_OPERATION_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)
# What a scalar raises to refuse a variable's value (GraphQL's own scalars raise GraphQLError).
_REFUSED_VALUE = (GraphQLError, ValueError, TypeError)
MULTIPLE_OPERATIONS = "Must provide operation name if query contains multiple operations."
# A client's errors are logged as one line, whatever it sent: at most this many messages, each
# cut to this many characters (a message may quote the value it refuses).
_LOGGED_ERRORS = 5
_LOGGED_CHARS = 300


def is_request_error(error: GraphQLError) -> bool:
    """Whether the request itself was refused before any field ran."""
    if error.path is not None:
        return False
    original = error.original_error
    if original is None or isinstance(original, _OPERATION_ERRORS):
        return True
    at_variable = any(isinstance(node, VariableDefinitionNode) for node in error.nodes or ())
    return at_variable and isinstance(original, _REFUSED_VALUE)


def is_client_error(error: GraphQLError) -> bool:
    """A request error or a domain error: shown to the client as it is."""
    return is_request_error(error) or isinstance(error.original_error, TrendmapError)


def should_mask(error: GraphQLError) -> bool:
    """Hide everything but the client's errors (MaskErrors' predicate)."""
    return not is_client_error(error)


def _short(message: str) -> str:
    return message if len(message) <= _LOGGED_CHARS else message[:_LOGGED_CHARS] + "…"


def _described(error: GraphQLError) -> dict[str, Any]:
    described: dict[str, Any] = {"message": _short(error.message)}
    if error.path is not None:
        described["path"] = list(error.path)
    if isinstance(error.original_error, TrendmapError):
        described["code"] = error.original_error.code
    return described


def log_errors(errors: list[GraphQLError], tags: Mapping[str, str | None] | None = None) -> None:
    """Log an operation's errors, never as plain text: a bug is one error line each, with its
    stack in the line, and is reported (to Sentry, with ``tags``); the client's errors are one
    info line in all (a dependency's outage, a warning), without a stack."""
    clients = []
    for error in errors:
        original = error.original_error
        if not is_client_error(error):
            logger.error("graphql error", **_described(error), exc_info=original)
            report_exception(original or error, **(tags or {}))
        elif isinstance(original, TrendmapError) and original.status >= 500:
            logger.warning("graphql dependency error", **_described(error))
        else:
            clients.append(error)
    if clients:
        logger.info(
            "graphql client error",
            count=len(clients),
            errors=[_described(error) for error in clients[:_LOGGED_ERRORS]],
        )


class Schema(strawberry.Schema):
    """Strawberry's schema, logging errors as JSON lines (it logs every error's traceback as
    plain text through the stdlib, a client's mistakes included)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, _operation_tags(execution_context))


def _operation_tags(context: ExecutionContext | None) -> dict[str, str | None]:
    """What a reported bug is tagged with: the request id, the route and the operation (its
    name and type, never its document or variables)."""
    if context is None:
        return {"route": "/graphql"}
    connection = getattr(context.context, "connection", None)
    scope = getattr(connection, "scope", None) or {}
    kind = None
    if context.graphql_document is not None:
        try:
            kind = context.operation_type.value
        except Exception:  # noqa: BLE001 - no operation to run: the tags go without its type
            kind = None
    return {
        "request_id": request_id_of(scope),
        "route": "/graphql",
        "graphql.operation": context.operation_name,
        "graphql.operation_type": kind,
    }


class SingleOperation(SchemaExtension):
    """A document with several operations and no operationName is a request error (GraphQL's
    GetOperation). Strawberry would run the first one. Listed after the validation cache, which
    sets the validation's errors before this adds its own."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # The name the request gave: ``operation_name`` falls back to the first operation's.
        named = getattr(context, "_provided_operation_name", None)
        if document is not None and named is None:
            operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
            if operations > 1:
                errors = context.pre_execution_errors or []
                context.pre_execution_errors = [*errors, GraphQLError(MULTIPLE_OPERATIONS)]
        yield
