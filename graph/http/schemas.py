"""The JSON Schemas of the REST bodies (``components.schemas`` of /openapi.json), derived from
the core models: the ``TrendIn`` pydantic model and the ``Flow`` and ``Hotspot`` dataclasses.

A model's types say what each field is; the bounds that live in code rather than in types (a
heat is in [0, 1], at most SHARED_TOPICS shared topics) are added here, from the same constants.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

from pydantic import TypeAdapter

from graph.core.flows import SHARED_TOPICS, Flow
from graph.core.hotspots import TOP_TOPICS, Hotspot, TopTopic
from graph.core.records import MAX_LABEL_CHARS, StoredRecord, TrendIn, assigned_country_codes

_REF_TEMPLATE = "#/components/schemas/{model}"
_SHARE = {"minimum": 0, "maximum": 1}


# Bounds the types cannot carry, by schema and property.
@functools.cache
def one_country() -> str:
    """A regular expression (JSON Schema's dialect) matching exactly the assigned ISO 3166-1
    alpha-2 codes, in any case, as the server accepts them."""
    codes = sorted(assigned_country_codes())
    either = ("".join(f"[{ch}{ch.lower()}]" for ch in code) for code in codes)
    return "(?:" + "|".join(either) + ")"


def countries_pattern() -> str:
    """The ``countries`` parameter: comma-separated codes, any case and spacing (empty items are
    skipped, as the server skips them)."""
    item = f"\\s*(?:{one_country()})?\\s*"
    return f"^{item}(?:,{item})*$"


_BOUNDS: dict[str, dict[str, dict[str, Any]]] = {
    "Flow": {
        "heat": _SHARE,
        "similarity_score": _SHARE,
        "time_delta_hours": {"minimum": 0},
        "shared_topics": {"maxItems": SHARED_TOPICS},
    },
    "Hotspot": {
        "intensity": _SHARE,
        "score": {"minimum": 0},
        # 2V / (V + P), P the previous window's volume: 2 all new, 1 steady, towards 0 fading.
        "velocity": {"exclusiveMinimum": 0, "maximum": 2},
        "avg_confidence": _SHARE,
        "top_topics": {"maxItems": TOP_TOPICS},
    },
    "TopTopic": {"confidence": _SHARE},
    # Checked by validators (assigned code, trimmed label), so absent from the model's schema.
    "TrendIn": {
        "country": {"pattern": f"^\\s*{one_country()}\\s*$"},
        "topic_label": {"minLength": 1, "maxLength": MAX_LABEL_CHARS},
    },
}

_ERROR = {
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
}

_METADATA = {
    "type": "object",
    "required": ["request_id", "time_window", "as_of", "cache_hit", "computed_at"],
    "properties": {
        "request_id": {"type": ["string", "null"]},
        "time_window": {"type": "string"},
        "countries": {"type": ["array", "null"], "items": {"type": "string"}},
        "threshold": {"type": "number"},
        "as_of": {"type": "string", "format": "date-time"},
        "flow_count": {"type": "integer"},
        "max_heat": {
            "description": "Flows only: the hottest pair in the window whatever the threshold"
            " (null when no two countries share a topic).",
            "type": ["object", "null"],
            "required": ["heat", "from_country", "to_country"],
            "properties": {
                "heat": {"type": "number", **_SHARE},
                "from_country": {"type": "string"},
                "to_country": {"type": "string"},
            },
        },
        "pairs": {
            "type": "integer",
            "minimum": 0,
            "description": "Flows only: how many pairs of countries share a topic.",
        },
        "hotspot_count": {"type": "integer"},
        "cache_hit": {"type": "boolean"},
        "computed_at": {"type": "string", "format": "date-time"},
    },
}


def _model_schemas() -> dict[str, Any]:
    """Each model's schema, and the ones it refers to (Hotspot's TopTopic), by name."""
    found: dict[str, Any] = {}
    for name, schema in (
        ("Flow", TypeAdapter(Flow).json_schema(ref_template=_REF_TEMPLATE)),
        ("Hotspot", TypeAdapter(Hotspot).json_schema(ref_template=_REF_TEMPLATE)),
        ("TrendIn", TrendIn.model_json_schema(ref_template=_REF_TEMPLATE)),
    ):
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    for name, bounds in _BOUNDS.items():
        for field, extra in bounds.items():
            found[name]["properties"][field].update(extra)
    for model in (Flow, Hotspot, TopTopic):  # descriptions: the dataclass fields' metadata
        properties = found[model.__name__]["properties"]
        for spec in dataclasses.fields(model):
            if "description" in spec.metadata:
                properties[spec.name]["description"] = spec.metadata["description"]
    for name in ("Flow", "Hotspot"):  # every field is always sent, defaults or not
        found[name]["required"] = list(found[name]["properties"])
    return found


def _trend(trend_in: dict[str, Any]) -> dict[str, Any]:
    """A stored record as GET /v1/trends sends it: the record as given, its id and cursor."""
    trend = copy.deepcopy(trend_in)
    trend["title"] = "Trend"
    trend["description"] = "A stored record: as it was sent, with its id and page cursor."
    trend["properties"] = {
        "id": {"type": "integer"},
        "cursor": {"type": "string"},
        **trend["properties"],
        # Never null once stored: a record without sources has an empty list.
        "sources": {
            "type": "array",
            "items": {"type": "string"},
            "description": StoredRecord.__dataclass_fields__["sources"].metadata["description"],
        },
    }
    trend["required"] = ["id", *trend["required"]]
    return trend


@functools.cache
def component_schemas() -> dict[str, Any]:
    """``components.schemas``: built once per process (the models do not change)."""
    models = _model_schemas()
    return {
        "Error": _ERROR,
        **models,
        "Trend": _trend(models["TrendIn"]),
        "Metadata": _METADATA,
    }
