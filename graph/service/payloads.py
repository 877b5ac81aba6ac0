"""Core objects to and from their JSON: the REST wire format, and what the cache stores.

orjson writes the core dataclasses as they are (the field order is the wire order); these
functions read them back, and give a stored record's fields to a caller adding its cursor.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from graph.core.flows import Flow, FlowStats
from graph.core.hotspots import Hotspot, TopTopic
from graph.core.records import StoredRecord

__all__ = ["flow_of", "flow_stats_of", "hotspot_of", "trend_json"]

_FIELDS = tuple(f.name for f in fields(StoredRecord))


def flow_of(item: dict[str, Any]) -> Flow:
    """A core flow from its JSON."""
    return Flow(**{**item, "shared_topics": tuple(item["shared_topics"])})


def flow_stats_of(metadata: dict[str, Any]) -> FlowStats:
    """A flows answer's stats from its metadata (``max_heat`` and ``pairs``)."""
    hottest = metadata.get("max_heat")
    if hottest is None:
        return FlowStats(None, None, None, metadata.get("pairs", 0))
    return FlowStats(
        hottest["heat"], hottest["from_country"], hottest["to_country"], metadata["pairs"]
    )


def hotspot_of(item: dict[str, Any]) -> Hotspot:
    """A core hotspot from its JSON."""
    topics = tuple(TopTopic(**topic) for topic in item["top_topics"])
    return Hotspot(**{**item, "top_topics": topics})


def trend_json(record: StoredRecord) -> dict[str, Any]:
    """The record's fields in their declared order, for a caller to add its cursor to (orjson
    writes the timestamp as ISO 8601, as ``isoformat()`` does)."""
    return {name: getattr(record, name) for name in _FIELDS}
