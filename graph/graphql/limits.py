"""Limits on what one GraphQL operation may ask, checked before anything executes: tokens (in
the lexer), depth and aliases (through fragments), computing root fields per operation, and
introspection. The rules read the document only, never variables, so parsed and validated
documents can be kept and reused (docs/architecture.md, "Limits, rate limits, metrics")."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    Visitor,
    visit,
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

# Root fields that compute over a window or a span (cached, but a miss costs a scan).
COMPUTING_FIELDS = frozenset(
    {"flows", "flowStats", "hotspots", "hotspotHistory", "topics", "topicSpread"}
)
# Distinct documents kept parsed, and validated, per process. Bounded: every distinct text a
# client sends would otherwise stay in memory. A kept document is its text and its tree, about
# 350 bytes a token: 0.7 MB for 2,000 tokens, so at most about 45 MB for the parsed ones.
DOCUMENT_CACHE_SIZE = 64
# Longer documents are parsed and validated every time, never kept: a body may hold megabytes
# in one string token.
CACHED_DOCUMENT_CHARS = 8 * 1024


class ShortDocumentParserCache(ParserCache):
    """Strawberry's parser cache for documents of at most CACHED_DOCUMENT_CHARS characters."""

    def on_parse(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > CACHED_DOCUMENT_CHARS:
            yield  # Strawberry parses it, uncached
            return
        yield from super().on_parse()


class ShortDocumentValidationCache(ValidationCache):
    """Strawberry's validation cache for documents of at most CACHED_DOCUMENT_CHARS characters
    (its key holds the document)."""

    def on_validate(self) -> Iterator[None]:
        if len(self.execution_context.query or "") > CACHED_DOCUMENT_CHARS:
            yield  # Strawberry validates it, uncached
            return
        yield from super().on_validate()


def count_computing_fields(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    inside: frozenset[str] = frozenset(),
) -> int:
    """How many computing root fields (``COMPUTING_FIELDS``) a selection set asks for."""
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
                        f"an operation may ask for at most {maximum} of"
                        f" {', '.join(sorted(COMPUTING_FIELDS))}, this one asks for {count}",
                        node,
                    )
                )

    return ComputingFieldsLimit


class _Spreads(Visitor):
    """Collects the names of the fragments a document spreads."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.names.add(node.name.value)


def spreads_unknown_fragment(document: DocumentNode) -> bool:
    """Whether the document spreads a fragment it does not define."""
    spreads = _Spreads()
    visit(document, spreads)
    defined = {d.name.value for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return not spreads.names <= defined


def depth_rule(maximum: int) -> type[ValidationRule]:
    """Strawberry's depth limit, left out for a document that spreads an unknown fragment: its
    walk looks every spread up (a KeyError, answered as the bare fragment name and logged as a
    traceback), and GraphQL's own rule refuses such a document as "Unknown fragment"."""
    [limiter] = QueryDepthLimiter(max_depth=maximum).validation_rules

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            if not spreads_unknown_fragment(context.document):
                limiter(context)  # reports its errors on the context as it is made

    return DepthLimit


def limit_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The validation rules enforcing depth, aliases and computing fields, made once."""
    return [
        depth_rule(settings.graphql_max_depth),
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
        functools.partial(ShortDocumentParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        # One extension, one tuple of the same classes for every request.
        functools.partial(AddValidationRules, rules),
        functools.partial(ShortDocumentValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
    ]
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return extensions
