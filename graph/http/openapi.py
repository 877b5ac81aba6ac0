"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``."""

from __future__ import annotations

import functools
from typing import Any

_WINDOW = {
    "name": "time_window",
    "in": "query",
    "schema": {"type": "string", "enum": ["1h", "6h", "12h", "24h"], "default": "24h"},
    "description": "The window ending at as_of: as_of - W < timestamp <= as_of.",
}
_COUNTRIES = {
    "name": "countries",
    "in": "query",
    "schema": {"type": "string"},
    "example": "US,CO,BR",
    "description": "Comma-separated ISO 3166-1 alpha-2 codes, any case. Absent: every country.",
}
_AS_OF = {
    "name": "as_of",
    "in": "query",
    "schema": {"type": "string", "format": "date-time"},
    "description": "End of the window, ISO 8601 with a UTC offset. Default: now.",
}


def _limit(maximum: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum},
    }


_FLOW_PARAMETERS = [
    _WINDOW,
    _COUNTRIES,
    {
        "name": "threshold",
        "in": "query",
        "schema": {"type": "number", "minimum": 0, "maximum": 1},
        "description": "Minimum heat. Default FLOW_THRESHOLD (0.5).",
    },
    _AS_OF,
    _limit(10_000),
]
_HOTSPOT_PARAMETERS = [_WINDOW, _COUNTRIES, _AS_OF, _limit(1_000)]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Bad parameters or records",
        401: "Missing or unknown credential",
        403: "Credential lacks the right",
        413: "Body or batch too large",
        429: "Rate limited: see Retry-After, RateLimit and RateLimit-Policy",
        503: "The database is unavailable",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


_NUMBER_01 = {"type": "number", "minimum": 0, "maximum": 1}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail", "request_id", "timestamp"],
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "request_id": {"type": ["string", "null"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "field": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Flow": {
        "type": "object",
        "required": [
            "from_country",
            "to_country",
            "heat",
            "shared_topics",
            "time_delta_hours",
            "similarity_score",
        ],
        "properties": {
            "from_country": {"type": "string"},
            "to_country": {"type": "string"},
            "heat": _NUMBER_01,
            "shared_topics": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
            "time_delta_hours": {"type": "number", "minimum": 0},
            "similarity_score": _NUMBER_01,
        },
    },
    "TopTopic": {
        "type": "object",
        "required": ["label", "count", "confidence"],
        "properties": {
            "label": {"type": "string"},
            "count": {"type": "integer"},
            "confidence": _NUMBER_01,
        },
    },
    "Hotspot": {
        "type": "object",
        "required": ["country", "intensity", "topic_count", "top_topics"],
        "properties": {
            "country": {"type": "string"},
            "intensity": _NUMBER_01,
            "topic_count": {"type": "integer"},
            "volume": {"type": "integer"},
            "velocity": {"type": "number", "minimum": 0, "maximum": 2},
            "avg_confidence": _NUMBER_01,
            "top_topics": {"type": "array", "items": _ref("TopTopic"), "maxItems": 5},
        },
    },
    "TrendIn": {
        "type": "object",
        "required": ["timestamp", "country", "topic_label", "count", "confidence"],
        "properties": {
            "timestamp": {"type": "string", "format": "date-time"},
            "country": {"type": "string", "minLength": 2, "maxLength": 2},
            "topic_label": {"type": "string", "minLength": 1, "maxLength": 200},
            "count": {"type": "integer", "minimum": 1},
            "confidence": _NUMBER_01,
            "sources": {
                "type": ["array", "null"],
                "maxItems": 20,
                "items": {"type": "string", "maxLength": 2048},
            },
        },
    },
    "Trend": {
        "type": "object",
        "required": ["id", "timestamp", "country", "topic_label", "count", "confidence"],
        "properties": {
            "id": {"type": "integer"},
            "cursor": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "country": {"type": "string"},
            "topic_label": {"type": "string"},
            "count": {"type": "integer"},
            "confidence": _NUMBER_01,
            "sources": {"type": ["array", "null"], "items": {"type": "string"}},
        },
    },
    "Metadata": {
        "type": "object",
        "required": ["request_id", "time_window", "as_of", "cache_hit", "computed_at"],
        "properties": {
            "request_id": {"type": ["string", "null"]},
            "time_window": {"type": "string"},
            "countries": {"type": ["array", "null"], "items": {"type": "string"}},
            "threshold": {"type": "number"},
            "as_of": {"type": "string", "format": "date-time"},
            "flow_count": {"type": "integer"},
            "hotspot_count": {"type": "integer"},
            "cache_hit": {"type": "boolean"},
            "computed_at": {"type": "string", "format": "date-time"},
        },
    },
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
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": f"A FeatureCollection; metadata.{kind['count']} counts features",
                    "content": {"application/geo+json": {"schema": collection}},
                },
                **_errors(400, 401, 429, 503),
            },
        }
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once per process)."""
    warnings = {"type": "array", "items": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trendmap",
            "version": "1",
            "description": "How trending topics spread between countries. GraphQL at /graphql.",
        },
        "components": {
            "schemas": _SCHEMAS,
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
            "/v1/flows": {
                "get": {
                    "summary": "Hot flows between countries, hottest first",
                    "parameters": _FLOW_PARAMETERS,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["flows", "metadata", "warnings"],
                                "properties": {
                                    "flows": {"type": "array", "items": _ref("Flow")},
                                    "metadata": _ref("Metadata"),
                                    "warnings": warnings,
                                },
                            },
                            "Flows",
                        ),
                        **_errors(400, 401, 429, 503),
                    },
                }
            },
            "/v1/hotspots": {
                "get": {
                    "summary": "Countries by intensity, hottest first",
                    "parameters": _HOTSPOT_PARAMETERS,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["hotspots", "metadata", "warnings"],
                                "properties": {
                                    "hotspots": {"type": "array", "items": _ref("Hotspot")},
                                    "metadata": _ref("Metadata"),
                                    "warnings": warnings,
                                },
                            },
                            "Hotspots",
                        ),
                        **_errors(400, 401, 429, 503),
                    },
                }
            },
            "/v1/flows.geojson": _geojson_path(
                "Hot flows as GeoJSON LineString features, from source to target country",
                _FLOW_PARAMETERS,
                {"type": "LineString", "properties": "Flow", "count": "flow_count"},
            ),
            "/v1/hotspots.geojson": _geojson_path(
                "Hotspots as GeoJSON Point features at each country's position",
                _HOTSPOT_PARAMETERS,
                {"type": "Point", "properties": "Hotspot", "count": "hotspot_count"},
            ),
            "/v1/trends": {
                "get": {
                    "summary": "Stored records, newest first, in cursor pages",
                    "parameters": [
                        _COUNTRIES,
                        {"name": "topic", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "since",
                            "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "until",
                            "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "first",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {"name": "after", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
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
                                    "warnings": warnings,
                                },
                            },
                            "A page of records",
                        ),
                        **_errors(400, 401, 429, 503),
                    },
                },
                "post": {
                    "summary": "Ingest a batch of records (all or nothing; upsert by natural key)",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": _ref("TrendIn")}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["received", "inserted", "updated", "unchanged"],
                                "properties": {
                                    k: {"type": "integer"}
                                    for k in ("received", "inserted", "updated", "unchanged")
                                }
                                | {"request_id": {"type": "string"}},
                            },
                            "What the batch did",
                        ),
                        **_errors(400, 401, 403, 413, 429, 503),
                    },
                },
            },
            "/": {
                "get": {
                    "summary": "The live map (an HTML page)",
                    "responses": {
                        "200": {
                            "description": "The page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        **_errors(429),
                    },
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
                    "summary": (
                        "Readiness: the database answers. Also reports the cache, the broker,"
                        " live subscriptions and each feed's circuit breaker (sources)"
                    ),
                    "responses": {
                        "200": _json({"type": "object"}, "Ready"),
                        "503": _json({"type": "object"}, "The database does not answer"),
                    },
                }
            },
        },
    }
