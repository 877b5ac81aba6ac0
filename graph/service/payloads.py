"""The JSON shapes of flows, hotspots and records: REST's wire format and the cache's payload."""

from __future__ import annotations

from typing import Any

from db.repository import StoredRecord
from graph.core.analytics import Flow, Hotspot


def flow_json(flow: Flow) -> dict[str, Any]:
    return {
        "from_country": flow.from_country,
        "to_country": flow.to_country,
        "heat": flow.heat,
        "shared_topics": list(flow.shared_topics),
        "time_delta_hours": flow.time_delta_hours,
        "similarity_score": flow.similarity_score,
    }


def hotspot_json(hotspot: Hotspot) -> dict[str, Any]:
    return {
        "country": hotspot.country,
        "intensity": hotspot.intensity,
        "topic_count": hotspot.topic_count,
        "volume": hotspot.volume,
        "velocity": hotspot.velocity,
        "avg_confidence": hotspot.avg_confidence,
        "top_topics": [
            {"label": t.label, "count": t.count, "confidence": t.confidence}
            for t in hotspot.top_topics
        ],
    }


def trend_json(record: StoredRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "timestamp": record.timestamp.isoformat(),
        "country": record.country,
        "topic_label": record.topic_label,
        "count": record.count,
        "confidence": record.confidence,
        "sources": record.sources,
    }
