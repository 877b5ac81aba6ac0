"""Every example document, one entry each: adding an example is one entry in ``EXAMPLES``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from graph.cli.examples.kinds import AS_OF, Example, GraphQL, Rest, Subscription


def _spread(
    source: str, target: str, topics: dict[str, tuple[int, int]], hours_ago: int
) -> Callable[[datetime], list[dict[str, Any]]]:
    """Records of topics reaching `target` an hour after `source`, relative to a clock."""

    def records(now: datetime) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": (now - timedelta(hours=hours_ago - lag))
                .isoformat()
                .replace("+00:00", "Z"),
                "country": country,
                "topic_label": label,
                "count": counts[lag],
                "confidence": 0.9,
            }
            for lag, country in enumerate((source, target))
            for label, counts in topics.items()
        ]

    return records


_FLOW_FIELDS = "fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore simultaneous"

EXAMPLES: tuple[Example, ...] = (
    Rest(
        "rest/get-v1-flows.md",
        "GET /v1/flows",
        "The hottest flows of the 24 hours before `as_of`, at most three.",
        "GET",
        "/v1/flows",
        (("time_window", "24h"), ("threshold", "0.5"), ("as_of", AS_OF), ("limit", "3")),
    ),
    Rest(
        "rest/get-v1-hotspots.md",
        "GET /v1/hotspots",
        "Hotspots of the last six hours in three countries. Intensity is relative to the"
        " hottest country with data, whatever the filter.",
        "GET",
        "/v1/hotspots",
        (("time_window", "6h"), ("countries", "US,in,BR"), ("as_of", AS_OF)),
    ),
    Rest(
        "rest/get-v1-flows-geojson.md",
        "GET /v1/flows.geojson",
        "The flows of `/v1/flows` (same parameters) as GeoJSON LineString features, from the"
        " source country's position to the target's ([longitude, latitude]).",
        "GET",
        "/v1/flows.geojson",
        (("time_window", "24h"), ("countries", "ES,PT,DE,NL"), ("as_of", AS_OF), ("limit", "2")),
    ),
    Rest(
        "rest/get-v1-hotspots-geojson.md",
        "GET /v1/hotspots.geojson",
        "The hotspots of `/v1/hotspots` (same parameters) as GeoJSON Point features at each"
        " country's position.",
        "GET",
        "/v1/hotspots.geojson",
        (("time_window", "1h"), ("countries", "JP,KR"), ("as_of", AS_OF)),
    ),
    Rest(
        "rest/get-v1-trends.md",
        "GET /v1/trends",
        "The stored records, newest first, in cursor pages: pass `page_info.end_cursor` as"
        " `after` for the next page.",
        "GET",
        "/v1/trends",
        (
            ("countries", "ES,PT"),
            ("since", "2026-11-20T09:00:00Z"),
            ("until", AS_OF),
            ("first", "3"),
        ),
    ),
    Rest("rest/get-health.md", "GET /health", "Liveness: no I/O.", "GET", "/health"),
    Rest(
        "rest/get-health-ready.md",
        "GET /health/ready",
        "Readiness: 200 while the database answers, 503 when it does not.",
        "GET",
        "/health/ready",
    ),
    GraphQL(
        "graphql/query-hotspots.md",
        "query hotspots",
        "The three hottest countries of the 24 hours before `asOf`, with their top topics.",
        """
query Hotspots($asOf: DateTime!) {
  hotspots(timeWindow: "24h", asOf: $asOf, limit: 3) {
    country intensity score topicCount volume velocity avgConfidence
    topTopics { label count confidence }
  }
}
""",
        {"asOf": AS_OF},
    ),
    GraphQL(
        "graphql/query-flows.md",
        "query flows",
        "Flows between the countries of two corridors, at or above the threshold.",
        f"""
query Flows($countries: [String!], $asOf: DateTime!) {{
  flows(timeWindow: "12h", countries: $countries, threshold: 0.4, asOf: $asOf) {{
    {_FLOW_FIELDS}
  }}
}}
""",
        {"countries": ["US", "CA", "JP", "KR"], "asOf": AS_OF},
    ),
    GraphQL(
        "graphql/query-flow-stats.md",
        "query flowStats",
        "Why flows holds what it holds: the hottest pair of the 12 hours before `asOf` whatever"
        " the threshold, and how many pairs of countries share a topic.",
        """
query FlowStats($asOf: DateTime!) {
  flowStats(timeWindow: "12h", asOf: $asOf) { maxHeat fromCountry toCountry pairs }
}
""",
        {"asOf": AS_OF},
    ),
    GraphQL(
        "graphql/query-trends.md",
        "query trends",
        "One page of stored records for a topic, newest first. `endCursor` goes in `after`"
        " for the next page.",
        """
query Records($after: String) {
  trends(countries: ["us"], topic: "prime day", since: "2026-11-20T06:00:00Z", first: 2,
         after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id timestamp country topicLabel count confidence sources } }
  }
}
""",
        {"after": None},
    ),
    Rest(
        "rest/get-v1-span.md",
        "GET /v1/span",
        "The archive's first and last record, how many records and countries: the extent of"
        " the map's timeline.",
        "GET",
        "/v1/span",
    ),
    Rest(
        "rest/get-v1-topics.md",
        "GET /v1/topics",
        "Topics of the 24 hours before `as_of` whose key holds `launch`: seen in the most"
        " countries first. `count` and `countries` cover the `countries` filter.",
        "GET",
        "/v1/topics",
        (("time_window", "24h"), ("as_of", AS_OF), ("search", "launch"), ("limit", "3")),
    ),
    Rest(
        "rest/get-v1-topics-spread.md",
        "GET /v1/topics/spread",
        "How one topic (matched by key: any case and spacing) went round the world between"
        " `since` and `until`, country by country in order of first sighting.",
        "GET",
        "/v1/topics/spread",
        (("topic", "iphone launch"), ("since", "2026-11-19T12:00:00Z"), ("until", AS_OF)),
    ),
    GraphQL(
        "graphql/query-data-span.md",
        "query dataSpan",
        "The archive's extent, for a timeline.",
        """
query Span {
  dataSpan { first last records countries }
}
""",
    ),
    GraphQL(
        "graphql/query-topics.md",
        "query topics",
        "The topics seen in the most countries in the 6 hours before `asOf`, among three"
        " countries.",
        """
query Topics($asOf: DateTime!) {
  topics(timeWindow: "6h", asOf: $asOf, countries: ["US", "GB", "IN"], limit: 3) {
    key label count countryCount countries firstSeen
  }
}
""",
        {"asOf": AS_OF},
    ),
    GraphQL(
        "graphql/query-topic-spread.md",
        "query topicSpread",
        "Where one topic was seen in the twelve hours before `until`, by first sighting.",
        """
query Spread($until: DateTime!) {
  topicSpread(topic: "EU Summit", since: "2026-11-20T00:00:00Z", until: $until) {
    key label countries { country firstSeen lastSeen count confidence }
  }
}
""",
        {"until": AS_OF},
    ),
    Rest(
        "rest/get-v1-hotspots-history.md",
        "GET /v1/hotspots/history",
        "How hot India was, every 6 hours over the day before `until`: the hotspot figures of"
        " the 6-hour window ending at each instant (zeros where it had no record).",
        "GET",
        "/v1/hotspots/history",
        (
            ("country", "IN"),
            ("time_window", "6h"),
            ("since", "2026-11-19T12:00:00Z"),
            ("until", AS_OF),
            ("step", "6h"),
        ),
    ),
    GraphQL(
        "graphql/query-hotspot-history.md",
        "query hotspotHistory",
        "The United States' score in the 24-hour window, every 12 hours, for a chart.",
        """
query History($until: DateTime!) {
  hotspotHistory(country: "US", since: "2026-11-19T00:00:00Z", until: $until, step: "12h") {
    asOf score volume velocity avgConfidence topicCount
  }
}
""",
        {"until": AS_OF},
    ),
    Rest(
        "rest/post-v1-trends.md",
        "POST /v1/trends",
        "Stores records; needs a write key. A record whose country, topic and timestamp are"
        " stored already replaces the stored one.",
        "POST",
        "/v1/trends",
        body=[
            {
                "timestamp": "2026-11-20T11:30:00Z",
                "country": "us",
                "topic_label": "World Cup draw",
                "count": 120,
                "confidence": 0.9,
                "sources": ["https://example.org/world-cup-draw"],
            },
            {
                "timestamp": "2026-11-20T11:45:00+01:00",
                "country": "DE",
                "topic_label": "World Cup draw",
                "count": 80,
                "confidence": 0.85,
            },
        ],
        write=True,
    ),
    GraphQL(
        "graphql/mutation-ingest-trends.md",
        "mutation ingestTrends",
        "Stores records; needs a write key. The record already stored (by `POST /v1/trends`)"
        " with the same values is counted as unchanged.",
        """
mutation Ingest($trends: [TrendInput!]!) {
  ingestTrends(trends: $trends) { received inserted updated unchanged }
}
""",
        {
            "trends": [
                {
                    "timestamp": "2026-11-20T11:30:00Z",
                    "country": "US",
                    "topicLabel": "World Cup draw",
                    "count": 120,
                    "confidence": 0.9,
                    "sources": ["https://example.org/world-cup-draw"],
                },
                {
                    "timestamp": "2026-11-20T11:50:00Z",
                    "country": "MX",
                    "topicLabel": "world cup  DRAW",
                    "count": 95,
                    "confidence": 0.8,
                    "sources": [],
                },
            ]
        },
        write=True,
    ),
    Subscription(
        "graphql/subscription-hot-flows.md",
        "subscription hotFlows",
        "Each flow that newly reaches the threshold, sent as it happens, over"
        " graphql-transport-ws. The legacy `graphql-ws` protocol works too.",
        f"""
subscription Live($countries: [String!]) {{
  hotFlows(timeWindow: "24h", countries: $countries, threshold: 0.5, includeCurrent: true) {{
    {_FLOW_FIELDS}
  }}
}}
""",
        {"countries": ["BE", "ES", "FR", "PT"]},
        _spread("ES", "PT", {"Rosalía tour": (90, 70), "Vuelta route": (50, 40)}, hours_ago=5),
        _spread("FR", "BE", {"Beaujolais nouveau": (120, 60), "Tour de France": (80, 70)}, 3),
    ),
    Rest(
        "rest/error-400-bad-parameter.md",
        "Error: 400 bad parameter",
        "Every error has the same shape: `error`, `detail`, `request_id`, `timestamp`, and"
        " `field` for a bad parameter.",
        "GET",
        "/v1/flows",
        (("time_window", "2h"),),
    ),
    Rest(
        "rest/error-401-no-credential.md",
        "Error: 401 no credential",
        "Writes need a write key or a JWT with the `trends:write` scope.",
        "POST",
        "/v1/trends",
        body=[
            {
                "timestamp": "2026-11-20T11:30:00Z",
                "country": "US",
                "topic_label": "World Cup draw",
                "count": 1,
                "confidence": 0.5,
            }
        ],
    ),
    GraphQL(
        "graphql/error-bad-argument.md",
        "GraphQL error: bad argument",
        "GraphQL answers 200 with `errors`; `extensions` carry the code, the HTTP status REST"
        " would use and the argument at fault.",
        """
query {
  flows(timeWindow: "2h") { fromCountry toCountry heat }
}
""",
    ),
)
