"""The poller against a real HTTP server on loopback: rounds, breakers, degradation, health."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from graph.breaker import BreakerState
from graph.core.records import MAX_LABEL_CHARS
from graph.feeds.poller import Poller
from graph.feeds.sources import FeedItems, Source
from graph.http.app import create_app
from graph.wiring import AppState, open_state
from tests.support.factories import make_settings
from tests.support.feedserver import (
    BILLION_LAUGHS,
    NOW,
    FeedServer,
    Item,
    Reply,
    bad_gzip,
    feed,
    feed_settings,
    rss,
)
from tests.support.servers import subscribed


async def stored(state: AppState) -> list[tuple[str, str]]:
    async with state.repository.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT country, topic_label FROM trends_archive ORDER BY 1, 2")
        )
        return [(c, t) for c, t in rows]


def poller_of(state: AppState) -> Poller:
    assert state.feeds.poller is not None
    return state.feeds.poller


def test_a_round_stores_every_feed_and_a_second_round_changes_nothing(
    database_url: str, feed_server: FeedServer
) -> None:
    feed_server.reply("US", feed("Ravens", "World Cup"))
    feed_server.reply("GB", feed("World Cup", hours_ago=2))

    async def main() -> None:
        async with open_state(feed_settings(database_url, feed_server)) as state:
            first = await poller_of(state).run_round()
            assert [f.line() for f in first.feeds] == [
                "google_trends_rss US: 2 items, 2 valid, 0 skipped",
                "google_trends_rss GB: 1 items, 1 valid, 0 skipped",
            ]
            assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
            assert await stored(state) == [
                ("GB", "World Cup"),
                ("US", "Ravens"),
                ("US", "World Cup"),
            ]
            again = await poller_of(state).run_round()
            assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
            assert again.line() == (
                "round: 2 of 2 feeds answered, 3 records (0 inserted, 0 updated, 3 unchanged),"
                " 0 bad items skipped"
            )
            assert await state.service.partial_warnings(None) == ()

    asyncio.run(main())


def test_bad_items_are_skipped_and_counted_and_the_rest_stored(
    tmp_path: Any, feed_server: FeedServer
) -> None:
    when = NOW - timedelta(hours=1)
    feed_server.reply(
        "US",
        Reply(
            200,
            rss(
                [
                    Item("Fine", "1,000+", when),
                    Item("No traffic", None, when),
                    Item("x" * (MAX_LABEL_CHARS + 1), "1,000+", when),
                    Item("Also fine", "2,000+", when),
                ]
            ),
        ),
    )
    settings = feed_settings(f"sqlite:///{tmp_path / 'p.db'}", feed_server, poll_countries=("US",))

    async def main() -> None:
        async with open_state(settings) as state:
            summary = await poller_of(state).run_round()
            (result,) = summary.feeds
            assert (result.outcome, result.items, result.valid) == ("ok", 4, 2)
            assert result.skipped[0] == "item 2: no approx_traffic"
            assert result.skipped[1].startswith("record 2: topic_label: must be 1 to 200")
            assert await stored(state) == [("US", "Also fine"), ("US", "Fine")]

    asyncio.run(main())


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(500), "HTTP 500 (after 1 attempt)"),
        (Reply(200, b"<rss><channel><item><title>cut"), "not a readable RSS document"),
        (Reply(200, BILLION_LAUGHS), "not a readable RSS document"),
        (Reply(200, b"x" * 4096), "4096 bytes declared, over the 2048 allowed"),
        (Reply(200, b"late", delay=1.0), "no complete answer within 0.3 s"),
        (bad_gzip(), "the body could not be decoded"),
        (None, "TooManyRedirects: Exceeded maximum allowed redirects"),
    ],
    ids=["500", "malformed", "billion-laughs", "oversized", "timeout", "bad-gzip", "redirect-loop"],
)
def test_a_failing_feed_costs_its_country_only(
    tmp_path: Any, feed_server: FeedServer, reply: Reply | None, error: str
) -> None:
    feed_server.reply("US", reply or feed_server.redirect_loop("US"))
    feed_server.reply("GB", feed("Derby"))
    # Only the slow reply should meet the deadline: a loaded machine must not turn
    # twenty redirects into a timeout.
    slow = reply is not None and reply.delay > 0
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}",
        feed_server,
        source_max_bytes=2048,
        source_timeout_seconds=0.3 if slow else 10.0,
    )

    async def main() -> None:
        async with open_state(settings) as state:
            summary = await poller_of(state).run_round()
            us, gb = summary.feeds
            assert (us.outcome, gb.outcome) == ("failed", "ok")
            assert us.error is not None and error in us.error
            assert poller_of(state).feeds[0].breaker.consecutive_failures == 1
            assert us.line() == f"google_trends_rss US: failed: {us.error}"
            assert await stored(state) == [("GB", "Derby")]
            assert await state.service.partial_warnings(None) == ()  # not published yet
            assert state.feeds.scheduler is not None
            await state.feeds.scheduler.publish()
            await asyncio.sleep(1.0)  # what the board read before is a second old
            assert await state.service.partial_warnings(None) == ("Partial data: US unavailable",)
            assert await state.service.partial_warnings(["GB"]) == ()
            health = await state.feeds.health()
            assert health["unavailable"] == ["US"] and health["poller"]["this_worker"] == "standby"
            assert poller_of(state).status()["google_trends_rss"]["US"]["last_error"] == us.error

    asyncio.run(main())


def test_feeds_list_their_breakers_for_the_metrics(tmp_path: Any, feed_server: FeedServer) -> None:
    async def main() -> None:
        async with open_state(
            feed_settings(f"sqlite:///{tmp_path / 'p.db'}", feed_server)
        ) as state:
            breakers = state.feeds.breakers()
            assert [(name, country) for name, country, _ in breakers] == [
                ("google_trends_rss", "US"),
                ("google_trends_rss", "GB"),
            ]
            assert breakers[1][2] is poller_of(state).feeds[1].breaker
        async with open_state(make_settings(f"sqlite:///{tmp_path / 'q.db'}")) as state:
            assert state.feeds.breakers() == []

    asyncio.run(main())


class Crashing:
    """A source with a bug: every parse raises."""

    name = "google_trends_rss"

    def url(self, country: str) -> str:
        return f"http://127.0.0.1:1/{country}"

    def parse(self, body: bytes, country: str) -> FeedItems:
        raise KeyError("bug")

    def render(self, records: Any, now: datetime) -> bytes:
        return b""


class Canned:
    """A fetcher answering every URL with the same bytes, counting calls."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0

    async def get(self, url: str, *, extensions: dict[str, object] | None = None) -> bytes:
        self.calls += 1
        return self.body


def test_a_bug_in_a_source_fails_its_feed_not_the_poller(tmp_path: Any) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}")

    async def main() -> None:
        async with open_state(settings) as state:
            source: Source = Crashing()
            poller = Poller(state.service, [source], Canned(b"<rss/>"), ["US", "GB"])
            summary = await poller.run_round()
            assert [f.error for f in summary.feeds] == ["internal error: KeyError"] * 2

    asyncio.run(main())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_stops_calling_then_probes_and_closes(
    tmp_path: Any, feed_server: FeedServer
) -> None:
    """closed → (2 failures) → open: no request → (reset passes) → half-open → closed."""
    feed_server.reply("US", Reply(503))
    settings = feed_settings(f"sqlite:///{tmp_path / 'p.db'}", feed_server, poll_countries=("US",))

    async def main() -> None:
        async with open_state(settings) as state:
            clock = Clock()
            assert state.feeds.poller is not None
            poller = Poller(
                state.service,
                [s.source for s in state.feeds.poller.feeds][:1],
                state.feeds.poller.fetcher,
                ["US"],
                breaker_failures=2,
                breaker_reset_seconds=30,
                clock=clock,
            )
            breaker = poller.feeds[0].breaker
            await poller.run_round()
            assert (breaker.state, breaker.consecutive_failures) == (BreakerState.CLOSED, 1)
            await poller.run_round()
            assert breaker.state is BreakerState.OPEN and feed_server.count("US") == 2
            for _ in range(3):
                clock.now += 9
                summary = await poller.run_round()
                assert summary.feeds[0].line().endswith("its breaker is open")
            assert feed_server.count("US") == 2, "a request went out while the breaker was open"
            clock.now += 3
            assert breaker.state is BreakerState.HALF_OPEN
            feed_server.reply("US", feed("Back"))
            summary = await poller.run_round()
            assert summary.feeds[0].outcome == "ok" and feed_server.count("US") == 3
            assert (breaker.state, breaker.consecutive_failures) == (BreakerState.CLOSED, 0)

    asyncio.run(main())


# --- in a running app -----------------------------------------------------------------------


def wait_for(client: TestClient, check: Any, seconds: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        sources: dict[str, Any] = client.get("/health/ready").json()["checks"]["sources"]
        if check(sources):
            return sources
        assert time.monotonic() < deadline, sources
        time.sleep(0.05)


def us_state(sources: dict[str, Any]) -> dict[str, Any]:
    return sources["feeds"].get("google_trends_rss", {}).get("US", {})


def test_breaker_transitions_show_in_health_and_no_request_goes_out_while_open(
    tmp_path: Any, feed_server: FeedServer
) -> None:
    feed_server.reply("US", Reply(500))
    feed_server.reply("GB", feed("Derby"))
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}",
        feed_server,
        poll_interval_seconds=0.2,
        breaker_failures=2,
        breaker_reset_seconds=1.5,
        source_timeout_seconds=5,
    )
    with TestClient(create_app(settings)) as client:
        sources = wait_for(client, lambda s: us_state(s).get("state") == "open")
        assert sources["enabled"] == ["google_trends_rss"] and not sources["dry_run"]
        assert sources["poller"]["this_worker"] == "leader"
        assert sources["poller"]["lock"] == "in-process"
        assert sources["unavailable"] == ["US"]
        assert us_state(sources)["consecutive_failures"] == 2
        assert us_state(sources)["last_error"] == "HTTP 500 (after 1 attempt)"
        assert us_state(sources)["last_success"] is None
        opened, gb_then = feed_server.count("US"), feed_server.count("GB")
        # The probe will take a while: long enough to see the half-open state.
        feed_server.reply("US", Reply(200, feed("Ravens").body, delay=1.0))
        sources = wait_for(client, lambda s: us_state(s).get("state") == "half-open")
        assert feed_server.count("GB") >= gb_then + 3, "rounds ran meanwhile"
        assert feed_server.count("US") <= opened + 1, "requests went out while open"
        sources = wait_for(client, lambda s: us_state(s).get("state") == "closed")
        assert us_state(sources)["consecutive_failures"] == 0
        assert us_state(sources)["last_success"] is not None
        assert sources["unavailable"] == []
        assert client.get("/health/ready").status_code == 200


def test_answers_warn_about_countries_whose_feed_fails(
    tmp_path: Any, feed_server: FeedServer
) -> None:
    feed_server.reply("US", Reply(503))
    feed_server.reply("GB", feed("Derby"))
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}", feed_server, poll_interval_seconds=0.2
    )
    warning = "Partial data: US unavailable"
    with TestClient(create_app(settings)) as client:
        wait_for(client, lambda s: s["unavailable"] == ["US"])
        for path in ["/v1/flows", "/v1/hotspots", "/v1/trends", "/v1/flows?countries=US,GB"]:
            response = client.get(path)
            assert response.status_code == 200
            assert response.json()["warnings"] == [warning], path
        assert client.get("/v1/flows?countries=GB,FR").json()["warnings"] == []
        assert client.get("/v1/trends?countries=GB").json()["warnings"] == []
        body = client.post(
            "/graphql", json={"query": "{ flows { fromCountry } hotspots { country } }"}
        ).json()
        assert body["extensions"]["warnings"] == [warning, warning]
        feed_server.reply("US", feed("Ravens"))
        wait_for(client, lambda s: s["unavailable"] == [])
        assert client.get("/v1/flows").json()["warnings"] == []


QUERY = 'subscription { hotFlows(timeWindow: "24h", threshold: 0.5) { fromCountry toCountry } }'


def test_pulled_records_reach_the_archive_and_a_subscriber(
    tmp_path: Any, feed_server: FeedServer
) -> None:
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}", feed_server, poll_interval_seconds=0.2
    )
    with TestClient(create_app(settings)) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init"})
            assert ws.receive_json()["type"] == "connection_ack"
            ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": QUERY}})
            subscribed(client)
            # A topic trends in the US, then an hour later in Great Britain: a hot flow.
            feed_server.reply("US", feed("Alpha", "Beta", hours_ago=3))
            feed_server.reply("GB", feed("Alpha", "Beta", hours_ago=2))
            message = ws.receive_json()
            assert message["type"] == "next"
            assert message["payload"]["data"]["hotFlows"] == {
                "fromCountry": "US",
                "toCountry": "GB",
            }
            ws.send_json({"id": "1", "type": "complete"})
        trends = client.get("/v1/trends").json()
        assert {(t["country"], t["topic_label"]) for t in trends["trends"]} == {
            ("US", "Alpha"),
            ("US", "Beta"),
            ("GB", "Alpha"),
            ("GB", "Beta"),
        }
        assert trends["trends"][0]["sources"] == ["https://news.example/a"]


def test_without_sources_nothing_polls_and_health_says_so(tmp_path: Any) -> None:
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 'p.db'}"))) as client:
        sources = client.get("/health/ready").json()["checks"]["sources"]
        assert sources["enabled"] == [] and sources["poller"]["this_worker"] == "off"
        assert sources["feeds"] == {} and sources["unavailable"] == []


def test_a_json_feed_goes_through_the_same_pipeline(tmp_path: Any, feed_server: FeedServer) -> None:
    import orjson

    from tests.support.factories import record

    moment = NOW - timedelta(hours=1)
    feed_server.reply(
        "BR",
        Reply(200, orjson.dumps([record("BR", "Carnaval", as_of=moment, hours_ago=0), {"x": 1}])),
    )
    settings = feed_settings(
        f"sqlite:///{tmp_path / 'p.db'}",
        feed_server,
        sources=("json_feed",),
        json_feed_url=feed_server.url,
        poll_countries=("BR",),
    )

    async def main() -> None:
        async with open_state(settings) as state:
            (result,) = (await poller_of(state).run_round()).feeds
            assert (result.source, result.valid, result.skipped) == (
                "json_feed",
                1,
                ["item 2: country None in the feed for BR"],
            )
            assert await stored(state) == [("BR", "Carnaval")]

    asyncio.run(main())


def test_a_round_the_database_cannot_take_is_reported_and_the_next_one_stores(
    throwaway_postgres: Any, feed_server: FeedServer
) -> None:
    feed_server.reply("US", feed("Ravens"))
    feed_server.reply("GB", feed("Derby"))
    settings = feed_settings(throwaway_postgres.url, feed_server, db_pool_timeout_seconds=0.5)

    async def main() -> None:
        async with open_state(settings) as state:
            throwaway_postgres.stop()
            summary = await poller_of(state).run_round()
            assert summary.store_error is not None and "database" in summary.store_error
            assert "not stored" in summary.line() and not summary.failed
            throwaway_postgres.start()
            summary = await poller_of(state).run_round()
            assert (summary.store_error, summary.inserted) == (None, 2)

    asyncio.run(main())
