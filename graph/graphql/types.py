"""The GraphQL types (camelCase on the wire, snake_case in Python).

``Flow``, ``Hotspot``, ``TopTopic`` and ``Trend`` are derived from the core dataclasses, and
``TrendInput`` from the record validation model: a field added there appears here. Resolvers
return the core objects themselves. mypy sees the core classes, which have exactly the fields
of the types derived from them.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

import strawberry

from graph.core import flows, hotspots, records


def _graphql(hint: Any, nested: Mapping[Any, Any]) -> Any:
    """A core field's type as Strawberry reads it: tuples are lists, core classes their types."""
    if hint in nested:
        return nested[hint]
    origin, args = get_origin(hint), get_args(hint)
    if origin in (tuple, list):
        return list[_graphql(args[0], nested)]  # type: ignore[misc]
    if origin in (Union, types.UnionType):
        kept = [_graphql(a, nested) for a in args if a is not type(None)]
        assert len(kept) == 1, hint
        return kept[0] | None
    return hint


def derived(
    source: type,
    *,
    description: str,
    nested: Mapping[Any, Any] | None = None,
    replace: Mapping[str, Any] | None = None,
    as_input: bool = False,
    fields_described: Mapping[str, str] | None = None,
) -> Any:
    """A Strawberry type (or input) named after ``source``, with its fields in their order
    (and the descriptions given, by field name)."""
    hints = get_type_hints(source)
    if dataclasses.is_dataclass(source):
        names = [f.name for f in dataclasses.fields(source)]
        defaults: dict[str, Any] = {}
    else:  # a pydantic model
        fields = source.model_fields  # type: ignore[attr-defined]
        names = list(fields)
        defaults = {n: f.default for n, f in fields.items() if not f.is_required()}
    replaced = dict(replace or {})
    annotations = {
        name: replaced.get(name) or _graphql(hints[name], nested or {}) for name in names
    }
    namespace = {"__annotations__": annotations, "__module__": __name__, **defaults}
    for name, text in (fields_described or {}).items():
        given = {"default": defaults[name]} if name in defaults else {}
        namespace[name] = strawberry.field(description=text, **given)
    cls = type(source.__name__, (), namespace)
    decorate = strawberry.input if as_input else strawberry.type
    return decorate(cls, name=_NAMES.get(source, source.__name__), description=description)


_NAMES = {records.StoredRecord: "Trend", records.TrendIn: "TrendInput"}

if TYPE_CHECKING:
    TopTopic = hotspots.TopTopic
    Hotspot = hotspots.Hotspot
    Flow = flows.Flow
    FlowStats = flows.FlowStats
    Trend = records.StoredRecord
    TrendInput = records.TrendIn
else:
    TopTopic = derived(hotspots.TopTopic, description="A topic that makes a country hot.")
    Hotspot = derived(
        hotspots.Hotspot,
        description="Where it is hot in the window, and why.",
        nested={hotspots.TopTopic: TopTopic},
    )
    Flow = derived(flows.Flow, description="Topics spreading from one country to another.")
    FlowStats = derived(
        flows.FlowStats,
        description="Why flows holds what it holds: the hottest pair of countries in the window"
        " whatever the threshold, and how many pairs share a topic (within the countries asked).",
        fields_described={
            "max_heat": "The heat of the hottest pair, whether or not it reaches the threshold;"
            " null when no two countries share a topic.",
            "from_country": "The hottest pair's source (the first of a simultaneous pair); null"
            " when there is no pair.",
            "to_country": "The hottest pair's target; null when there is no pair.",
            "pairs": "How many pairs of countries share at least one topic in the window.",
        },
    )
    Trend = derived(
        records.StoredRecord,
        description="One stored trend record.",
        replace={"id": strawberry.ID},
    )
    TrendInput = derived(records.TrendIn, description="A trend record to ingest.", as_input=True)


@strawberry.type
class TrendEdge:
    cursor: str
    node: Trend


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type(description="A page of trend records, newest first.")
class TrendConnection:
    edges: list[TrendEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="What an ingest did.")
class IngestResult:
    received: int
    inserted: int
    updated: int
    unchanged: int
