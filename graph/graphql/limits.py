"""Limits on what one GraphQL operation may ask, checked before anything executes: tokens (in
the lexer), depth and aliases (through fragments), computing root fields per operation, and
introspection. The rules read the document only, never variables, so parsed and validated
documents can be kept and reused (docs/architecture.md, "Limits, rate limits, metrics")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from graph.settings import Settings

COMPUTING_FIELDS = frozenset({"flows", "hotspots"})
# Distinct documents kept parsed, and validated, per process. Bounded: every distinct text a
# client sends would otherwise stay in memory.
DOCUMENT_CACHE_SIZE = 256


def count_computing_fields(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    inside: frozenset[str] = frozenset(),
) -> int:
    """How many root ``flows``/``hotspots`` fields a selection set asks for."""
    count = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            count += selection.name.value in COMPUTING_FIELDS
        elif isinstance(selection, InlineFragmentNode):
            count += count_computing_fields(selection.selection_set, fragments, inside)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in inside:
                count += count_computing_fields(fragment.selection_set, fragments, inside | {name})
    return count


def computing_fields_rule(maximum: int) -> type[ValidationRule]:
    """A validation rule refusing operations with more than ``maximum`` computing fields."""

    class ComputingFieldsLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            fragments = {
                d.name.value: d
                for d in self.context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            count = count_computing_fields(node.selection_set, fragments)
            if count > maximum:
                self.report_error(
                    GraphQLError(
                        f"an operation may ask for at most {maximum} of flows and hotspots,"
                        f" this one asks for {count}",
                        node,
                    )
                )

    return ComputingFieldsLimit


def limit_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The validation rules enforcing depth, aliases and computing fields, made once."""
    return [
        *QueryDepthLimiter(max_depth=settings.graphql_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases).validation_rules,
        computing_fields_rule(settings.graphql_max_computing_fields),
    ]


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the schema extensions that enforce the configured limits and keep parsed
    and validated documents."""
    rules = limit_rules(settings)
    extensions: list[Callable[[], SchemaExtension]] = [
        # Sets the token limit among the parse options, before anything is parsed.
        functools.partial(MaxTokensLimiter, max_token_count=settings.graphql_max_tokens),
        functools.partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        # One extension, one tuple of the same classes for every request.
        functools.partial(AddValidationRules, rules),
        functools.partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
    ]
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return extensions
