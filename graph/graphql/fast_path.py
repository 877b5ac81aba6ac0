"""SharedEventExecution: graphql-core execution that shares live results and completes plain
lists in one pass."""

from __future__ import annotations

import functools
import math
import operator
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLString,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.core.flows import Flow
from graph.graphql.identity_memo import IdentityMemo
from graph.graphql.limits import CACHED_DOCUMENT_CHARS

# The results of recent live events, by event: every member reads its event within moments of
# the others, and a burst of thousands of new flows is one delivery per subscriber.
_executions: IdentityMemo[Flow, dict[tuple[str, str], Any]] = IdentityMemo(lambda _: {}, 4096)
# What one event keeps, so that 4,096 of them stay small whatever subscribers send: results
# for at most this many distinct operations, and only for variables this short once written
# out (the key holds them). Other members execute the event themselves.
_RESULTS_PER_EVENT = 16
_KEPT_VARIABLES_CHARS = 1024


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """Execute a live flow once per distinct operation, whoever subscribed to it.

    Every member of a subscription group receives the same core ``Flow`` object for an event
    (see Subscription.hot_flows). Members with the same operation text and variables would
    compute the very same result, so it is computed once per event, and shared (and encoded
    once, see GraphQLApp.encode_result).
    """

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        event = self.root_value
        if not isinstance(event, Flow) or self.operation.loc is None:
            return super().execute_operation(*args, **kwargs)
        variables = repr(sorted(self.variable_values.coerced.items()))
        key = (self.operation.loc.source.body, variables)
        results = _executions(event)
        if key in results:
            return results[key]
        result = super().execute_operation(*args, **kwargs)
        if len(variables) <= _KEPT_VARIABLES_CHARS and len(results) < _RESULTS_PER_EVENT:
            results[key] = result
        return result

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        """A list of plain objects (such as ``flows``) completed in one pass.

        graphql-core completes a list item by item and field by field, each through its
        resolver, a path and a completion step: most of a 20-flow query's time. When every
        selected field is a plain attribute with a scalar (or list of scalars) value, the result
        is the same when each item's attributes are read and serialised directly. Anything
        else (a resolver, arguments, directives, nested objects, a null where none is allowed)
        goes the usual way, which also reports the errors.
        """
        shaped = self.plain_list(return_type, field_details_list, result)
        if shaped is not None:
            return shaped
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def plain_list(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        result: Any,
    ) -> list[dict[str, Any]] | None:
        """The list completed in one pass, or None when it must be completed the usual way."""
        return _plain_list(self, return_type, field_details_list, result)


_PASSIVE_DIRECTIVES = frozenset({"include", "skip"})  # already applied when fields are collected
# (response key, read the value off an item (None: __typename), serialise one scalar,
# nullable, a list of scalars)
_Leaf = tuple[str, Callable[[Any], Any] | None, Callable[[Any], Any], bool, bool]


def _serializer(scalar: GraphQLScalarType) -> Callable[[Any], Any]:
    """``scalar.serialize``, skipped for values that are already what it would return."""

    def serialize(value: Any) -> Any:
        result = scalar.serialize(value)
        if result is None:
            raise TypeError(f"{scalar.name} cannot represent {value!r}")
        return result

    if scalar is GraphQLFloat:
        return lambda v: v if type(v) is float and math.isfinite(v) else serialize(v)
    if scalar is GraphQLString:
        return lambda v: v if type(v) is str else serialize(v)
    if scalar is GraphQLInt:
        return lambda v: v if type(v) is int and -(2**31) <= v < 2**31 else serialize(v)
    if scalar is GraphQLBoolean:
        return lambda v: v if type(v) is bool else serialize(v)
    return serialize


def _leaf_of(field_type: GraphQLOutputType) -> tuple[GraphQLScalarType, bool, bool] | None:
    """(scalar, nullable, is a list of non-null scalars) for ``S``/``S!``/``[S!]``/``[S!]!``."""
    nullable = not isinstance(field_type, GraphQLNonNull)
    inner = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    if isinstance(inner, GraphQLScalarType):
        return inner, nullable, False
    if isinstance(inner, GraphQLList) and isinstance(inner.of_type, GraphQLNonNull):
        item = inner.of_type.of_type
        if isinstance(item, GraphQLScalarType):
            return item, nullable, True
    return None


# What _plain_fields found, by list type, selection (the parsed document is cached, so its nodes
# are the same objects for a repeated operation; they are kept, so their ids stay theirs) and
# variables (@include/@skip may use them; in a document without directives they cannot change
# what is selected, and are left out: new variables each request still find it).
_PlainKey = tuple[str, tuple[int, ...], str]
_plain_memo: OrderedDict[_PlainKey, tuple[object, list[_Leaf] | None]] = OrderedDict()
_PLAIN_MEMO_SIZE = 256


def _plain_fields(
    execution: SharedEventExecution, item_type: GraphQLObjectType, details: FieldDetailsList
) -> list[_Leaf] | None:
    """Each selected field as (response key, reader, serialiser, nullable, is list), or None
    when one of them is not a plain attribute with a scalar value."""
    loc = execution.operation.loc
    variables = (
        repr(sorted(execution.variable_values.coerced.items()))
        if loc is None or "@" in loc.source.body
        else ""
    )
    if loc is None or len(loc.source.body) > CACHED_DOCUMENT_CHARS:
        # Not a kept document: its nodes are new at every request, and keeping them would
        # keep its whole text alive (graph.graphql.limits).
        return _find_plain_fields(execution, item_type, details)
    if len(variables) > _KEPT_VARIABLES_CHARS:
        return _find_plain_fields(execution, item_type, details)
    key = (item_type.name, tuple(id(d.node) for d in details), variables)
    found = _plain_memo.get(key)
    if found is not None:
        return found[1]
    fields = _find_plain_fields(execution, item_type, details)
    _plain_memo[key] = ([d.node for d in details], fields)
    if len(_plain_memo) > _PLAIN_MEMO_SIZE:
        _plain_memo.popitem(last=False)
    return fields


def _find_plain_fields(
    execution: SharedEventExecution, item_type: GraphQLObjectType, details: FieldDetailsList
) -> list[_Leaf] | None:
    if details and any(
        d.defer_usage is not None
        or any(x.name.value not in _PASSIVE_DIRECTIVES for x in d.node.directives or ())
        for d in details
    ):
        return None
    grouped, deferred, forbidden = execution.collect_subfields(item_type, details)
    if deferred or forbidden:
        return None
    fields: list[_Leaf] = []
    for response_key, group in grouped.items():
        node = group[0].node
        name = node.name.value
        if any(
            d.defer_usage is not None or d.node.arguments or d.node.selection_set for d in group
        ) or any(
            x.name.value not in _PASSIVE_DIRECTIVES for d in group for x in d.node.directives or ()
        ):
            return None
        if name == "__typename":
            fields.append((response_key, None, _serializer(GraphQLString), False, False))
            continue
        definition = item_type.fields.get(name)
        if definition is None or definition.args:
            return None
        backref: Any = (definition.extensions or {}).get("strawberry-definition")
        resolve = definition.resolve
        if getattr(backref, "is_basic_field", False) is not True or resolve is None:
            return None
        leaf = _leaf_of(definition.type)
        if leaf is None:
            return None
        scalar, nullable, many = leaf
        # What the resolver does for a basic field: the default resolver on the attribute.
        read = (
            operator.attrgetter(backref.python_name)
            if backref.default_resolver is getattr
            else functools.partial(_resolve_plainly, resolve)
        )
        fields.append((response_key, read, _serializer(scalar), nullable, many))
    return fields


def _resolve_plainly(resolve: Callable[..., Any], item: Any) -> Any:
    return resolve(item, None)


def _plain_list(
    execution: SharedEventExecution,
    return_type: GraphQLList[GraphQLOutputType],
    details: FieldDetailsList,
    items: Any,
) -> list[dict[str, Any]] | None:
    """The completed list, or None when it must be completed the usual way."""
    item_type = return_type.of_type
    if not isinstance(item_type, GraphQLNonNull):
        return None
    list_type = item_type.of_type
    if not isinstance(list_type, GraphQLObjectType):
        return None
    if not isinstance(items, list | tuple) or list_type.is_type_of is not None:
        return None
    if getattr(execution.middleware_manager, "middlewares", None):
        return None  # an extension wraps every resolver: it must see every field
    fields = _plain_fields(execution, list_type, details)
    if fields is None:
        return None
    typename = list_type.name
    shaped: list[dict[str, Any]] = []
    try:
        for item in items:
            if item is None:
                return None
            row: dict[str, Any] = {}
            for key, read, serialize, nullable, many in fields:
                if read is None:
                    row[key] = typename
                    continue
                value = read(item)
                if value is None:
                    if not nullable:
                        return None
                    row[key] = None
                elif many:
                    row[key] = [serialize(v) for v in value]
                else:
                    row[key] = serialize(value)
            shaped.append(row)
    except Exception:  # the usual way reports it, as a field error at its path
        return None
    return shaped
