"""Limits on what one GraphQL operation may ask, checked before anything executes.

- tokens: at most GRAPHQL_MAX_TOKENS, enforced by the lexer, so an oversized document is
  refused before it is parsed into a tree;
- depth: at most GRAPHQL_MAX_DEPTH, counting through fragments;
- aliases: at most GRAPHQL_MAX_ALIASES, counting a fragment's aliases each time it is used;
- computing root fields (``flows``, ``hotspots``): at most GRAPHQL_MAX_COMPUTING_FIELDS per
  operation, however they are aliased or wrapped in fragments;
- introspection and field suggestions: off with GRAPHQL_INTROSPECTION=false.

Fragment cycles never recurse forever: every walk skips fragments it is already inside, and
GraphQL's own validation refuses the cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from graphql import (
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
    QueryDepthLimiter,
    SchemaExtension,
)

from graph.settings import Settings

COMPUTING_FIELDS = frozenset({"flows", "hotspots"})


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


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the schema extensions that enforce the configured limits."""
    rule = computing_fields_rule(settings.graphql_max_computing_fields)
    extensions: list[Callable[[], SchemaExtension]] = [
        functools.partial(MaxTokensLimiter, max_token_count=settings.graphql_max_tokens),
        functools.partial(QueryDepthLimiter, max_depth=settings.graphql_max_depth),
        functools.partial(MaxAliasesLimiter, max_alias_count=settings.graphql_max_aliases),
        functools.partial(AddValidationRules, [rule]),
    ]
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return extensions
