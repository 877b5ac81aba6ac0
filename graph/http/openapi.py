"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``: the paths and their
parameters, with the maxima and defaults of the app's own settings (the body schemas come
from graph.http.schemas)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph.core.exploring import DataSpan, TopicSpread, TopicSummary
from graph.core.history import HotspotPoint
from graph.core.windows import DEFAULT_WINDOW, TimeWindow
from graph.http.schemas import component_schemas, countries_pattern
from graph.service.explorer import DEFAULT_TOPICS, MAX_HISTORY_POINTS, MAX_TOPICS
from graph.service.params import MAX_GENERATION, MAX_HOTSPOTS, MAX_TEXT_CHARS
from graph.settings import Settings

_WINDOW = {
    "name": "time_window",
    "in": "query",
    "schema": {
        "type": "string",
        "enum": [window.value for window in TimeWindow],
        "default": DEFAULT_WINDOW.value,
    },
    "description": "The window ending at as_of: as_of - W < timestamp <= as_of.",
}
_COUNTRIES = {
    "name": "countries",
    "in": "query",
    "schema": {"type": "string", "pattern": countries_pattern()},
    "example": "US,CO,BR",
    "description": "Comma-separated ISO 3166-1 alpha-2 codes, any case. Absent: every country.",
}
_AS_OF = {
    "name": "as_of",
    "in": "query",
    "schema": {"type": "string", "format": "date-time"},
    "description": "End of the window, ISO 8601 with a UTC offset. Default: now.",
}
_GENERATION_TEXT = (
    "At least this generation (what a write answered with): the answer then holds every write"
    " answered with a generation up to it, on any worker. Parameter and header alike; both"
    " given, the larger counts."
)
# Read-your-writes: every read takes the generation as a parameter or a header.
_SESSION = [
    {
        "name": "min_generation",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_GENERATION},
        "description": _GENERATION_TEXT,
    },
    {
        "name": "X-Trendmap-Min-Generation",
        "in": "header",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_GENERATION},
        "description": _GENERATION_TEXT,
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "schema": {"type": "string"},
        "description": "ETags the client holds: 304, with no body, when the answer has one"
        " of them (weak comparison).",
    },
]
_GENERATION_HEADER = {
    "description": "The generation the answer was computed under (absent when it was computed"
    " without the cache), or the one a write produced (absent when the cache could not count"
    " it).",
    "schema": {"type": "integer", "minimum": 0},
}
_READ_HEADERS = {
    "ETag": {
        "description": "Weak; derived from the generation and the instant the answer was"
        " computed, the query and the warnings.",
        "schema": {"type": "string"},
    },
    "X-Trendmap-Generation": _GENERATION_HEADER,
}
_NOT_MODIFIED = {
    "304": {"description": "Not modified: If-None-Match names the ETag", "headers": _READ_HEADERS}
}
_WARNINGS = {"type": "array", "items": {"type": "string"}}
_ERROR_TEXT = {
    400: "Bad parameters or records",
    401: "Missing or unknown credential",
    403: "Credential lacks the right",
    404: "Not found",
    413: "Body or batch too large",
    429: "Rate limited: see Retry-After, RateLimit and RateLimit-Policy",
    503: "The database is unavailable, or the worker is at capacity (see Retry-After)",
}


def _count(name: str, maximum: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
        "description": description,
    }


def _flow_parameters(settings: Settings) -> list[dict[str, Any]]:
    threshold = {
        "name": "threshold",
        "in": "query",
        "schema": {"type": "number", "minimum": 0, "maximum": 1},
        "description": f"Minimum heat. Default FLOW_THRESHOLD ({settings.flow_threshold}).",
    }
    limit = _count("limit", settings.max_flows, "At most this many flows (MAX_FLOWS).")
    return [_WINDOW, _COUNTRIES, threshold, _AS_OF, limit]


def _hotspot_parameters() -> list[dict[str, Any]]:
    return [_WINDOW, _COUNTRIES, _AS_OF, _count("limit", MAX_HOTSPOTS, "At most this many.")]


def _trend_parameters(settings: Settings) -> list[dict[str, Any]]:
    moment = {"type": "string", "format": "date-time"}
    first = _count(
        "first",
        settings.max_page_size,
        f"Page size (MAX_PAGE_SIZE). Default DEFAULT_PAGE_SIZE ({settings.default_page_size}).",
    )
    return [
        _COUNTRIES,
        {"name": "topic", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": moment},
        {"name": "until", "in": "query", "schema": moment},
        first,
        {
            "name": "after",
            "in": "query",
            "schema": {"type": "string"},
            "description": "page_info.end_cursor of the page before; empty or absent: page one.",
        },
    ]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _ERROR_TEXT[s]) for s in statuses}


def _answer_path(
    summary: str, parameters: list[dict[str, Any]], name: str, item: str
) -> dict[str, Any]:
    """GET of an answer: ``{<name>: [<item>...], metadata, warnings}``."""
    body = {
        "type": "object",
        "required": [name, "metadata", "warnings"],
        "properties": {
            name: {"type": "array", "items": _ref(item)},
            "metadata": _ref("Metadata"),
            "warnings": _WARNINGS,
        },
    }
    return _read(summary, parameters, _json(body, name.capitalize()), 400, 401, 429, 503)


def _read(
    summary: str, parameters: list[dict[str, Any]], answer: dict[str, Any], *errors: int
) -> dict[str, Any]:
    """A GET of a cacheable answer: the session parameters, the ETag and 304."""
    responses = {"200": answer | {"headers": _READ_HEADERS}, **_NOT_MODIFIED, **_errors(*errors)}
    return {
        "get": {"summary": summary, "parameters": [*parameters, *_SESSION], "responses": responses}
    }


_POSITION = {
    "type": "array",
    "description": "[longitude, latitude] (RFC 7946): longitude in [-180, 180], latitude in"
    " [-90, 90]",
    "items": {"type": "number", "minimum": -180, "maximum": 180},
    "minItems": 2,
    "maxItems": 2,
}


def _geojson_path(summary: str, parameters: list[dict[str, Any]], kind: dict[str, str]) -> Any:
    """A GeoJSON form of a JSON endpoint: the same parameters and errors, features instead."""
    coordinates: dict[str, Any] = (
        _POSITION
        if kind["type"] == "Point"
        else {"type": "array", "items": _POSITION, "minItems": 2, "maxItems": 2}
    )
    feature = {
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"const": "Feature"},
            "id": {"type": "string"},
            "geometry": {
                "type": "object",
                "required": ["type", "coordinates"],
                "properties": {"type": {"const": kind["type"]}, "coordinates": coordinates},
            },
            "properties": _ref(kind["properties"]),
        },
    }
    collection = {
        "type": "object",
        "required": ["type", "features", "metadata", "warnings"],
        "properties": {
            "type": {"const": "FeatureCollection"},
            "features": {"type": "array", "items": feature},
            "metadata": _ref("Metadata"),
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Besides the service's warnings: the countries left out for want"
                " of a known position.",
            },
        },
    }
    answer = {
        "description": f"A FeatureCollection; metadata.{kind['count']} counts features",
        "content": {"application/geo+json": {"schema": collection}},
    }
    return _read(summary, parameters, answer, 400, 401, 429, 503)


def _trends_path(settings: Settings) -> dict[str, Any]:
    page = {
        "type": "object",
        "required": ["trends", "page_info", "total_count", "warnings"],
        "properties": {
            "trends": {"type": "array", "items": _ref("Trend")},
            "page_info": {
                "type": "object",
                "properties": {
                    "has_next_page": {"type": "boolean"},
                    "end_cursor": {"type": ["string", "null"]},
                },
            },
            "total_count": {"type": "integer"},
            "metadata": {"type": "object"},
            "warnings": _WARNINGS,
        },
    }
    outcomes = ("received", "inserted", "updated", "unchanged")
    generation = {
        "type": ["integer", "null"],
        "minimum": 0,
        "description": "What a read passes as min_generation to see this batch on any worker:"
        " the generation the batch raised, or for a batch that changed nothing the next one;"
        " null when the cache could not count it.",
    }
    ingested = {
        "type": "object",
        "required": [*outcomes, "generation"],
        "properties": {k: {"type": "integer"} for k in outcomes}
        | {"generation": generation, "request_id": {"type": "string"}, "warnings": _WARNINGS},
    }
    batch = {"type": "array", "items": _ref("TrendIn")}
    written = _json(ingested, "What the batch did") | {
        "headers": {"X-Trendmap-Generation": _GENERATION_HEADER}
    }
    return {
        **_read(
            "Stored records, newest first, in cursor pages (read from the database: always"
            " current; the ETag derives from the page itself)",
            _trend_parameters(settings),
            _json(page, "A page of records"),
            400,
            401,
            429,
            503,
        ),
        "post": {
            "summary": "Ingest a batch of records (all or nothing; upsert by natural key)",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": batch}}},
            "responses": {"200": written, **_errors(400, 401, 403, 413, 429, 503)},
        },
    }


def _service_paths() -> dict[str, Any]:
    """The map page and the health checks."""
    page = {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}
    ready = (
        "Readiness: the database answers. Also reports the cache, the broker,"
        " live subscriptions and each feed's circuit breaker (sources)"
    )
    return {
        "/": {
            "get": {
                "summary": "The live map (an HTML page)",
                "responses": {"200": page, **_errors(429)},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness (no I/O)",
                "responses": {"200": _json({"type": "object"}, "Alive")},
            }
        },
        "/health/ready": {
            "get": {
                "summary": ready,
                "responses": {
                    "200": _json({"type": "object"}, "Ready"),
                    "503": _json({"type": "object"}, "The database does not answer"),
                },
            }
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document for an app with these settings."""
    flows, hotspots = _flow_parameters(settings), _hotspot_parameters()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trendmap",
            "version": "1",
            "description": "How trending topics spread between countries. GraphQL at /graphql.",
        },
        "components": {
            "schemas": component_schemas() | exploring_schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from API_KEYS (READ_API_KEYS for reads), or a JWT"
                    " (HS256 or RS256) with scope trends:write or trends:read.",
                }
            },
        },
        "paths": {
            "/v1/flows": _answer_path(
                "Hot flows between countries, hottest first", flows, "flows", "Flow"
            ),
            "/v1/hotspots": _answer_path(
                "Countries by intensity, hottest first", hotspots, "hotspots", "Hotspot"
            ),
            "/v1/flows.geojson": _geojson_path(
                "Hot flows as GeoJSON LineString features, from source to target country",
                flows,
                {"type": "LineString", "properties": "Flow", "count": "flow_count"},
            ),
            "/v1/hotspots.geojson": _geojson_path(
                "Hotspots as GeoJSON Point features at each country's position",
                hotspots,
                {"type": "Point", "properties": "Hotspot", "count": "hotspot_count"},
            ),
            "/v1/trends": _trends_path(settings),
            **exploring_paths(),
            **_service_paths(),
        },
    }


def openapi_route(settings: Settings) -> Route:
    """``GET /openapi.json``: the document, encoded once when the app is built."""
    body = orjson.dumps(openapi_document(settings))

    async def openapi(_request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])


def exploring_schemas() -> dict[str, Any]:
    """The schemas of the exploring answers, derived from the core dataclasses."""
    found: dict[str, Any] = {}
    for model in (DataSpan, TopicSummary, TopicSpread, HotspotPoint):
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _explored_path(
    summary: str, parameters: list[dict[str, Any]], name: str, answer: Any, *errors: int
) -> dict[str, Any]:
    """GET of an exploring answer: ``{<name>: <answer>, metadata, warnings}``."""
    body = {
        "type": "object",
        "required": [name, "metadata", "warnings"],
        "properties": {name: answer, "metadata": {"type": "object"}, "warnings": _WARNINGS},
    }
    return _read(summary, parameters, _json(body, summary), *errors, 401, 429, 503)


def exploring_paths() -> dict[str, Any]:
    """``/v1/span``, ``/v1/topics``, ``/v1/topics/spread`` and ``/v1/hotspots/history``."""
    moment = {"type": "string", "format": "date-time"}
    text = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
    search = {
        "name": "search",
        "in": "query",
        "schema": text,
        "description": "Only topics whose key holds this text (normalised as keys are).",
    }
    limit = _count("limit", MAX_TOPICS, f"At most this many. Default {DEFAULT_TOPICS}.")
    topics: list[dict[str, Any]] = [_WINDOW, _AS_OF, _COUNTRIES, search, limit]
    spread: list[dict[str, Any]] = [
        {"name": "topic", "in": "query", "required": True, "schema": text},
        {"name": "since", "in": "query", "schema": moment, "description": "Default: until - 7d"},
        {"name": "until", "in": "query", "schema": moment, "description": "Default: now"},
    ]
    return {
        "/v1/span": _explored_path(
            "The archive's first and last record, records and countries",
            [],
            "data_span",
            _ref("DataSpan"),
            400,  # a malformed min_generation
        ),
        "/v1/topics": _explored_path(
            "Topics in the window: most countries, then largest count, then label",
            topics,
            "topics",
            {"type": "array", "items": _ref("TopicSummary")},
            400,
        ),
        "/v1/topics/spread": _explored_path(
            "How one topic spread: its countries by first sighting (404: none saw it)",
            spread,
            "topic_spread",
            _ref("TopicSpread"),
            400,
            404,
        ),
        "/v1/hotspots/history": _explored_path(
            "One country's hotspot figures at since, since + step, ... until, oldest first",
            _history_parameters(spread[1:]),
            "hotspot_history",
            {"type": "array", "items": _ref("HotspotPoint"), "maxItems": MAX_HISTORY_POINTS},
            400,
        ),
    }


def _history_parameters(since_until: list[dict[str, Any]]) -> list[dict[str, Any]]:
    country = {"name": "country", "in": "query", "required": True, "schema": {"type": "string"}}
    step = {
        "name": "step",
        "in": "query",
        "schema": {"type": "string", "enum": [window.value for window in TimeWindow]},
        "description": f"Between points. Default: the window. At most {MAX_HISTORY_POINTS} points.",
    }
    return [country, _WINDOW, *since_until, step]
