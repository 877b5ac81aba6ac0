"""One feed call against a real HTTP server on loopback: retries, Retry-After, timeouts, caps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from graph.feeds.fetch import Fetcher, make_client, parse_retry_after, user_agent
from graph.feeds.sources import FeedMalformed, FeedRefused, FeedTooLarge, FeedUnavailable
from tests.support.feedserver import FeedServer, Reply, bad_gzip
from tests.support.servers import free_port


class Sleeps:
    """asyncio.sleep, remembering how long each wait was."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


def fetch(url: str, sleeps: Sleeps | None = None, **options: Any) -> Callable[[], Awaitable[bytes]]:
    settings: dict[str, Any] = {
        "timeout_seconds": 2.0,
        "max_attempts": 3,
        "backoff_seconds": 0.01,
        "retry_after_max_seconds": 5.0,
        "max_bytes": 64 * 1024,
    }
    settings.update(options)

    async def call() -> bytes:
        async with make_client(settings["timeout_seconds"]) as client:
            fetcher = Fetcher(client, sleep=sleeps or Sleeps(), **settings)
            return await fetcher.get(url)

    return call


def run(call: Callable[[], Awaitable[bytes]]) -> bytes:
    return asyncio.run(call())


def test_a_feed_is_fetched_with_our_user_agent(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(200, b"<rss/>"))
    assert run(fetch(feed_server.url.format(country="US"))) == b"<rss/>"
    assert feed_server.count("US") == 1
    assert user_agent().startswith("trendmap")


def test_server_errors_are_retried_three_times_then_reported(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(500, b"oops"))
    sleeps = Sleeps()
    with pytest.raises(FeedUnavailable, match=r"HTTP 500 \(after 3 attempts\)"):
        run(fetch(feed_server.url.format(country="US"), sleeps))
    assert feed_server.count("US") == 3
    assert len(sleeps.waits) == 2 and all(0 < w <= 0.1 for w in sleeps.waits)


def test_a_failure_that_passes_is_retried_to_success(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(502), Reply(500), Reply(200, b"ok"))
    assert run(fetch(feed_server.url.format(country="US"))) == b"ok"
    assert feed_server.count("US") == 3


def test_backoff_grows_between_attempts() -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}/closed?geo=US"  # nothing listens: refused
    with pytest.raises(FeedUnavailable, match="ConnectError"):
        run(fetch(url, sleeps, backoff_seconds=0.05))
    first, second = sleeps.waits
    assert 0.05 <= first <= 0.1 and 0.1 <= second <= 0.15


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(feed_server: FeedServer, status: int) -> None:
    feed_server.reply("US", Reply(status, headers={"Retry-After": "1"}), Reply(200, b"ok"))
    sleeps = Sleeps()
    started = time.monotonic()
    assert run(fetch(feed_server.url.format(country="US"), sleeps)) == b"ok"
    assert sleeps.waits == [1.0]
    first, second = feed_server.times("US")
    assert second - first >= 1.0 and time.monotonic() - started < 5


def test_retry_after_as_an_http_date(feed_server: FeedServer) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    feed_server.reply("US", Reply(503, headers={"Retry-After": later}), Reply(200, b"ok"))
    sleeps = Sleeps()
    assert run(fetch(feed_server.url.format(country="US"), sleeps)) == b"ok"
    assert 0.5 <= sleeps.waits[0] <= 2.0


def test_a_retry_after_too_long_to_wait_fails_at_once(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(429, headers={"Retry-After": "3600"}))
    sleeps = Sleeps()
    with pytest.raises(FeedUnavailable, match=r"HTTP 429 \(after 1 attempt\)"):
        run(fetch(feed_server.url.format(country="US"), sleeps))
    assert feed_server.count("US") == 1 and sleeps.waits == []


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_not_retried(feed_server: FeedServer, status: int) -> None:
    feed_server.reply("US", Reply(status))
    with pytest.raises(FeedRefused, match=f"HTTP {status}"):
        run(fetch(feed_server.url.format(country="US")))
    assert feed_server.count("US") == 1


def test_a_slow_feed_times_out_on_each_attempt(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(200, b"late", delay=1.5))
    started = time.monotonic()
    with pytest.raises(FeedUnavailable, match=r"within 0.3 s \(after 3 attempts\)"):
        run(fetch(feed_server.url.format(country="US"), timeout_seconds=0.3))
    assert time.monotonic() - started < 1.5
    assert feed_server.count("US") == 3


def test_a_dripping_feed_cannot_stretch_the_timeout(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(200, b"x" * 640 * 1024, drip=0.2))
    started = time.monotonic()
    with pytest.raises(FeedUnavailable, match="within 0.5 s"):
        run(
            fetch(
                feed_server.url.format(country="US"),
                timeout_seconds=0.5,
                max_attempts=1,
                max_bytes=10 * 1024 * 1024,
            )
        )
    assert time.monotonic() - started < 1.5


def test_an_oversized_response_is_refused_by_its_declared_length(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(200, b"x" * (64 * 1024 + 1)))
    with pytest.raises(FeedTooLarge, match="65537 bytes declared"):
        run(fetch(feed_server.url.format(country="US")))
    assert feed_server.count("US") == 1


def test_an_oversized_response_without_a_length_is_cut_off(feed_server: FeedServer) -> None:
    feed_server.reply("US", Reply(200, b"x" * (1024 * 1024), drip=0.0))
    with pytest.raises(FeedTooLarge, match="over the 65536 bytes allowed"):
        run(fetch(feed_server.url.format(country="US")))


def test_a_compressed_bomb_is_measured_after_decompression(feed_server: FeedServer) -> None:
    import gzip

    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    feed_server.reply("US", Reply(200, bomb, headers={"Content-Encoding": "gzip"}))
    assert len(bomb) < 64 * 1024
    with pytest.raises(FeedTooLarge):
        run(fetch(feed_server.url.format(country="US")))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("7", 7.0), ("soon", None), ("Wed, 21 Oct 2015 07:28:00", None)],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_a_retry_after_date_in_the_past_means_now() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0
    assert parse_retry_after("Sun, 22 Nov 2026 00:00:30 GMT", now) == 30.0


def test_the_shared_client_has_timeouts_and_follows_redirects() -> None:
    client = make_client(3.0)
    try:
        assert client.timeout == httpx.Timeout(3.0)
        assert client.follow_redirects
    finally:
        asyncio.run(client.aclose())


def test_a_body_that_lies_about_its_gzip_encoding_is_a_malformed_feed(
    feed_server: FeedServer,
) -> None:
    feed_server.reply("US", bad_gzip())
    with pytest.raises(FeedMalformed, match="could not be decoded"):
        run(fetch(feed_server.url.format(country="US")))
    assert feed_server.count("US") == 1, "a body that cannot be decoded was retried"


def test_a_redirect_loop_is_refused(feed_server: FeedServer) -> None:
    feed_server.reply("US", feed_server.redirect_loop("US"))
    with pytest.raises(FeedRefused, match="TooManyRedirects: Exceeded maximum allowed redirects"):
        run(fetch(feed_server.url.format(country="US")))
    assert feed_server.count("US") == 21  # the first request and httpx's 20 redirects


def test_a_url_httpx_cannot_send_is_refused() -> None:
    with pytest.raises(FeedRefused, match="InvalidURL: URL too long"):
        run(fetch("http://127.0.0.1:1/" + "a" * 70_000))
