"""The GraphQL object and input types (camelCase on the wire, snake_case in Python)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry


@strawberry.type(description="A topic that makes a country hot.")
class TopTopic:
    label: str
    count: int
    confidence: float


@strawberry.type(description="Where it is hot in the window, and why.")
class Hotspot:
    country: str
    intensity: float
    topic_count: int
    volume: int
    velocity: float
    avg_confidence: float
    top_topics: list[TopTopic]

    @classmethod
    def of(cls, item: dict[str, Any]) -> Hotspot:
        """From the service's payload item (the REST shape)."""
        topics = [TopTopic(**t) for t in item["top_topics"]]
        return cls(**{**item, "top_topics": topics})


@strawberry.type(description="Topics spreading from one country to another.")
class Flow:
    from_country: str
    to_country: str
    heat: float
    shared_topics: list[str]
    time_delta_hours: float
    similarity_score: float

    @classmethod
    def of(cls, item: dict[str, Any]) -> Flow:
        """From the service's payload item (the REST shape)."""
        return cls(**item)


@strawberry.type(description="One stored trend record.")
class Trend:
    id: strawberry.ID
    timestamp: datetime
    country: str
    topic_label: str
    count: int
    confidence: float
    sources: list[str] | None


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


@strawberry.input(description="A trend record to ingest.")
class TrendInput:
    timestamp: datetime
    country: str
    topic_label: str
    count: int
    confidence: float
    sources: list[str] | None = None


@strawberry.type(description="What an ingest did.")
class IngestResult:
    received: int
    inserted: int
    updated: int
    unchanged: int
