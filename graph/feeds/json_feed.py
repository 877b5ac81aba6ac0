"""``json_feed``: any URL that answers with records in trendmap's own JSON shape.

``JSON_FEED_URL`` is a template with ``{country}``. The document is either a JSON array of
records, exactly what ``POST /v1/trends`` takes, or an object whose ``trends`` member is such
an array, which is what ``GET /v1/trends`` answers: one trendmap can pull from another with
``JSON_FEED_URL=https://other.example/v1/trends?countries={country}``.

Items that are not objects, and records for another country than the one asked for, are
skipped and counted; the records left are validated by the poller like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from graph.feeds.sources import FeedItems, FeedMalformed, URLTemplate


class JSONFeed(URLTemplate):
    name = "json_feed"

    def parse(self, body: bytes, country: str) -> FeedItems:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise FeedMalformed(f"not JSON: {exc}") from None
        if isinstance(document, dict):
            document = document.get("trends")
        if not isinstance(document, list):
            raise FeedMalformed("expected a JSON array of records, or an object with 'trends'")
        found = FeedItems()
        for number, item in enumerate(document, start=1):
            if not isinstance(item, dict):
                found.skipped.append(f"item {number}: not a JSON object")
            elif str(item.get("country", "")).strip().upper() != country:
                found.skipped.append(
                    f"item {number}: country {item.get('country')!r} in the feed for {country}"
                )
            else:
                found.records.append(item)
        return found

    def render(self, records: Sequence[dict[str, Any]], now: datetime) -> bytes:
        return orjson.dumps(list(records))
