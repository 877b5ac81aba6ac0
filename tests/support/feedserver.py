"""A real HTTP server on loopback that plays upstream feeds, and feed documents in their formats.

``FeedServer`` answers ``GET /<anything>?geo=XX`` with the replies queued for country XX
(the last reply repeats), records every request, and can delay, drip, lie about sizes or
encodings (:func:`bad_gzip`) and redirect in circles (:meth:`FeedServer.redirect_loop`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from graph.settings import Settings
from tests.support.factories import make_settings

TRENDING_NS = "https://trends.google.com/trending/rss"
DAILY_NS = "https://trends.google.com/trends/trendingsearches/daily"
# When the test session's feeds say their items were published (relative to it).
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Send the body in pieces this far apart, without a Content-Length (the end is the close).
    drip: float | None = None


def bad_gzip(body: bytes = b"<rss>this is not gzip</rss>") -> Reply:
    """A 200 whose headers say its body is gzip-compressed when it is not."""
    return Reply(200, body, {"Content-Encoding": "gzip"})


@dataclass
class Item:
    title: str
    traffic: str | None = "20,000+"
    published: datetime | str | None = None
    news: Sequence[str] = ()


def rss(items: Sequence[Item], *, ns: str = TRENDING_NS) -> bytes:
    """A "trending now" feed as Google writes it (pictures, news titles and sources included)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<rss xmlns:atom="http://www.w3.org/2005/Atom" xmlns:ht="{ns}" version="2.0">',
        "<channel><title>Daily Search Trends</title>",
        '<atom:link href="https://trends.google.com/trending/rss?geo=US" rel="self"'
        ' type="application/rss+xml"/>',
    ]
    for item in items:
        parts.append(f"<item><title>{escape(item.title)}</title>")
        if item.traffic is not None:
            parts.append(f"<ht:approx_traffic>{escape(item.traffic)}</ht:approx_traffic>")
        parts.append("<description></description><link>https://trends.google.com/trending</link>")
        if item.published is not None:
            when = item.published
            text = format_datetime(when) if isinstance(when, datetime) else when
            parts.append(f"<pubDate>{escape(text)}</pubDate>")
        parts.append("<ht:picture>https://encrypted-tbn0.gstatic.com/images?q=1</ht:picture>")
        for url in item.news:
            parts.append(
                "<ht:news_item><ht:news_item_title>Story</ht:news_item_title>"
                f"<ht:news_item_url>{escape(url)}</ht:news_item_url>"
                "<ht:news_item_source>Paper</ht:news_item_source></ht:news_item>"
            )
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode()


def feed(*titles: str, hours_ago: float = 1.0) -> Reply:
    """A 200 with an RSS document holding one item per title, all at now - hours_ago."""
    when = NOW - timedelta(hours=hours_ago)
    return Reply(200, rss([Item(t, "10,000+", when, ["https://news.example/a"]) for t in titles]))


def feed_settings(url: str, server: FeedServer, **overrides: Any) -> Settings:
    """Settings polling ``server`` for US and GB, quickly: one attempt, short backoff."""
    values: dict[str, Any] = {
        "sources": ("google_trends_rss",),
        "google_trends_rss_url": server.url,
        "poll_countries": ("US", "GB"),
        "source_backoff_seconds": 0.01,
        "source_max_attempts": 1,
        "source_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return make_settings(url, **values)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><item><title>&lol9;</title></item></channel></rss>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><item><title>&secret;</title></item></channel></rss>
"""


class FeedServer:
    """A threaded HTTP server on 127.0.0.1 with scripted replies per country."""

    def __init__(self) -> None:
        self._replies: dict[str, list[Reply]] = {}
        self._requests: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                country = parse_qs(urlsplit(self.path).query).get("geo", ["?"])[0]
                reply = server._take(country)
                try:
                    time.sleep(reply.delay)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.drip is None:
                        if "Content-Length" not in reply.headers:
                            self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        self.wfile.write(reply.body)
                    else:
                        self.end_headers()
                        for start in range(0, len(reply.body), 64 * 1024):
                            self.wfile.write(reply.body[start : start + 64 * 1024])
                            self.wfile.flush()
                            time.sleep(reply.drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout, a size cap): that is the point

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """A URL template in the shape of GOOGLE_TRENDS_RSS_URL."""
        return f"http://127.0.0.1:{self.port}/trending/rss?geo={{country}}"

    def redirect_loop(self, country: str) -> Reply:
        """A 302 to ``country``'s own feed URL: queued alone, it redirects forever."""
        return Reply(302, headers={"Location": self.url.replace("{country}", country)})

    def reply(self, country: str, *replies: Reply) -> None:
        """Answer ``country``'s next requests with ``replies`` in turn; the last one repeats."""
        with self._lock:
            self._replies[country] = list(replies)

    def _take(self, country: str) -> Reply:
        with self._lock:
            self._requests.append((country, time.monotonic()))
            queue = self._replies.get(country)
            if not queue:
                return Reply(404, b"no such feed")
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def count(self, country: str) -> int:
        with self._lock:
            return sum(1 for c, _ in self._requests if c == country)

    def times(self, country: str) -> list[float]:
        with self._lock:
            return [t for c, t in self._requests if c == country]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    try:
        yield server
    finally:
        server.close()
