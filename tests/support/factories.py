"""Records, settings and credentials the tests build apps and requests from."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from graph.settings import Settings

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")


WRITE_KEY = "test-write-key"


READ_KEY = "test-read-key"


AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_keys": (WRITE_KEY,),
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def as_input(r: dict[str, Any]) -> dict[str, Any]:
    """A REST-shaped record as GraphQL's TrendInput (camelCase)."""
    return {
        "timestamp": r["timestamp"],
        "country": r["country"],
        "topicLabel": r["topic_label"],
        "count": r["count"],
        "confidence": r["confidence"],
        "sources": r["sources"],
    }


def write_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {WRITE_KEY}"}


def record(
    country: str = "US",
    topic: str = "World Cup",
    *,
    hours_ago: float = 1.0,
    count: int = 10,
    confidence: float = 0.9,
    sources: list[str] | None = None,
    as_of: datetime = AS_OF,
) -> dict[str, Any]:
    """A valid record in the REST shape, placed relative to AS_OF."""
    moment = as_of - timedelta(hours=hours_ago)
    return {
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "country": country,
        "topic_label": topic,
        "count": count,
        "confidence": confidence,
        "sources": sources,
    }


def spread(a: str, b: str, topics: list[str], now: datetime | None = None) -> list[dict[str, Any]]:
    """`b` picks up exactly `a`'s topics an hour later (3 h and 2 h before ``now``, default the
    real clock): one hot flow a → b, heat 0.5^(1/6) ≈ 0.89."""
    now = now if now is not None else datetime.now(UTC)
    return [
        {
            "timestamp": (now - timedelta(hours=hours)).isoformat(),
            "country": country,
            "topic_label": topic,
            "count": 100,
            "confidence": 0.9,
        }
        for country, hours in ((a, 3), (b, 2))
        for topic in topics
    ]
