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

from graph.core import flows, hotspots, identity, records


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
    (``id`` first) and their descriptions: the source's own (a dataclass field's
    ``metadata["description"]``, a pydantic field's ``description``), or those given by name."""
    hints = get_type_hints(source)
    if dataclasses.is_dataclass(source):
        names = [f.name for f in dataclasses.fields(source)]
        defaults: dict[str, Any] = {}
        own = {f.name: f.metadata.get("description") for f in dataclasses.fields(source)}
    else:  # a pydantic model
        fields = source.model_fields  # type: ignore[attr-defined]
        names = list(fields)
        defaults = {n: f.default for n, f in fields.items() if not f.is_required()}
        own = {n: f.description for n, f in fields.items()}
    names.sort(key=lambda name: name != "id")
    replaced = dict(replace or {})
    annotations = {
        name: replaced.get(name) or _graphql(hints[name], nested or {}) for name in names
    }
    namespace = {"__annotations__": annotations, "__module__": __name__, **defaults}
    described = {n: text for n, text in own.items() if text} | dict(fields_described or {})
    for name, text in described.items():
        given = {"default": defaults[name]} if name in defaults else {}
        namespace[name] = strawberry.field(description=text, **given)
    cls = type(source.__name__, (), namespace)
    decorate = strawberry.input if as_input else strawberry.type
    return decorate(cls, name=_NAMES.get(source, source.__name__), description=description)


_NAMES = {
    records.StoredRecord: "Trend",
    records.TrendIn: "TrendInput",
    identity.IdentifiedFlow: "Flow",
    identity.IdentifiedHotspot: "Hotspot",
}

if TYPE_CHECKING:
    TopTopic = hotspots.TopTopic
    Hotspot = identity.IdentifiedHotspot
    Flow = identity.IdentifiedFlow
    FlowStats = flows.FlowStats
    Trend = records.StoredRecord
    TrendInput = records.TrendIn
else:
    TopTopic = derived(hotspots.TopTopic, description="A topic that makes a country hot.")
    Hotspot = derived(
        identity.IdentifiedHotspot,
        description="Where it is hot in the window, and why.",
        nested={hotspots.TopTopic: TopTopic},
        replace={"id": strawberry.ID},
    )
    Flow = derived(
        identity.IdentifiedFlow,
        description="Topics spreading from one country to another.",
        replace={"id": strawberry.ID},
    )
    FlowStats = derived(
        flows.FlowStats,
        description="Why flows holds what it holds: the hottest pair of countries in the window"
        " whatever the threshold, and how many pairs share a topic (within the countries asked).",
    )
    Trend = derived(
        records.StoredRecord,
        description="One stored trend record.",
        replace={"id": strawberry.ID, "sources": list[str]},
    )
    TrendInput = derived(records.TrendIn, description="A trend record to ingest.", as_input=True)


@strawberry.type(description="One record of a page, with its cursor.")
class TrendEdge:
    cursor: str = strawberry.field(description="Pass as `after` to read the records after it.")
    node: Trend = strawberry.field(description="The record.")


@strawberry.type(description="Where a page is among the pages.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more records follow.")
    has_previous_page: bool = strawberry.field(
        description="Whether this page was read after a cursor."
    )
    start_cursor: str | None = strawberry.field(
        description="The first record's cursor; null on an empty page."
    )
    end_cursor: str | None = strawberry.field(
        description="The last record's cursor (pass it as `after` for the next page); null on"
        " an empty page."
    )


@strawberry.type(description="A page of trend records, newest first.")
class TrendConnection:
    edges: list[TrendEdge] = strawberry.field(description="The page's records, newest first.")
    page_info: PageInfo = strawberry.field(description="Whether more pages follow.")
    total_count: int = strawberry.field(description="How many records match, over all pages.")


@strawberry.type(description="What an ingest did.")
class IngestResult:
    received: int = strawberry.field(description="Records in the batch.")
    inserted: int = strawberry.field(description="Records that were new.")
    updated: int = strawberry.field(description="Records that replaced a different one.")
    unchanged: int = strawberry.field(description="Records already stored exactly so.")
    generation: int | None = strawberry.field(
        description="What a read sends as the X-Trendmap-Min-Generation header (REST: the"
        " min_generation parameter) to see this batch on any worker: the generation the batch"
        " raised, or for a batch that changed nothing the next one. Null when the cache could"
        " not count it. Also the X-Trendmap-Generation header of the HTTP response.",
        default=None,
    )


_ARGUMENTS = {
    "time_window": 'The window ending at asOf: one of "1h", "6h", "12h", "24h" (default).',
    "countries": "Only these countries (ISO 3166-1 alpha-2 codes, any case). Default: all.",
    "flow_countries": "Only flows with both countries in this list (ISO 3166-1 alpha-2 codes,"
    " any case). Default: all.",
    "as_of": "End of the window, ISO 8601 with a UTC offset. Default: now.",
    "hotspot_limit": "At most this many hotspots, hottest first. Default: all.",
    "flow_limit": "At most this many flows, hottest first (MAX_FLOWS at most). Default: all.",
    "threshold": "Minimum heat, in [0, 1]. Default: FLOW_THRESHOLD.",
    "topic": "Only records of this topic (matched by topic key: any case and spacing).",
    "since": "Only records at or after this instant (ISO 8601 with a UTC offset).",
    "until": "Only records at or before this instant (ISO 8601 with a UTC offset).",
    "first": "Page size (MAX_PAGE_SIZE at most). Default: DEFAULT_PAGE_SIZE.",
    "after": "A cursor (endCursor of the page before); null or empty for the first page.",
    "trends": "The records to store, all or nothing (at most MAX_BATCH_RECORDS).",
    "include_current": "Also send the flows hot when the subscription starts, first.",
}


def argument(name: str) -> Any:
    """A described argument of Query, Mutation or Subscription (by its description's key)."""
    return strawberry.argument(description=_ARGUMENTS[name])
