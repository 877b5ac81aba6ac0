"""/metrics: scraped through a running app and read back with prometheus_client's parser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from graph.breaker import CircuitBreaker
from graph.observability.metrics import BreakerCollector, Metrics
from tests.support.factories import record, write_headers
from tests.support.servers import subscribed

FLOWS = 'query { flows(timeWindow: "24h") { fromCountry toCountry heat } }'
SUBSCRIBE = {
    "query": 'subscription { hotFlows(timeWindow: "24h", threshold: 0.5) { fromCountry } }'
}


def scrape(
    client: TestClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return samples(response.text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(found: Any, route: str, operation: str, status: str) -> float:
    return value(
        found,
        "trendmap_request_duration_seconds_count",
        route=route,
        operation=operation,
        status=status,
    )


def test_requests_are_timed_by_route_template_and_graphql_operation(app_with: Any) -> None:
    client = app_with()
    for _ in range(3):
        assert client.get("/v1/flows").status_code == 200
    assert client.get("/v1/flows", params={"time_window": "7y"}).status_code == 400
    assert client.get("/no/such/path/12345").status_code == 404
    assert client.post("/graphql", json={"query": FLOWS}).status_code == 200
    named = {"query": "query Mine { hotspots { country } flows { heat } }", "operationName": "Mine"}
    assert client.post("/graphql", json=named).status_code == 200
    assert client.post("/graphql", json={"query": "{ nope }"}).status_code == 200  # invalid

    found = scrape(client)
    assert requests(found, "/v1/flows", "GET", "2xx") == 3
    assert requests(found, "/v1/flows", "GET", "4xx") == 1
    assert requests(found, "unmatched", "GET", "4xx") == 1
    assert requests(found, "/graphql", "query flows", "2xx") == 1
    # Root fields, sorted: the client's operation name never becomes a label.
    assert requests(found, "/graphql", "query flows,hotspots", "2xx") == 1
    assert requests(found, "/graphql", "not executed", "2xx") == 1
    assert not [key for key in found if ("operation", "Mine") in key[1]]
    bucket = value(
        found,
        "trendmap_request_duration_seconds_bucket",
        route="/v1/flows",
        operation="GET",
        status="2xx",
        le="+Inf",
    )
    assert bucket == 3


def test_cache_hits_and_misses_are_counted(app_with: Any) -> None:
    client = app_with()
    client.get("/v1/flows")
    client.get("/v1/flows")
    client.get("/v1/flows")
    client.get("/v1/hotspots")
    found = scrape(client)
    assert value(found, "trendmap_cache_lookups_total", kind="flows", result="miss") == 1
    assert value(found, "trendmap_cache_lookups_total", kind="flows", result="hit") == 2
    assert value(found, "trendmap_cache_lookups_total", kind="hotspots", result="miss") == 1
    assert value(found, "trendmap_cache_breaker_state", state="closed") == 1
    assert value(found, "trendmap_cache_breaker_state", state="open") == 0


def test_graphql_operations_count_their_misses_beside_their_hits(app_with: Any) -> None:
    """A kept GraphQL answer counts as a hit, wherever it is served from (the operation cache
    or a prebuilt answer): its first computation counts as the miss beside it."""
    client = app_with()
    for _ in range(3):
        assert client.post("/graphql", json={"query": FLOWS}).status_code == 200
    found = scrape(client)
    assert value(found, "trendmap_cache_lookups_total", kind="graphql", result="miss") == 1
    assert value(found, "trendmap_cache_lookups_total", kind="graphql", result="hit") == 2


def test_ingested_records_are_counted_by_outcome(app_with: Any) -> None:
    client = app_with()
    batch = [record("US", "Alpha"), record("BR", "Beta")]
    for _ in range(2):
        response = client.post("/v1/trends", json=batch, headers=write_headers())
        assert response.status_code == 200
    found = scrape(client)
    assert value(found, "trendmap_ingested_records_total", result="inserted") == 2
    assert value(found, "trendmap_ingested_records_total", result="unchanged") == 2
    assert value(found, "trendmap_ingested_records_total", result="updated") == 0


def test_live_subscriptions_and_deliveries(app_with: Any) -> None:
    client = app_with()
    now = datetime.now(UTC)
    spread = [
        record(country, topic, hours_ago=hours, as_of=now, count=100)
        for country, hours in (("FR", 3), ("BE", 2))
        for topic in ("Alpha", "Beta")
    ]
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": SUBSCRIBE})
        subscribed(client)  # it knows which flows were hot as it began
        assert value(scrape(client), "trendmap_subscriptions_active") == 1
        assert client.post("/v1/trends", json=spread, headers=write_headers()).status_code == 200
        message = ws.receive_json()
        assert message["payload"]["data"]["hotFlows"]["fromCountry"] == "FR"
        found = scrape(client)
        assert value(found, "trendmap_subscription_deliveries_total") == 1
        assert value(found, "trendmap_subscriptions_dropped_total") == 0
        ws.send_json({"id": "1", "type": "complete"})
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"
    assert value(scrape(client), "trendmap_subscriptions_active") == 0


def test_metrics_are_never_rate_limited_and_refusals_are_timed(app_with: Any) -> None:
    client = app_with(rate_limit_per_minute=2)
    statuses = [client.get("/v1/flows").status_code for _ in range(4)]
    assert statuses.count(429) == 2
    for _ in range(5):
        found = scrape(client)
    assert requests(found, "/v1/flows", "GET", "4xx") == 2
    assert requests(found, "/v1/flows", "GET", "2xx") == 2


def test_admission_figures_are_exposed(app_with: Any) -> None:
    client = app_with(max_inflight_requests=7)
    found = scrape(client)
    assert value(found, "trendmap_inflight_requests_limit") == 7
    assert value(found, "trendmap_inflight_requests") == 0
    assert value(found, "trendmap_rejected_requests_total") == 0


def test_openmetrics_when_asked_and_only_get(app_with: Any) -> None:
    client = app_with()
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert client.post("/metrics").status_code == 405


def test_metrics_can_be_turned_off(app_with: Any) -> None:
    client = app_with(metrics_enabled=False)
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert client.post("/graphql", json={"query": FLOWS}).status_code == 200


def test_feed_breakers_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    failing = CircuitBreaker(failures=2, reset_seconds=60)
    healthy = CircuitBreaker(failures=2, reset_seconds=60)
    metrics.register(
        BreakerCollector(
            lambda: [("google_trends_rss", "US", failing), ("json_feed", "BR", healthy)]
        )
    )
    body, _ = metrics.exposition(None)
    found = samples(body.decode())
    state = "trendmap_source_breaker_state"
    assert value(found, state, source="google_trends_rss", country="US", state="closed") == 1
    failing.record_failure()
    failing.record_failure()
    found = samples(metrics.exposition(None)[0].decode())
    assert value(found, state, source="google_trends_rss", country="US", state="open") == 1
    assert value(found, state, source="google_trends_rss", country="US", state="closed") == 0
    assert value(found, state, source="json_feed", country="BR", state="closed") == 1
    failures = "trendmap_source_breaker_failures"
    assert value(found, failures, source="google_trends_rss", country="US") == 2


def test_the_apps_feed_breakers_are_scraped(app_with: Any) -> None:
    client = app_with(
        sources=("google_trends_rss",),
        dry_run_apis=True,
        poll_countries=("US", "BR"),
        poller_enabled=False,
    )
    found = scrape(client)
    state = "trendmap_source_breaker_state"
    for country in ("US", "BR"):
        assert value(found, state, source="google_trends_rss", country=country, state="closed") == 1
        assert value(found, state, source="google_trends_rss", country=country, state="open") == 0
    assert value(scrape(app_with()), state, source="google_trends_rss", country="US") == 0


def test_a_scrape_before_start_has_only_request_metrics() -> None:
    names = {
        family.name
        for family in text_string_to_metric_families(Metrics().exposition(None)[0].decode())
    }
    assert names == {"trendmap_request_duration_seconds"}


def test_histogram_buckets_cover_a_slow_request(app_with: Any) -> None:
    client = app_with()
    client.get("/v1/flows")
    found = scrape(client)
    le = [
        float(dict(labels)["le"])
        for (name, labels) in found
        if name == "trendmap_request_duration_seconds_bucket" and ("route", "/v1/flows") in labels
    ]
    assert max(x for x in le if x != float("inf")) >= 5
    assert min(le) <= 0.001


def test_a_refused_scrape_is_in_the_error_format(app_with: Any) -> None:
    response = app_with().post("/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"] == "method_not_allowed"


def test_a_registered_collector_leaves_the_scrape_when_unregistered() -> None:
    metrics = Metrics()
    breaker = CircuitBreaker(failures=2, reset_seconds=60)
    unregister = metrics.register(BreakerCollector(lambda: [("json_feed", "US", breaker)]))
    assert "trendmap_source_breaker_state" in metrics.exposition(None)[0].decode()
    unregister()
    assert "trendmap_source_breaker_state" not in metrics.exposition(None)[0].decode()
