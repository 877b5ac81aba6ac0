"""GraphiQL in a real browser with nothing from outside: Debian's Chromium, headless, driven by
Playwright, against `trendmap serve` in a subprocess on loopback.

Every request the page makes (HTTP and WebSocket) is recorded, and any to another origin is
aborted, so a page that still reached for a CDN fails here rather than rendering from it. In CI
(``CI=true``) a missing Chromium or missing GraphiQL packages fail the test; elsewhere they skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from graph.http.graphiql import DEFAULT_ASSETS_DIR, INSTALL
from tests.support.factories import READ_KEY, WRITE_KEY, write_headers
from tests.support.servers import Served, running_server

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def needed(present: bool, message: str) -> None:
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """A server that needs a read key (GraphiQL must send it over HTTP and WebSocket), with a
    hot flow NO → SE in its archive."""
    needed(CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    needed((DEFAULT_ASSETS_DIR / "graphiql").is_dir(), f"GraphiQL is not installed: {INSTALL}")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'graphiql.db'}",
        "API_KEYS": WRITE_KEY,
        "READ_API_KEYS": READ_KEY,
        "LOG_LEVEL": "WARNING",
    }
    for name in ("REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY", "GRAPHIQL_ASSETS_DIR"):
        env.pop(name, None)
    with running_server(tmp_path, env) as served:
        ingested = httpx.post(
            f"{served.base}/v1/trends", json=spreading("NO", "SE"), headers=write_headers()
        )
        assert ingested.status_code == 200, ingested.text
        yield served


def spreading(origin: str, follower: str) -> list[dict[str, Any]]:
    """The same topics in ``origin``, then an hour later in ``follower``: a hot flow."""
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        {
            "timestamp": (now - timedelta(hours=hours)).isoformat(),
            "country": country,
            "topic_label": topic,
            "count": count,
            "confidence": 0.9,
        }
        for topic, count in (("Aurora", 40), ("Midnight sun", 30), ("Fjord ferry", 20))
        for country, hours in ((origin, 2), (follower, 1))
    ]


def result(page: Any, text: str) -> str:
    """The result pane once it shows ``text``."""
    page.wait_for_function(
        "text => (document.querySelector('.result-window') || {}).innerText?.includes(text)",
        arg=text,
        timeout=20_000,
    )
    shown: str = page.inner_text(".result-window")
    return shown


def wait_for_subscribers(base: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        ready = httpx.get(f"{base}/health/ready", timeout=10).json()
        if ready["checks"]["subscriptions"]["active"] == count:
            return
        assert time.monotonic() < deadline, "GraphiQL's subscription never reached the server"
        time.sleep(0.05)


def test_graphiql_works_with_nothing_from_outside(server: Served) -> None:
    from playwright.sync_api import Route, sync_playwright

    base = server.base
    sockets_base = base.replace("http://", "ws://", 1)
    requests: list[str] = []
    outside: list[str] = []
    problems: list[str] = []

    def only_here(route: Route) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )

        def open_graphiql(path: str) -> Any:
            """A fresh browser profile (GraphiQL keeps tabs and results in localStorage)."""
            context = browser.new_context(viewport={"width": 1400, "height": 800})
            context.route("**/*", only_here)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("websocket", lambda ws: requests.append(ws.url))
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.goto(f"{base}{path}")
            page.wait_for_selector(".graphiql-container .graphiql-query-editor .CodeMirror")
            return page

        try:
            # Without the key: GraphiQL renders, and the server's refusal shows as a result.
            page = open_graphiql("/graphql")
            page.click(".graphiql-execute-button")
            result(page, "reads need a credential")
            problems.clear()  # the browser logs the 401s

            # With it (from the fragment, which no server sees): the schema and a query.
            page = open_graphiql(f"/graphql#key={READ_KEY}")
            page.click(".graphiql-sidebar button[aria-label='Show Documentation Explorer']")
            page.click(".graphiql-doc-explorer a:text-is('Query')", timeout=20_000)
            page.wait_for_selector(".graphiql-doc-explorer :text-is('hotspots')")
            page.click(".graphiql-execute-button")
            shown = result(page, '"country": "')
            top = httpx.get(
                f"{base}/v1/hotspots", headers={"Authorization": f"Bearer {READ_KEY}"}
            ).json()["hotspots"][0]["country"]
            assert f'"country": "{top}"' in shown
            assert "errors" not in shown

            # A subscription over graphql-transport-ws: a flow that appears after it started.
            subscription = (
                'subscription Live { hotFlows(timeWindow: "24h", countries: ["IS", "IE"],'
                " threshold: 0.5) { fromCountry toCountry heat } }"
            )
            page = open_graphiql(f"/graphql?q={quote(subscription)}#key={READ_KEY}")
            page.click(".graphiql-execute-button")
            wait_for_subscribers(base, 1)
            ingested = httpx.post(
                f"{base}/v1/trends", json=spreading("IS", "IE"), headers=write_headers()
            )
            assert ingested.status_code == 200, ingested.text
            shown = result(page, '"fromCountry": "IS"')
            assert '"toCountry": "IE"' in shown
        finally:
            browser.close()

    assert outside == []
    assert problems == []
    assert f"{sockets_base}/graphql" in requests
    assert all(url.startswith((base + "/", sockets_base + "/")) for url in requests), requests
    assert any("/graphql/ide/" in url and url.endswith("graphiql.min.js") for url in requests)
