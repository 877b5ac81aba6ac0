"""The one registry of sources, by the name ``SOURCES`` uses: the settings check names against
it, and the feeds build the configured sources from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from graph.feeds.google_trends import GoogleTrendsRSS
from graph.feeds.json_feed import JSONFeed
from graph.feeds.sources import Source


class Settings(Protocol):
    """What building the sources reads (graph.settings.Settings has it; it imports this module
    for SOURCE_NAMES, so this one names only what it needs)."""

    @property
    def sources(self) -> Sequence[str]: ...

    @property
    def google_trends_rss_url(self) -> str: ...

    @property
    def json_feed_url(self) -> str | None: ...


def _json_feed(settings: Settings) -> Source:
    assert settings.json_feed_url is not None  # the settings refuse json_feed without it
    return JSONFeed(settings.json_feed_url)


_BUILDERS: dict[str, Callable[[Settings], Source]] = {
    GoogleTrendsRSS.name: lambda settings: GoogleTrendsRSS(settings.google_trends_rss_url),
    JSONFeed.name: _json_feed,
}
SOURCE_NAMES = tuple(_BUILDERS)


def build_sources(settings: Settings) -> list[Source]:
    """The sources SOURCES names, configured from the settings, in the order named."""
    return [_BUILDERS[name](settings) for name in settings.sources]
