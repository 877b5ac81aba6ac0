"""Exploring in GraphQL: the types (derived from graph.core.exploring and graph.core.history)
and what the ``dataSpan``, ``topics``, ``topicSpread`` and ``hotspotHistory`` fields of ``Query``
do (same parsing and service as REST)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from graph.core import exploring, history
from graph.core.errors import NotFound
from graph.graphql.context import Context
from graph.graphql.types import derived
from graph.graphql.warnings import warn
from graph.service.explorer import (
    HistoryQuery,
    SpreadQuery,
    TopicsQuery,
    data_span_of,
    hotspot_point_of,
    topic_spread_of,
    topic_summary_of,
)

_FIRST_SEEN = "Earliest record's timestamp."
_LABEL = "The label of the topic's earliest record in the span asked (ties: the smallest)."

if TYPE_CHECKING:
    DataSpan = exploring.DataSpan
    TopicSummary = exploring.TopicSummary
    TopicCountry = exploring.TopicCountry
    TopicSpread = exploring.TopicSpread
    HotspotPoint = history.HotspotPoint
else:
    DataSpan = derived(
        exploring.DataSpan,
        description="The archive's extent: the map's timeline runs over it.",
        fields_described={
            "first": "The earliest record's timestamp (null when the archive is empty).",
            "last": "The latest record's timestamp (null when the archive is empty).",
            "records": "How many records the archive holds.",
            "countries": "How many distinct countries have records.",
        },
    )
    TopicSummary = derived(
        exploring.TopicSummary,
        description="A topic seen in the window.",
        fields_described={
            "key": "The topic key: label trimmed, whitespace collapsed, casefolded.",
            "label": _LABEL,
            "count": "Summed count (over the countries asked, when a filter is given).",
            "country_count": "How many countries (of those asked) saw the topic.",
            "countries": "Those countries' codes, sorted.",
            "first_seen": _FIRST_SEEN + " Over every country.",
        },
    )
    TopicCountry = derived(
        exploring.TopicCountry,
        description="One topic in one country over the span asked.",
        fields_described={
            "country": "ISO 3166-1 alpha-2 code.",
            "first_seen": _FIRST_SEEN,
            "last_seen": "Latest record's timestamp.",
            "count": "Summed count.",
            "confidence": "Count-weighted mean confidence.",
        },
    )
    TopicSpread = derived(
        exploring.TopicSpread,
        description="How one topic went round the world between since and until.",
        nested={exploring.TopicCountry: TopicCountry},
        fields_described={
            "key": "The topic key.",
            "label": _LABEL,
            "countries": "Every country that saw it, by first sighting, then code.",
        },
    )
    HotspotPoint = derived(
        history.HotspotPoint,
        description="One country's hotspot figures in the window ending at asOf (zeros when it"
        " had no record in that window).",
        fields_described={
            "as_of": "End of the window: since + k * step.",
            "score": "volume * velocity * avgConfidence: comparable across instants.",
            "volume": "Summed count in the window.",
            "velocity": "2V / (V + P), P the volume of the window before: in (0, 2], 0 without"
            " data.",
            "avg_confidence": "Count-weighted mean confidence in the window.",
            "topic_count": "Distinct topics in the window.",
        },
    )


async def data_span(ctx: Context) -> DataSpan:
    ctx.authorise_read()
    explored = await ctx.state.explorer.data_span(min_generation=ctx.min_generation)
    return data_span_of(explored.item())


async def topics(
    ctx: Context,
    *,
    time_window: str,
    as_of: datetime | None,
    countries: list[str] | None,
    search: str | None,
    limit: int,
) -> list[TopicSummary]:
    ctx.authorise_read()
    query = TopicsQuery.parse(
        time_window=time_window,
        as_of=as_of,
        countries=countries,
        search=search,
        limit=limit,
        camel_case=True,
    )
    explored = await ctx.state.explorer.topics(query, min_generation=ctx.min_generation)
    warn(explored.warnings)
    return [topic_summary_of(item) for item in explored.item()]


async def topic_spread(
    ctx: Context, *, topic: str, since: datetime | None, until: datetime | None
) -> TopicSpread | None:
    """The spread, or null when no country saw the topic in the span (REST answers 404): a
    lookup that finds nothing is an answer in GraphQL, not an error."""
    ctx.authorise_read()
    query = SpreadQuery.parse(topic=topic, since=since, until=until)
    try:
        explored = await ctx.state.explorer.topic_spread(query, min_generation=ctx.min_generation)
    except NotFound:
        return None
    return topic_spread_of(explored.item())


async def hotspot_history(
    ctx: Context,
    *,
    country: str,
    time_window: str,
    since: datetime | None,
    until: datetime | None,
    step: str | None,
) -> list[HotspotPoint]:
    ctx.authorise_read()
    query = HistoryQuery.parse(
        country=country,
        time_window=time_window,
        since=since,
        until=until,
        step=step,
        camel_case=True,
    )
    explored = await ctx.state.explorer.hotspot_history(query, min_generation=ctx.min_generation)
    warn(explored.warnings)
    return [hotspot_point_of(item) for item in explored.item()]


# The arguments' descriptions, by argument (the fields are declared on Query in schema.py).
ARGUMENTS = {
    "time_window": 'The window ending at asOf: one of "1h", "6h", "12h", "24h" (default).',
    "as_of": "End of the window, ISO 8601 with a UTC offset. Default: now.",
    "countries": "ISO 3166-1 alpha-2 codes, any case: count and countries cover only these.",
    "search": "Only topics whose key holds this text (normalised as topic keys are).",
    "limit": "At most this many topics (1 to 1000).",
    "topic": "The topic, matched by topic key (any case and spacing).",
    "since": "Start of the span, inclusive. Default: 7 days before until.",
    "until": "End of the span, inclusive. Default: now.",
    "country": "ISO 3166-1 alpha-2 code, any case.",
    "step": 'Between two points: "1h", "6h", "12h" or "24h". Default: the window. At most 500'
    " points from since to until.",
}
