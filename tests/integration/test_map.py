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
import time
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

    def gql(self, query: str, **variables: Any) -> Any:
        body = {"query": query, "variables": variables}
        return httpx.post(f"{self.base}/graphql", json=body, timeout=30).json()

    def ingest(self, records: list[dict[str, Any]]) -> None:
        response = httpx.post(f"{self.base}/v1/trends", json=records, headers=write_headers())
        assert response.status_code == 200, response.text


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


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=str(chromium()), headless=True, args=["--no-sandbox"]
    )


def watch(page: Any, problems: list[str]) -> None:
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )


def drawn(page: Any, attribute: str) -> set[str]:
    values = page.eval_on_selector_all(
        f"[{attribute}]", f"nodes => nodes.map(n => n.getAttribute('{attribute}'))"
    )
    return set(values)


def check_labels(page: Any) -> list[str]:
    """Shown labels are at least 10 px high and none overlaps another; the hidden ones."""
    # The page re-lays its labels on resize and zoom: wait for that before measuring.
    page.wait_for_function(
        """() => [...document.querySelectorAll('#labels text:not(.hidden)')]
            .every(n => n.getBoundingClientRect().height >= 10)""",
        timeout=10_000,
    )
    labels = page.eval_on_selector_all(
        "#labels text",
        """nodes => nodes.map(n => {
            const b = n.getBoundingClientRect();
            return [n.textContent, n.classList.contains('hidden'), b.left, b.top, b.right,
                    b.bottom];
        })""",
    )
    shown = [label for label in labels if not label[1]]
    assert shown
    for i, (_, _, left, top, right, bottom) in enumerate(shown):
        assert bottom - top >= 10
        for other in shown[i + 1 :]:
            apart = right <= other[2] or other[4] <= left or bottom <= other[3] or other[5] <= top
            assert apart, f"labels overlap: {shown[i][0]} and {other[0]}"
    return [label[0] for label in labels if label[1]]


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
            # The topic's path over the live map (the README's picture shows it).
            page.fill("#topic-search", "strokkur")
            page.click("#topic-results button[data-topic='strokkur']", timeout=20_000)
            page.wait_for_selector("[data-topic-stop='IE']", timeout=20_000)
            assert stops(page) == ["IS", "IE"]
            screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "map.png")
            page.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 20_000

            # A hotspot's top topics.
            page.dispatch_event('[data-hotspot="IS"]', "click")
            assert "Iceland" in page.inner_text("#details")
            assert "Þorrablót" in page.inner_text("#details")

            # At 900×700 labels are readable and never overlap: in dense Europe some hide,
            # and zooming in there shows them; a double-click resets the zoom.
            page.set_viewport_size({"width": 900, "height": 700})
            hidden = check_labels(page)
            assert hidden
            box = page.locator('[data-hotspot="FR"] circle').bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            for _ in range(6):
                page.mouse.wheel(0, -400)
            page.wait_for_function("window.trendmap.zoom.state.k > 4")
            assert len(check_labels(page)) < len(hidden)
            page.dblclick("#map", position={"x": 5, "y": 5})
            assert page.get_attribute("#world", "transform") == "translate(0 0) scale(1)"
            page.set_viewport_size({"width": 1400, "height": 760})

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
            # (Counted once it has looked up the flows hot as it began.)
            deadline = time.monotonic() + 10
            while server.get("/health/ready")["checks"]["subscriptions"]["active"] != 1:
                assert time.monotonic() < deadline, "not one live subscription"
                time.sleep(0.05)

            # A bad filter: its error, no stale drawing or counts, and the live dot stays green.
            page.fill("#countries", "is, zz")
            page.press("#countries", "Enter")
            page.wait_for_selector("#status.error", timeout=20_000)
            assert "countries" in page.inner_text("#status") and "ZZ" in page.inner_text("#status")
            assert drawn(page, "data-hotspot") == set() and drawn(page, "data-flow") == set()
            assert "hotspots ·" not in page.inner_text("#stats")
            assert page.get_attribute("#live", "data-live") == "up"
            page.fill("#countries", "is, ie")
            page.press("#countries", "Enter")
            wait_for_drawn(page, "data-hotspot", {"IS", "IE"})
            assert page.inner_text("#status") == ""
            assert page.get_attribute("#live", "data-live") == "up"

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


# A past archive: nothing in it is near "now", so the map must travel to see anything.
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=30)


def past_archive() -> list[dict[str, Any]]:
    """At T0: US → BR two hours apart (directed), GB and FR five minutes apart (simultaneous),
    and "Samba Enredo" on to PT; 30 h later: JP → KR, CN between them."""
    out = []

    def add(country: str, topic: str, moment: datetime, count: int = 40) -> None:
        out.append(
            {
                "timestamp": moment.isoformat(),
                "country": country,
                "topic_label": topic,
                "count": count,
                "confidence": 0.9,
            }
        )

    for topic in ("Carnaval", "Samba Enredo", "Copa do Brasil"):
        add("US", topic, T0 - timedelta(hours=5))
        add("BR", topic, T0 - timedelta(hours=3))
    add("PT", "Samba Enredo", T0 - timedelta(hours=1))
    for topic in ("Eurovision", "Six Nations"):
        add("GB", topic, T0 - timedelta(hours=4))
        add("FR", topic, T0 - timedelta(hours=4, minutes=-5))
    for topic in ("Hanami", "Sakura Zensen"):
        add("JP", topic, T1 - timedelta(hours=4))
        add("KR", topic, T1 - timedelta(hours=2))
    add("CN", "Hanami", T1 - timedelta(hours=3), count=10)
    return out


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def shown(moment: datetime) -> str:
    """The page's way of writing an instant."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def stops(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "[data-topic-stop]",
        "nodes => nodes.sort((a, b) => a.dataset.order - b.dataset.order)"
        ".map(n => n.dataset.topicStop)",
    )


def wait_for_instant(page: Any, server: Server, moment: datetime, **params: Any) -> None:
    """The drawing is the API's answer at ``moment``: flows and hotspots."""
    at = {"as_of": iso(moment), **params}
    wait_for_drawn(page, "data-flow", flow_ids(server.get("/v1/flows", **at)))
    wait_for_drawn(page, "data-hotspot", hotspot_ids(server.get("/v1/hotspots", **at)))


def style(page: Any, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"n => getComputedStyle(n).{prop}")


@pytest.fixture
def past_server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    try:
        running.ingest(past_archive())
        yield running
    finally:
        running.stop()


def test_the_map_travels_in_time_and_follows_a_topic(past_server: Server) -> None:
    from playwright.sync_api import sync_playwright

    server = past_server
    last = T1 - timedelta(hours=2)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            watch(page, problems)
            page.goto(f"{server.base}/")

            # An archive that ends in the past opens at its last instant, live updates paused.
            page.wait_for_selector("#live[data-live=up]", timeout=20_000)
            assert "paused" in page.inner_text("#live")
            page.wait_for_function(
                "t => document.getElementById('instant').textContent === t", arg=shown(last)
            )
            assert page.inner_text("#now") == "Latest data"
            wait_for_instant(page, server, last)
            assert "JP-KR" in drawn(page, "data-flow")

            # Nothing reaches the threshold: the strongest pair, and the strongest N on request.
            page.fill("#threshold", "0.95")
            page.wait_for_selector("#notice:not([hidden])", timeout=20_000)
            stats = server.gql(
                "query($a: DateTime) { flowStats(asOf: $a) "
                "{ maxHeat fromCountry toCountry pairs } }",
                a=iso(last),
            )["data"]["flowStats"]
            notice = page.inner_text("#notice")
            assert f"{stats['fromCountry']} · {stats['toCountry']}" in notice
            assert f"{stats['maxHeat']:.2f}" in notice and f"{stats['pairs']} pairs" in notice
            assert drawn(page, "data-flow") == set()
            n = min(5, stats["pairs"])
            assert n >= 2 and page.inner_text("#strongest") == f"show the strongest {n}"
            page.click("#strongest")
            strongest = flow_ids(server.get("/v1/flows", as_of=iso(last), threshold=0, limit=n))
            assert len(strongest) == n
            wait_for_drawn(page, "data-flow", strongest)
            page.fill("#threshold", "0.5")
            wait_for_instant(page, server, last)

            # The timeline: drag to T0, and the drawing is the API's answer at T0.
            page.fill("#timeline-range", str(int(T0.timestamp())))
            assert page.inner_text("#instant") == shown(T0)
            wait_for_instant(page, server, T0)
            assert {"US-BR", "FR-GB"} <= drawn(page, "data-flow")

            # Simultaneous: dashed, no arrowhead; directed: solid, with one.
            same, directed = '[data-flow="FR-GB"]', '[data-flow="US-BR"]'
            assert "simultaneous" in page.get_attribute(same, "class")
            assert style(page, f"{same} .line", "strokeDasharray") not in ("none", "")
            assert style(page, f"{same} .head", "display") == "none"
            assert style(page, f"{directed} .line", "strokeDasharray") == "none"
            assert page.get_attribute(f"{directed} .head", "d")
            page.dispatch_event(same, "click")
            assert "↔" in page.inner_text("#details") and "simultaneous" in page.inner_text(
                "#details"
            )

            # A topic's path, country by country in first-seen order, with its times.
            page.fill("#topic-search", "samba")
            page.click("#topic-results button[data-topic='samba enredo']", timeout=20_000)
            spread = server.gql(
                'query($u: DateTime) { topicSpread(topic: "samba enredo", until: $u) '
                "{ countries { country firstSeen } } }",
                u=iso(T0),
            )["data"]["topicSpread"]["countries"]
            page.wait_for_selector(f"[data-topic-stop='{spread[-1]['country']}']")
            assert stops(page) == [c["country"] for c in spread] == ["US", "BR", "PT"]
            listed = page.inner_text("#topic")
            for c in spread:
                assert shown(datetime.fromisoformat(c["firstSeen"])) in listed

            # A country's history: the chart's points are the API's.
            page.dispatch_event('[data-hotspot="US"]', "click")
            page.wait_for_selector("#history:not([data-state=loading])", timeout=20_000)
            check_history(page, server)

            # Play advances the instant, and the drawing follows it.
            page.click("#play")
            page.wait_for_function(
                "t => document.getElementById('instant').textContent !== t", arg=shown(T0)
            )
            page.click("#play")
            at = datetime.fromisoformat(page.evaluate("window.trendmap.view.asOf"))
            assert at > T0
            wait_for_instant(page, server, at)

            # "Latest data" goes back to the archive's last instant.
            page.click("#now")
            page.wait_for_function(
                "t => document.getElementById('instant').textContent === t", arg=shown(last)
            )
            wait_for_instant(page, server, last)

        finally:
            browser.close()
    assert problems == []


def check_history(page: Any, server: Server) -> None:
    """The chart holds hotspotHistory's points, or says that the server has none."""
    state = page.get_attribute("#history", "data-state")
    chart = "#history svg.chart"
    if state == "missing":
        answer = server.gql('{ __type(name: "Query") { fields { name } } }')
        names = {f["name"] for f in answer["data"]["__type"]["fields"]}
        assert "hotspotHistory" not in names
        return
    assert state == "ok", page.inner_text("#history")
    asked = {
        name: page.get_attribute(chart, f"data-{attr}")
        for name, attr in (("s", "since"), ("u", "until"), ("st", "step"), ("w", "time-window"))
    }
    answer = server.gql(
        "query($s: DateTime, $u: DateTime, $st: String, $w: String!) { hotspotHistory("
        'country: "US", timeWindow: $w, since: $s, until: $u, step: $st) { asOf score } }',
        **asked,
    )
    points = answer["data"]["hotspotHistory"]
    drawn_points = page.eval_on_selector_all(
        f"{chart} circle", "nodes => nodes.map(n => [n.dataset.asOf, Number(n.dataset.score)])"
    )
    assert len(points) >= 2
    assert drawn_points == [[p["asOf"], p["score"]] for p in points]
