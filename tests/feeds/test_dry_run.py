"""DRY_RUN_APIS: every feed answers from the demo generator, in its own format, with no network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from graph.feeds.dry_run import FEED_EXTENSION, dry_run_transport, recent_demo_records
from graph.feeds.google_trends import GoogleTrendsRSS
from graph.feeds.json_feed import JSONFeed

NOW = datetime(2026, 11, 20, 12, 3, tzinfo=UTC)
SOURCES = [
    GoogleTrendsRSS("https://trends.invalid/rss?geo={country}"),
    JSONFeed("https://feeds.invalid/{country}.json"),
]


def get(name: str, country: str, url: str = "https://trends.invalid/") -> httpx.Response:
    async def call() -> httpx.Response:
        transport = dry_run_transport(SOURCES, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(url, extensions={FEED_EXTENSION: (name, country)})

    return asyncio.run(call())


def test_recent_demo_records_are_the_countrys_last_day() -> None:
    records = recent_demo_records("US", NOW)
    assert len(records) > 10
    assert {r["country"] for r in records} == {"US"}
    stamps = [datetime.fromisoformat(str(r["timestamp"])) for r in records]
    assert all(NOW - timedelta(hours=24) < t <= NOW for t in stamps)
    assert stamps == sorted(stamps)
    assert recent_demo_records("US", NOW + timedelta(minutes=1)) == records  # 5-minute steps
    assert recent_demo_records("IS", NOW) == []  # not a demo country


def test_each_source_gets_its_own_format_holding_the_same_topics() -> None:
    rss, json = get("google_trends_rss", "BR"), get("json_feed", "BR")
    assert rss.status_code == json.status_code == 200
    from_rss = SOURCES[0].parse(rss.content, "BR")
    from_json = SOURCES[1].parse(json.content, "BR")
    assert from_rss.skipped == from_json.skipped == []
    assert [r["topic_label"] for r in from_rss.records] == [
        r["topic_label"] for r in from_json.records
    ]
    assert from_json.records == recent_demo_records("BR", NOW)


def test_answers_are_deterministic() -> None:
    assert get("google_trends_rss", "JP").content == get("google_trends_rss", "JP").content


def test_a_request_for_no_known_feed_gets_a_404() -> None:
    assert get("twitter", "US").status_code == 404
