"""The live map in a real browser: Debian's Chromium, headless, driven by Playwright.

The server is the Quickstart's (`trendmap serve --demo`) in a subprocess on loopback, with a
write key so the test can ingest. Playwright drives the system's /usr/bin/chromium through
``executable_path``: no browser is ever downloaded (``playwright install`` is never run).
In CI (``CI=true``) a missing Chromium fails the test; `.ci/run` installs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.factories import WRITE_KEY, write_headers
from tests.support.servers import free_port, wait_until_healthy

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# The picture in the README is regenerated on purpose, never as a side effect of a test run:
#   TRENDMAP_MAP_SCREENSHOT=docs/map.png .venv/bin/pytest tests/integration/test_map.py
SCREENSHOT_ENV = "TRENDMAP_MAP_SCREENSHOT"


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Server:
    """`trendmap serve` on a free port and an SQLite file, started and stopped at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self, *options: str) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.directory / 'map.db'}",
            "API_KEYS": WRITE_KEY,
            "LOG_LEVEL": "WARNING",
        }
        for name in ("READ_API_KEYS", "REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graph", "serve", "--port", str(self.port), *options],
            cwd=self.directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until_healthy(self.base, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.communicate(timeout=30)
            self.process = None

    def get(self, path: str, **params: Any) -> Any:
        return httpx.get(f"{self.base}{path}", params=params, timeout=30).json()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start("--demo")
    try:
        yield running
    finally:
        running.stop()


def new_corridor() -> list[dict[str, Any]]:
    """Iceland, then Ireland an hour later: two countries the demo has no data for, with the
    same topics, so a hot flow IS → IE appears (similarity 1, heat 0.5^(1/6) ≈ 0.89)."""
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for topic, count in [("Eldgos á Reykjanesi", 40), ("Strokkur", 30), ("Þorrablót", 20)]:
        for country, hours in (("IS", 2), ("IE", 1)):
            out.append(
                {
                    "timestamp": (now - timedelta(hours=hours)).isoformat(),
                    "country": country,
                    "topic_label": topic,
                    "count": count,
                    "confidence": 0.9,
                }
            )
    return out


def drawn(page: Any, attribute: str) -> set[str]:
    values = page.eval_on_selector_all(
        f"[{attribute}]", f"nodes => nodes.map(n => n.getAttribute('{attribute}'))"
    )
    return set(values)


def wait_for_drawn(page: Any, attribute: str, expected: set[str]) -> None:
    """Wait until exactly ``expected`` is drawn (the page re-queries asynchronously)."""
    page.wait_for_function(
        """([attribute, expected]) => {
            const now = [...document.querySelectorAll(`[${attribute}]`)]
                .map(n => n.getAttribute(attribute)).sort();
            return JSON.stringify(now) === JSON.stringify(expected);
        }""",
        arg=[attribute, sorted(expected)],
        timeout=20_000,
    )


def flow_ids(answer: dict[str, Any]) -> set[str]:
    return {f"{f['from_country']}-{f['to_country']}" for f in answer["flows"]}


def hotspot_ids(answer: dict[str, Any]) -> set[str]:
    return {h["country"] for h in answer["hotspots"]}


def test_the_live_map_in_a_browser(server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 760})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            outside: list[str] = []
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith((server.base, server.base.replace("http", "ws")))
                    else outside.append(r.url)
                ),
            )
            page.goto(f"{server.base}/")

            # The demo's state, drawn: exactly what the REST API answers.
            page.wait_for_selector("#live[data-live=up]", timeout=20_000)
            flows = flow_ids(server.get("/v1/flows"))
            hotspots = hotspot_ids(server.get("/v1/hotspots"))
            assert len(flows) >= 1 and len(hotspots) >= 10
            wait_for_drawn(page, "data-flow", flows)
            wait_for_drawn(page, "data-hotspot", hotspots)

            # A new hot flow arrives over the subscription and is drawn without a reload.
            assert "IS-IE" not in flows
            page.evaluate("window.stillTheSamePage = true")
            response = httpx.post(
                f"{server.base}/v1/trends", json=new_corridor(), headers=write_headers()
            )
            assert response.status_code == 200, response.text
            page.wait_for_selector('[data-flow="IS-IE"]', timeout=30_000)
            assert page.evaluate("window.stillTheSamePage") is True
            assert "IS → IE" in page.inner_text("#feed")
            # The hotspots follow (the page re-queries after live news).
            page.wait_for_selector('[data-hotspot="IS"]', timeout=20_000)

            # Details on click: the flow's shared topics, Δt and similarity.
            page.dispatch_event('[data-flow="IS-IE"]', "click")
            details = page.inner_text("#details")
            assert "Iceland → Ireland" in details
            assert "Strokkur" in details and "Eldgos á Reykjanesi" in details
            assert "Δt" in details and "1.0 h" in details and "similarity" in details
            page.wait_for_function("!document.querySelector('.flow.new')", timeout=20_000)
            screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "map.png")
            page.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 20_000

            # A hotspot's top topics.
            page.dispatch_event('[data-hotspot="IS"]', "click")
            assert "Iceland" in page.inner_text("#details")
            assert "Þorrablót" in page.inner_text("#details")

            # Controls re-query and re-subscribe: the window...
            page.click("#window label:has(input[value='1h'])")
            wait_for_drawn(page, "data-flow", flow_ids(server.get("/v1/flows", time_window="1h")))
            wait_for_drawn(
                page, "data-hotspot", hotspot_ids(server.get("/v1/hotspots", time_window="1h"))
            )
            page.click("#window label:has(input[value='24h'])")
            # ... the threshold ...
            page.fill("#threshold", "0.2")
            wait_for_drawn(page, "data-flow", flow_ids(server.get("/v1/flows", threshold=0.2)))
            # ... and the country filter.
            page.fill("#countries", "is, ie, es, pt")
            page.press("#countries", "Enter")
            wanted = {"countries": "IS,IE,ES,PT", "threshold": 0.2}
            wait_for_drawn(page, "data-flow", flow_ids(server.get("/v1/flows", **wanted)))
            wait_for_drawn(page, "data-hotspot", {"IS", "IE", "ES", "PT"})
            # One live subscription: each change replaced the previous one.
            subscriptions = server.get("/health/ready")["checks"]["subscriptions"]
            assert subscriptions["active"] == 1

            assert problems == []  # before the outage below, which Chromium logs as errors

            # The connection drops and comes back: the indicator says so, and the page
            # reconnects by itself (with backoff) to a server on the same address.
            server.stop()
            page.wait_for_selector("#live[data-live=down]", timeout=20_000)
            server.start()
            page.wait_for_selector("#live[data-live=up]", timeout=40_000)
            assert page.evaluate("window.stillTheSamePage") is True
        finally:
            browser.close()
    assert [p for p in problems if "ERR_CONNECTION_REFUSED" not in p] == []
    assert outside == [], "the page fetched from elsewhere"
