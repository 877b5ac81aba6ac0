"""Google Trends' RSS feed: both namespaces, every field, bad items, hostile XML."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from graph.core.records import MAX_SOURCES, validate_batch
from graph.feeds.google_trends import GoogleTrendsRSS, confidence, parse_traffic
from graph.feeds.sources import FeedMalformed
from tests.support.feedserver import (
    BILLION_LAUGHS,
    DAILY_NS,
    EXTERNAL_ENTITY,
    TRENDING_NS,
    Item,
    rss,
)

SOURCE = GoogleTrendsRSS("https://trends.google.com/trending/rss?geo={country}")
WHEN = datetime(2026, 11, 21, 4, 10, tzinfo=UTC)


def test_the_url_template_takes_the_country() -> None:
    assert SOURCE.url("BR") == "https://trends.google.com/trending/rss?geo=BR"


@pytest.mark.parametrize(
    ("text", "number"),
    [("200,000+", 200_000), ("2,000+", 2000), ("500+", 500), ("1,000,000+", 1_000_000), ("7", 7)],
)
def test_traffic_buckets_are_read_as_numbers(text: str, number: int) -> None:
    assert parse_traffic(text) == number


@pytest.mark.parametrize("text", ["", "lots", "1.5M+", "20,00+", "-5", "1,000,000,"])
def test_unreadable_traffic_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="approx_traffic"):
        parse_traffic(text)


def test_confidence_grows_with_traffic_and_corroboration_and_stays_in_range() -> None:
    assert confidence(200_000, 3) == 0.879
    assert confidence(2_000, 1) == 0.402
    assert confidence(1, 0) == 0.1
    assert confidence(50_000_000, 9) == 1.0
    by_traffic = [confidence(t, 1) for t in (100, 1_000, 10_000, 100_000, 1_000_000)]
    assert by_traffic == sorted(by_traffic) and len(set(by_traffic)) == 5
    by_news = [confidence(10_000, n) for n in range(4)]
    assert by_news == sorted(by_news) and len(set(by_news)) == 4


@pytest.mark.parametrize("ns", [TRENDING_NS, DAILY_NS])
def test_items_become_records_in_both_namespaces(ns: str) -> None:
    body = rss(
        [
            Item("Ravens", "200,000+", WHEN, ["https://a.example/1", "https://b.example/2"]),
            Item("  World Cup  ", "2,000+", "Sat, 21 Nov 2026 03:00:00 -0800"),
        ],
        ns=ns,
    )
    found = SOURCE.parse(body, "US")
    assert found.skipped == []
    assert found.records == [
        {
            "timestamp": "2026-11-21T04:10:00+00:00",
            "country": "US",
            "topic_label": "Ravens",
            "count": 200_000,
            "confidence": confidence(200_000, 2),
            "sources": ["https://a.example/1", "https://b.example/2"],
        },
        {
            "timestamp": "2026-11-21T11:00:00+00:00",
            "country": "US",
            "topic_label": "World Cup",
            "count": 2000,
            "confidence": confidence(2000, 0),
            "sources": None,
        },
    ]
    assert len(validate_batch(found.records)) == 2


def test_sources_are_capped_at_the_record_limit() -> None:
    news = [f"https://news.example/{i}" for i in range(MAX_SOURCES + 5)]
    (record,) = SOURCE.parse(rss([Item("Ravens", "10+", WHEN, news)]), "US").records
    assert record["sources"] == news[:MAX_SOURCES]


def test_bad_items_are_skipped_and_counted_and_the_rest_kept() -> None:
    body = rss(
        [
            Item("Good", "1,000+", WHEN),
            Item("", "1,000+", WHEN),
            Item("No traffic", None, WHEN),
            Item("Odd traffic", "many", WHEN),
            Item("No date", "1,000+", None),
            Item("Bad date", "1,000+", "yesterday-ish"),
            Item("Naive date", "1,000+", "Sat, 21 Nov 2026 03:00:00"),
            Item("Also good", "5,000+", WHEN - timedelta(hours=1)),
        ]
    )
    found = SOURCE.parse(body, "GB")
    assert [r["topic_label"] for r in found.records] == ["Good", "Also good"]
    assert [s.split(":")[0] for s in found.skipped] == [f"item {n}" for n in (2, 3, 4, 5, 6, 7)]
    assert "no title" in found.skipped[0] and "no approx_traffic" in found.skipped[1]
    assert "RFC 822" in found.skipped[4] and "time zone" in found.skipped[5]


@pytest.mark.parametrize(
    "body",
    [b"", b"<rss><channel><item>", b"not xml at all", b'{"json": true}'],
    ids=["empty", "truncated", "text", "json"],
)
def test_a_malformed_document_is_refused_whole(body: bytes) -> None:
    with pytest.raises(FeedMalformed, match="RSS"):
        SOURCE.parse(body, "US")


def test_a_document_that_is_not_rss_is_refused() -> None:
    with pytest.raises(FeedMalformed, match=r"root element is <.*feed>"):
        SOURCE.parse(b'<feed xmlns="http://www.w3.org/2005/Atom"></feed>', "US")


def test_a_billion_laughs_is_refused_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(FeedMalformed):
        SOURCE.parse(BILLION_LAUGHS, "US")
    assert time.perf_counter() - started < 1.0


def test_an_external_entity_is_never_resolved() -> None:
    with pytest.raises(FeedMalformed):
        SOURCE.parse(EXTERNAL_ENTITY, "US")


def test_a_rendered_feed_reads_back_as_the_same_topics() -> None:
    records = [
        {
            "timestamp": (WHEN - timedelta(hours=h)).isoformat(),
            "country": "FR",
            "topic_label": f"Sujet {h}",
            "count": 1234 * (h + 1),
            "confidence": 0.9,
            "sources": [f"https://journal.example/{h}"] if h % 2 else None,
        }
        for h in range(4)
    ]
    body = SOURCE.render(records, WHEN)
    assert b'xmlns:ht="https://trends.google.com/trending/rss"' in body
    found = SOURCE.parse(body, "FR")
    assert found.skipped == []
    assert [(r["topic_label"], r["timestamp"]) for r in found.records] == [
        (r["topic_label"], r["timestamp"]) for r in records
    ]
    # Counts come back as Google's buckets: 1, 2 or 5 times a power of ten, at most the count.
    assert [r["count"] for r in found.records] == [1000, 2000, 2000, 2000]
    assert [r["sources"] for r in found.records] == [r["sources"] for r in records]
