"""``google_trends_rss``: Google Trends' public "trending now" RSS feed, one per country.

Each ``<item>`` becomes a record:

- topic: ``<title>``;
- count: ``<ht:approx_traffic>`` read as a number (``"200,000+"`` is 200000);
- timestamp: ``<pubDate>`` (RFC 822);
- sources: the ``<ht:news_item_url>`` of each ``<ht:news_item>`` (at most 20);
- confidence: see :func:`confidence`.

The ``ht`` namespace has had two URIs: ``https://trends.google.com/trending/rss`` now, and
``https://trends.google.com/trends/trendingsearches/daily`` before; both are read. The XML is
parsed with defusedxml, which refuses DTDs, entity declarations and external references, so a
"billion laughs" document or an external entity is a malformed feed, not a hang or a leak.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, register_namespace, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from graph.core.records import MAX_SOURCES
from graph.feeds.sources import FeedItems, FeedMalformed, URLTemplate

NAMESPACES = (
    "https://trends.google.com/trending/rss",
    "https://trends.google.com/trends/trendingsearches/daily",
)
# Written documents (dry runs) use the feed's own prefix rather than ElementTree's "ns0".
register_namespace("ht", NAMESPACES[0])
_TRAFFIC = re.compile(r"^\s*(\d{1,3}(?:,\d{3})*|\d+)\s*\+?\s*$")


def parse_traffic(text: str) -> int:
    """``"200,000+"`` → 200000; ValueError for anything else (``"lots"``, ``"1.5M+"``)."""
    match = _TRAFFIC.match(text)
    if match is None:
        raise ValueError(f"approx_traffic {text!r} is not a number like '200,000+'")
    return int(match.group(1).replace(",", ""))


def confidence(traffic: int, news_items: int) -> float:
    """How sure we are that an item is a real trend, from what the feed tells us.

    Google's feed carries no classifier score, so this is derived: half of it from the traffic
    bucket on a log scale (1 search scores 0, 10 million or more score 1), and the other half
    from how many news articles corroborate it (none scores 0, three or more score 1). The
    result is kept within [0.1, 1.0], rounded to 3 places: 200,000+ searches with 3 articles
    give 0.879, 2,000+ with one article 0.402.
    """
    volume = min(math.log10(max(traffic, 1)) / 7, 1.0)
    corroboration = min(news_items, 3) / 3
    return round(max(0.1, 0.5 * volume + 0.5 * corroboration), 3)


def _child_text(item: Element, name: str) -> str | None:
    for ns in NAMESPACES:
        found = item.find(f"{{{ns}}}{name}")
        if found is not None and found.text is not None:
            return found.text
    return None


def _news_urls(item: Element) -> list[str]:
    urls: list[str] = []
    for ns in NAMESPACES:
        for news in item.iter(f"{{{ns}}}news_item"):
            url = news.find(f"{{{ns}}}news_item_url")
            if url is not None and url.text and url.text.strip():
                urls.append(url.text.strip())
    return urls


class GoogleTrendsRSS(URLTemplate):
    name = "google_trends_rss"

    def parse(self, body: bytes, country: str) -> FeedItems:
        try:
            root = fromstring(body, forbid_dtd=True)
        except (ParseError, DefusedXmlException) as exc:
            raise FeedMalformed(f"not a readable RSS document: {exc}") from None
        channel = root.find("channel")
        if root.tag != "rss" or channel is None:
            raise FeedMalformed(f"not an RSS feed: the root element is <{root.tag}>")
        found = FeedItems()
        for number, item in enumerate(channel.iter("item"), start=1):
            try:
                found.records.append(self._record(item, country))
            except ValueError as exc:
                found.skipped.append(f"item {number}: {exc}")
        return found

    @staticmethod
    def _record(item: Element, country: str) -> dict[str, Any]:
        title = (item.findtext("title") or "").strip()
        if not title:
            raise ValueError("no title")
        traffic_text = _child_text(item, "approx_traffic")
        if traffic_text is None:
            raise ValueError("no approx_traffic")
        traffic = parse_traffic(traffic_text)
        published = item.findtext("pubDate")
        if not published:
            raise ValueError("no pubDate")
        try:
            moment = parsedate_to_datetime(published.strip())
        except (TypeError, ValueError):
            raise ValueError(f"pubDate {published!r} is not an RFC 822 date") from None
        if moment.tzinfo is None:
            raise ValueError(f"pubDate {published!r} has no time zone")
        urls = _news_urls(item)
        return {
            "timestamp": moment.astimezone(UTC).isoformat(),
            "country": country,
            "topic_label": title,
            "count": traffic,
            "confidence": confidence(traffic, len(urls)),
            "sources": urls[:MAX_SOURCES] or None,
        }

    def render(self, records: Sequence[dict[str, Any]], now: datetime) -> bytes:
        """An RSS document in today's format: what the real feed looks like, for dry runs."""
        ns = NAMESPACES[0]
        rss = Element("rss", {"version": "2.0"})
        channel = SubElement(rss, "channel")
        SubElement(channel, "title").text = "Daily Search Trends"
        SubElement(channel, "lastBuildDate").text = format_datetime(now)
        for record in records:
            item = SubElement(channel, "item")
            SubElement(item, "title").text = str(record["topic_label"])
            SubElement(item, f"{{{ns}}}approx_traffic").text = _bucket(int(record["count"]))
            moment = datetime.fromisoformat(str(record["timestamp"]))
            SubElement(item, "pubDate").text = format_datetime(moment)
            for url in record.get("sources") or ():
                news = SubElement(item, f"{{{ns}}}news_item")
                SubElement(news, f"{{{ns}}}news_item_title").text = str(record["topic_label"])
                SubElement(news, f"{{{ns}}}news_item_url").text = str(url)
        xml: bytes = tostring(rss, encoding="utf-8", xml_declaration=True)
        return xml


def _bucket(count: int) -> str:
    """Google's traffic buckets: the count rounded down to 1, 2 or 5 times a power of ten."""
    magnitude = 10 ** int(math.log10(max(count, 1)))
    step = max(m * magnitude for m in (1, 2, 5) if m * magnitude <= max(count, 1))
    return f"{step:,}+"
