"""The REST API end to end, on SQLite and on PostgreSQL."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.http.app import create_app
from tests.support.factories import AS_OF, READ_KEY, WRITE_KEY, make_settings, record, write_headers

ISO_AS_OF = AS_OF.isoformat()


def ingest(client: TestClient, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def spreading() -> list[dict[str, Any]]:
    """US starts three topics, BR picks them up an hour later; JP has its own."""
    out = []
    for topic, n in [("World Cup", 50), ("Election", 30), ("Storm", 20)]:
        out.append(record("US", topic, hours_ago=4, count=n))
        out.append(record("BR", topic, hours_ago=3, count=n))
    out.append(record("JP", "Anime Expo", hours_ago=2, count=40))
    return out


def test_ingest_then_reingest_changes_nothing(client: TestClient) -> None:
    batch = spreading()
    first = ingest(client, batch)
    assert first == {**first, "received": 7, "inserted": 7, "updated": 0, "unchanged": 0}
    before = client.get("/v1/trends", params={"first": 100}).json()
    again = ingest(client, batch)
    assert again["inserted"] == 0 and again["updated"] == 0 and again["unchanged"] == 7
    after = client.get("/v1/trends", params={"first": 100}).json()
    assert after["trends"] == before["trends"]
    assert after["total_count"] == 7


def test_upsert_replaces_a_record_with_the_same_natural_key(client: TestClient) -> None:
    ingest(client, [record("US", "World Cup", count=10)])
    result = ingest(client, [record("us", "  world   CUP ", count=99)])
    assert (result["inserted"], result["updated"]) == (0, 1)
    trends = client.get("/v1/trends").json()["trends"]
    assert len(trends) == 1
    assert trends[0]["count"] == 99
    assert trends[0]["topic_label"] == "world   CUP"
    assert trends[0]["country"] == "US"


def test_flows_find_the_spread_and_its_direction(client: TestClient) -> None:
    ingest(client, spreading())
    body = client.get("/v1/flows", params={"as_of": ISO_AS_OF, "threshold": 0.1}).json()
    assert [(f["from_country"], f["to_country"]) for f in body["flows"]] == [("US", "BR")]
    flow = body["flows"][0]
    assert flow["time_delta_hours"] == pytest.approx(1.0)
    assert flow["shared_topics"] == ["World Cup", "Election", "Storm"]
    assert flow["heat"] == pytest.approx(flow["similarity_score"] * 0.5 ** (1 / 6))
    meta = body["metadata"]
    assert meta["flow_count"] == 1 and meta["time_window"] == "24h"
    assert meta["threshold"] == 0.1 and meta["as_of"] == ISO_AS_OF
    assert meta["cache_hit"] is False and meta["request_id"]
    assert body["warnings"] == []


def test_flows_metadata_names_the_hottest_pair_when_nothing_is_hot(client: TestClient) -> None:
    ingest(client, spreading())
    params = {"as_of": ISO_AS_OF, "threshold": 0.95}
    body = client.get("/v1/flows", params=params).json()
    assert body["flows"] == []
    meta = body["metadata"]
    assert meta["pairs"] == 1
    assert (meta["max_heat"]["from_country"], meta["max_heat"]["to_country"]) == ("US", "BR")
    assert meta["max_heat"]["heat"] == pytest.approx(0.5 ** (1 / 6))
    assert list(meta["max_heat"]) == ["heat", "from_country", "to_country"]
    geo = client.get("/v1/flows.geojson", params=params).json()["metadata"]
    assert (geo["max_heat"], geo["pairs"]) == (meta["max_heat"], 1)
    # The stats follow the countries filter, as the flows do.
    apart = client.get("/v1/flows", params={**params, "countries": "US,JP"}).json()
    assert (apart["metadata"]["max_heat"], apart["metadata"]["pairs"]) == (None, 0)
    # ... and they are cached with the answer.
    again = client.get("/v1/flows", params=params).json()["metadata"]
    assert again["cache_hit"] is True
    assert (again["max_heat"], again["pairs"]) == (meta["max_heat"], 1)


def test_a_lag_under_flow_min_lag_minutes_is_simultaneous(app_with: Any) -> None:
    """US then BR ten minutes later: simultaneous by default (BR first, alphabetically);
    directed US -> BR when FLOW_MIN_LAG_MINUTES is 5. time_delta_hours is the lag either way."""
    records = [
        record("US", "Storm", hours_ago=2, count=5),
        record("BR", "Storm", hours_ago=2 - 10 / 60, count=5),
    ]
    for minutes, expected in [(None, ("BR", "US", True)), (5, ("US", "BR", False))]:
        settings = {} if minutes is None else {"flow_min_lag_minutes": minutes}
        client = app_with(**settings)
        ingest(client, records)
        body = client.get("/v1/flows", params={"as_of": ISO_AS_OF, "threshold": 0}).json()
        [flow] = body["flows"]
        assert (flow["from_country"], flow["to_country"], flow["simultaneous"]) == expected
        assert flow["time_delta_hours"] == pytest.approx(1 / 6)


def test_flow_min_lag_minutes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="flow_min_lag_minutes"):
        make_settings("sqlite://", flow_min_lag_minutes=0)


def test_hotspots_compare_with_the_window_before(client: TestClient) -> None:
    """US: 100 in the 24 h window, 50 in the 24 h before it: velocity 2 x 100 / 150; BR: all
    new, velocity 2; score = volume x velocity x confidence, beside intensity."""
    ingest(
        client,
        [
            record("US", "World Cup", hours_ago=2, count=100),
            record("US", "Budget", hours_ago=30, count=50),
            record("BR", "World Cup", hours_ago=1, count=60),
            record("BR", "Old news", hours_ago=49, count=500),  # before both windows
        ],
    )
    body = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF}).json()
    by_country = {h["country"]: h for h in body["hotspots"]}
    us, br = by_country["US"], by_country["BR"]
    assert us["velocity"] == pytest.approx(4 / 3)
    assert us["score"] == pytest.approx(100 * 4 / 3 * 0.9)
    assert (br["velocity"], br["volume"]) == (2.0, 60)
    assert br["score"] == pytest.approx(60 * 2 * 0.9)
    assert us["intensity"] == 1.0
    assert br["intensity"] == pytest.approx(br["score"] / us["score"])
    assert list(us)[:3] == ["country", "intensity", "score"]


def test_flows_country_filter_is_normalised(client: TestClient) -> None:
    ingest(client, spreading())
    params = {"as_of": ISO_AS_OF, "threshold": 0.1}
    kept = client.get("/v1/flows", params={**params, "countries": " us,br , BR"}).json()
    assert len(kept["flows"]) == 1
    assert kept["metadata"]["countries"] == ["BR", "US"]
    dropped = client.get("/v1/flows", params={**params, "countries": "US,JP"}).json()
    assert dropped["flows"] == []


def test_windows_bound_what_is_counted(client: TestClient) -> None:
    ingest(client, spreading())
    in_1h = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF, "time_window": "1h"}).json()
    assert in_1h["hotspots"] == []
    in_6h = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF, "time_window": "6h"}).json()
    assert {h["country"] for h in in_6h["hotspots"]} == {"US", "BR", "JP"}
    # The window is as_of - W < t <= as_of: a record exactly at as_of - W is out.
    edge = client.get(
        "/v1/hotspots", params={"as_of": AS_OF.replace(hour=8).isoformat(), "time_window": "1h"}
    ).json()
    assert {h["country"] for h in edge["hotspots"]} == {"US"}


def test_hotspots_shape_and_order(client: TestClient) -> None:
    ingest(client, spreading())
    body = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF}).json()
    hotspots = body["hotspots"]
    assert hotspots[0]["intensity"] == 1.0
    assert [h["intensity"] for h in hotspots] == sorted(
        (h["intensity"] for h in hotspots), reverse=True
    )
    us = next(h for h in hotspots if h["country"] == "US")
    assert us["topic_count"] == 3
    assert us["top_topics"][0] == {"label": "World Cup", "count": 50, "confidence": 0.9}
    only_jp = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF, "countries": "jp"}).json()
    assert [h["country"] for h in only_jp["hotspots"]] == ["JP"]
    limited = client.get("/v1/hotspots", params={"as_of": ISO_AS_OF, "limit": 1}).json()
    assert len(limited["hotspots"]) == 1


def test_trends_pages_with_cursors(client: TestClient) -> None:
    ingest(client, [record("US", f"Topic {i}", hours_ago=i) for i in range(1, 8)])
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"first": 3}
        if after:
            params["after"] = after
        body = client.get("/v1/trends", params=params).json()
        assert body["total_count"] == 7
        seen += [t["topic_label"] for t in body["trends"]]
        if not body["page_info"]["has_next_page"]:
            break
        after = body["page_info"]["end_cursor"]
    assert seen == [f"Topic {i}" for i in range(1, 8)]


def test_trends_filters(client: TestClient) -> None:
    ingest(client, spreading())
    by_topic = client.get("/v1/trends", params={"topic": "WORLD  cup"}).json()
    assert {t["country"] for t in by_topic["trends"]} == {"US", "BR"}
    by_country = client.get("/v1/trends", params={"countries": "jp"}).json()
    assert [t["topic_label"] for t in by_country["trends"]] == ["Anime Expo"]
    since = AS_OF.replace(hour=9).isoformat()
    recent = client.get("/v1/trends", params={"since": since}).json()
    assert {t["country"] for t in recent["trends"]} == {"BR", "JP"}
    until = client.get("/v1/trends", params={"until": AS_OF.replace(hour=8).isoformat()}).json()
    assert {t["country"] for t in until["trends"]} == {"US"}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/flows", {"time_window": "2h"}, "time_window"),
        ("/v1/flows", {"countries": "US,XX"}, "countries"),
        ("/v1/flows", {"threshold": "1.5"}, "threshold"),
        ("/v1/flows", {"threshold": "nan"}, "threshold"),
        ("/v1/flows", {"threshold": "hot"}, "threshold"),
        ("/v1/flows", {"as_of": "2026-11-20T12:00:00"}, "as_of"),
        ("/v1/flows", {"as_of": "yesterday"}, "as_of"),
        ("/v1/flows", {"limit": "0"}, "limit"),
        ("/v1/flows", {"limit": "10001"}, "limit"),
        ("/v1/hotspots", {"time_window": "7d"}, "time_window"),
        ("/v1/hotspots", {"limit": "x"}, "limit"),
        ("/v1/trends", {"first": "1001"}, "first"),
        ("/v1/trends", {"after": "not-a-cursor"}, "after"),
        ("/v1/trends", {"since": "2026-13-01T00:00:00Z"}, "since"),
        ("/v1/trends", {"until": "2026-11-01"}, "until"),
        ("/v1/trends", {"countries": "ZZ"}, "countries"),
    ],
)
def test_bad_parameters_get_400_naming_the_field(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(path, params=params, headers={"X-Request-ID": "req-123"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["field"] == field
    assert body["detail"].startswith(field)
    assert body["request_id"] == "req-123"
    assert body["timestamp"]


def test_writes_need_the_write_key(client: TestClient) -> None:
    batch = [record()]
    missing = client.post("/v1/trends", json=batch)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthenticated"
    wrong = client.post("/v1/trends", json=batch, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    scheme = client.post("/v1/trends", json=batch, headers={"Authorization": f"Basic {WRITE_KEY}"})
    assert scheme.status_code == 401
    assert client.get("/v1/trends").json()["total_count"] == 0


def test_writes_are_off_without_api_keys(database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, api_keys=()))) as client:
        response = client.post("/v1/trends", json=[record()], headers=write_headers())
        assert response.status_code == 403
        assert "API_KEYS" in response.json()["detail"]


def test_read_keys_guard_reads_when_set(database_url: str) -> None:
    settings = make_settings(database_url, read_api_keys=(READ_KEY,))
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/flows").status_code == 401
        read = {"Authorization": f"Bearer {READ_KEY}"}
        assert client.get("/v1/flows", headers=read).status_code == 200
        assert client.get("/v1/hotspots", headers=write_headers()).status_code == 200
        forbidden = client.post("/v1/trends", json=[record()], headers=read)
        assert forbidden.status_code == 403
        assert client.get("/health").status_code == 200


def test_a_bad_record_rejects_the_whole_batch(client: TestClient) -> None:
    batch = [record("US", "Fine"), record("BR", "Fine too"), record("XX", "Bad country")]
    response = client.post("/v1/trends", json=batch, headers=write_headers())
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_records"
    assert body["errors"] == [
        {"record": 2, "field": "country", "message": body["errors"][0]["message"]}
    ]
    assert "record 2: country" in body["detail"]
    assert client.get("/v1/trends").json()["total_count"] == 0


@pytest.mark.parametrize(
    "body",
    [b"[", b"not json", b'{"timestamp": "2026-11-20T00:00:00Z"}', b'"text"', b""],
)
def test_malformed_bodies_get_400(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/v1/trends",
        content=body,
        headers={**write_headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"


def test_body_over_the_limit_gets_413_before_parsing(database_url: str) -> None:
    settings = make_settings(database_url, max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        batch = [record("US", f"Topic {i}") for i in range(40)]
        response = client.post("/v1/trends", json=batch, headers=write_headers())
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"

        def chunks() -> Any:
            yield b"[" + b" " * 1500
            yield b" " * 1500 + b"]"

        streamed = client.post("/v1/trends", content=chunks(), headers=write_headers())
        assert streamed.status_code == 413
        assert client.get("/v1/trends").json()["total_count"] == 0


def test_batch_over_the_record_limit_gets_413(database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, max_batch_records=2))) as client:
        response = client.post(
            "/v1/trends", json=[record(topic=str(i)) for i in range(3)], headers=write_headers()
        )
        assert response.status_code == 413
        assert client.get("/v1/trends").json()["total_count"] == 0


def test_unknown_route_and_method_use_the_error_format(client: TestClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.delete("/v1/flows")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_request_id_is_honoured_and_echoed(client: TestClient) -> None:
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    made = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"] != "bad id\twith spaces"
    assert len(made.headers["x-request-id"]) == 32


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


def test_readiness_is_503_when_the_database_is_gone(tmp_path: Any) -> None:
    settings = make_settings(
        "postgresql://postgres@127.0.0.1:1/none",
        auto_migrate=False,
        db_connect_timeout_seconds=1,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"
        flows = client.get("/v1/flows")
        assert flows.status_code == 503
        assert flows.json()["error"] == "dependency_unavailable"
        write = client.post("/v1/trends", json=[record()], headers=write_headers())
        assert write.status_code == 503


def test_openapi_document_lists_every_endpoint(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/",
        "/v1/flows",
        "/v1/flows.geojson",
        "/v1/hotspots",
        "/v1/hotspots.geojson",
        "/v1/hotspots/history",
        "/v1/trends",
        "/v1/span",
        "/v1/topics",
        "/v1/topics/spread",
        "/health",
        "/health/ready",
    }
    assert set(document["paths"]["/v1/trends"]) == {"get", "post"}


def test_answers_are_cached_until_the_next_ingest(client: TestClient) -> None:
    ingest(client, spreading())
    params = {"threshold": 0.1, "as_of": ISO_AS_OF}
    first = client.get("/v1/flows", params=params).json()
    assert first["flows"]
    second = client.get("/v1/flows", params=params).json()
    assert (first["metadata"]["cache_hit"], second["metadata"]["cache_hit"]) == (False, True)
    assert second["flows"] == first["flows"]
    assert second["metadata"]["request_id"] != first["metadata"]["request_id"]
    ingest(client, [record("JP", "World Cup", hours_ago=1)])
    third = client.get("/v1/flows", params=params).json()
    assert third["metadata"]["cache_hit"] is False
    assert third["flows"] != first["flows"]  # JP's World Cup changed the idf


def test_historical_answers_are_cached_too(client: TestClient) -> None:
    ingest(client, spreading())
    params = {"as_of": ISO_AS_OF}
    hits = [client.get("/v1/hotspots", params=params).json()["metadata"] for _ in range(2)]
    assert [m["cache_hit"] for m in hits] == [False, True]
    assert hits[1]["as_of"] == ISO_AS_OF


def test_use_cache_false_computes_every_time(database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, use_cache=False))) as client:
        for _ in range(2):
            body = client.get("/v1/flows").json()
            assert body["metadata"]["cache_hit"] is False
        ready = client.get("/health/ready").json()["checks"]
        assert ready["cache"]["state"] == "disabled"
        assert ready["broker"]["state"] == "in-process"


def _refuse_as_starting_up(listener: socket.socket) -> None:
    """Answer every login as a PostgreSQL that is still starting up (SQLSTATE 57P03)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        with conn:
            try:
                while True:
                    (length,) = struct.unpack("!i", conn.recv(4, socket.MSG_WAITALL))
                    body = conn.recv(length - 4, socket.MSG_WAITALL)
                    if struct.unpack("!i", body[:4])[0] == 80877103:  # SSLRequest
                        conn.sendall(b"N")
                        continue
                    fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
                    conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
                    break
            except (OSError, struct.error):
                pass


def test_readiness_is_503_while_the_database_is_starting_up() -> None:
    """asyncpg's CannotConnectNowError is an outage: 503 from /health/ready and reads, not 500."""
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=_refuse_as_starting_up, args=(listener,), daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        settings = make_settings(
            f"postgresql://postgres@127.0.0.1:{port}/trendmap", auto_migrate=False
        )
        with TestClient(create_app(settings)) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] == "unavailable"
            trends = client.get("/v1/trends")
            assert trends.status_code == 503
            assert trends.json()["error"] == "dependency_unavailable"
    finally:
        listener.close()
        thread.join(5)
