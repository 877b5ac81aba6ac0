"""``DRY_RUN_APIS=true``: feeds without a network, served from the demo generator.

:func:`dry_run_transport` is an httpx transport: the poller's one HTTP client sends its requests
to it instead of the network, and it answers each with a feed document in the asked source's
own format (RSS for ``google_trends_rss``, JSON for ``json_feed``), holding the demo records of
the asked country from the last 24 hours. So a dry run exercises the same path as a real one:
the call, the size cap, parsing, validation, storage, and the subscribers after it. The records
are deterministic for the time (the demo data moves in 5-minute steps), and a country the demo
does not cover gets an empty feed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from graph.feeds.demo import ANCHOR_MINUTES, generate_demo_records
from graph.feeds.sources import Source

# Set by the poller on each request: which source and country the request is for.
FEED_EXTENSION = "trendmap.feed"
RECENT = timedelta(hours=24)


@functools.lru_cache(maxsize=2)
def _demo_by_country(anchor: datetime) -> dict[str, list[dict[str, Any]]]:
    by_country: dict[str, list[dict[str, Any]]] = {}
    for record in generate_demo_records(anchor):
        by_country.setdefault(str(record["country"]), []).append(record)
    return by_country


def recent_demo_records(country: str, now: datetime) -> list[dict[str, Any]]:
    """The demo records of ``country`` in the 24 hours before ``now``, oldest first."""
    now = now.astimezone(UTC)
    anchor = now.replace(minute=now.minute - now.minute % ANCHOR_MINUTES, second=0, microsecond=0)
    since = (anchor - RECENT).isoformat()
    records = _demo_by_country(anchor).get(country, [])
    return [r for r in records if str(r["timestamp"]) > since]


def dry_run_transport(
    sources: Sequence[Source], clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> httpx.MockTransport:
    """A transport answering every feed request from the demo data; no request leaves it."""
    by_name = {source.name: source for source in sources}

    def answer(request: httpx.Request) -> httpx.Response:
        feed = request.extensions.get(FEED_EXTENSION)
        if not isinstance(feed, tuple) or feed[0] not in by_name:
            return httpx.Response(404, text="dry run: no such feed")
        name, country = feed
        now = clock()
        body = by_name[name].render(recent_demo_records(country, now), now)
        return httpx.Response(200, content=body)

    return httpx.MockTransport(answer)
