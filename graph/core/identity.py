"""Ids that name a flow or a hotspot within its answer (DESIGN.md, Interfaces).

``Flow.id`` is ``"<window>@<as_of>:FROM-TO"`` and ``Hotspot.id`` is ``"<window>@<as_of>:CC"``,
with the answer's window and as_of (ISO 8601), so that normalising client caches keep one object
per thing and never merge two windows or instants. The identified classes are the core ones
with an ``id``: whatever reads a core flow or hotspot reads them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graph.core.flows import Flow
from graph.core.hotspots import Hotspot, TopTopic
from graph.core.windows import TimeWindow

__all__ = [
    "IdentifiedFlow",
    "IdentifiedHotspot",
    "answer_prefix",
    "flow_with_id",
    "hotspot_with_id",
]


@dataclass(frozen=True, slots=True)
class IdentifiedFlow(Flow):
    """A flow as one answer holds it."""

    id: str = field(
        default="",
        metadata={
            "description": "The flow within its answer: '<timeWindow>@<asOf>:FROM-TO' (e.g."
            " '24h@2026-01-31T12:00:00+00:00:US-BR'), unique per window, instant and pair."
        },
    )


@dataclass(frozen=True, slots=True)
class IdentifiedHotspot(Hotspot):
    """A hotspot as one answer holds it."""

    id: str = field(
        default="",
        metadata={
            "description": "The hotspot within its answer: '<timeWindow>@<asOf>:CC' (e.g."
            " '24h@2026-01-31T12:00:00+00:00:US'), unique per window, instant and country."
        },
    )


def answer_prefix(window: TimeWindow, as_of: datetime) -> str:
    """What every id of one answer starts with: ``"<window>@<as_of ISO 8601>"``."""
    return f"{window.value}@{as_of.isoformat()}"


def flow_with_id(item: Mapping[str, Any], prefix: str) -> IdentifiedFlow:
    """An identified flow from its JSON (the REST shape) and its answer's prefix."""
    fields = {**item, "shared_topics": tuple(item["shared_topics"])}
    return IdentifiedFlow(**fields, id=f"{prefix}:{item['from_country']}-{item['to_country']}")


def hotspot_with_id(item: Mapping[str, Any], prefix: str) -> IdentifiedHotspot:
    """An identified hotspot from its JSON (the REST shape) and its answer's prefix."""
    topics = tuple(TopTopic(**topic) for topic in item["top_topics"])
    return IdentifiedHotspot(**{**item, "top_topics": topics}, id=f"{prefix}:{item['country']}")
