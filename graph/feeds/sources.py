"""Feeds trendmap pulls records from, behind one small interface.

A :class:`Source` knows two things: the URL of its feed for a country, and how to turn the
feed's bytes into records in our JSON shape. Everything else (the HTTP call with its timeout,
retries and size cap, the circuit breakers, validation, storage) is the poller's
(:mod:`graph.feeds.poller`), the same for every source. ``DRY_RUN_APIS`` swaps the network for
:mod:`graph.feeds.dry_run`, which serves each source's format from the demo generator, so a
dry run goes through the very same parsing.

``SOURCES`` picks which sources run, by the names in :mod:`graph.feeds.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "FeedError",
    "FeedItems",
    "FeedMalformed",
    "FeedRefused",
    "FeedTooLarge",
    "FeedUnavailable",
    "Source",
    "URLTemplate",
]


class FeedError(Exception):
    """A feed call that failed: its breaker counts it, and its country's data is partial."""


class FeedUnavailable(FeedError):
    """The feed did not answer, timed out, or kept answering 5xx/429 through every attempt."""


class FeedRefused(FeedError):
    """Retrying will not help: a client error (4xx other than 429), a redirect loop, a URL
    that cannot be sent."""


class FeedTooLarge(FeedError):
    """The response was over SOURCE_MAX_BYTES; reading stopped there."""


class FeedMalformed(FeedError):
    """The document as a whole could not be read (not XML, not JSON, not the expected shape)."""


@dataclass
class FeedItems:
    """What a source made of one feed document: records (not yet validated) and the items it
    had to skip, with why."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Source(Protocol):
    """One kind of feed."""

    name: str

    def url(self, country: str) -> str:
        """The feed's URL for ``country`` (an upper-case ISO 3166-1 alpha-2 code)."""

    def parse(self, body: bytes, country: str) -> FeedItems:
        """The feed's records; FeedMalformed when the document cannot be read at all."""

    def render(self, records: Sequence[dict[str, Any]], now: datetime) -> bytes:
        """A feed document in this source's format holding ``records`` (for dry runs)."""


class URLTemplate:
    """A source whose feed's URL is a template with ``{country}`` (an upper-case ISO code)."""

    def __init__(self, url_template: str) -> None:
        self.url_template = url_template

    def url(self, country: str) -> str:
        return self.url_template.replace("{country}", country)
