"""The fast path: repeated cached GETs answered from prebuilt bytes (graph/http/middleware/
fast_path.py), each with its own request id, still limited, logged and invalidated."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from graph.cache.keys import GENERATION_CHANNEL, GENERATION_KEY
from graph.http.app import create_app
from graph.http.prebuilt import Mark, Prebuilt, PrebuiltResponses, prebuild
from graph.settings import Settings
from tests.support.factories import READ_KEY, WRITE_KEY, make_settings, record, write_headers
from tests.support.layers import responses_of
from tests.support.servers import RedisServer

FLOWS = "/v1/flows?limit=20&threshold=0.1"


def spread(client: TestClient, to: str = "BR") -> None:
    """Three topics start in the US and reach ``to`` later."""
    batch, now = [], datetime.now(UTC)
    for topic, n in [("World Cup", 50), ("Election", 30), ("Storm", 20)]:
        batch.append(record("US", topic, hours_ago=4, count=n, as_of=now))
        batch.append(record(to, topic, hours_ago=3 if to == "BR" else 2, count=n, as_of=now))
    assert client.post("/v1/trends", json=batch, headers=write_headers()).status_code == 200


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in body["metadata"].items() if k not in ("request_id", "cache_hit")}
    return {**body, "metadata": metadata}


def test_a_repeated_get_is_answered_from_prebuilt_bytes(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(cors_origins=("https://map.example",))
    spread(client)
    origin = {"Origin": "https://map.example"}
    first = client.get(FLOWS, headers=origin)
    assert first.status_code == 200 and first.json()["flows"]
    responses = responses_of(client)
    assert responses.hits == 0
    later = [client.get(FLOWS, headers=origin) for _ in range(3)]
    assert responses.hits == 3
    ids = {r.json()["metadata"]["request_id"] for r in [first, *later]}
    assert len(ids) == 4
    for response in later:
        body = response.json()
        assert body["metadata"]["request_id"] == response.headers["x-request-id"]
        assert body["metadata"]["cache_hit"] is True
        assert without_request_id(body) == without_request_id(first.json())
        assert int(response.headers["content-length"]) == len(response.content)
        for name in ("etag", "x-trendmap-generation", "content-type", "ratelimit"):
            assert response.headers[name] == first.headers[name] or name == "ratelimit"
        assert response.headers["access-control-allow-origin"] == "https://map.example"
        assert response.headers["ratelimit-policy"] == first.headers["ratelimit-policy"]
    # A client's own request id is spliced in as well (its length differs from ours).
    mine = client.get(FLOWS, headers={"X-Request-ID": "mine-1"})
    assert mine.json()["metadata"]["request_id"] == "mine-1"
    assert responses.hits == 4


def test_the_geojson_and_hotspot_forms_are_prebuilt_too(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    responses = responses_of(client)
    for path in ("/v1/flows.geojson", "/v1/hotspots", "/v1/hotspots.geojson"):
        first = client.get(path).json()
        again = client.get(path).json()
        assert again["metadata"]["cache_hit"] is True
        assert without_request_id(again) == without_request_id(first)
    assert responses.hits == 3


def test_a_matching_if_none_match_gets_a_304_from_the_fast_path(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    tag = client.get(FLOWS).headers["etag"]
    client.get(FLOWS)
    responses = responses_of(client)
    hits = responses.hits
    unchanged = client.get(FLOWS, headers={"If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == tag and "x-trendmap-generation" in unchanged.headers
    assert responses.hits == hits + 1
    other = client.get(FLOWS, headers={"If-None-Match": 'W/"other"'})
    assert other.status_code == 200 and responses.hits == hits + 2


def test_an_ingest_stops_the_prebuilt_answer(app_with: Callable[..., TestClient]) -> None:
    client = app_with()
    spread(client)
    client.get(FLOWS)
    responses = responses_of(client)
    before = client.get(FLOWS).json()
    assert responses.hits == 1
    spread(client, "JP")
    after = client.get(FLOWS)
    assert responses.hits == 1  # answered the usual way, with the new flows
    assert len(after.json()["flows"]) > len(before["flows"])
    client.get(FLOWS)
    assert responses.hits == 2


def test_min_generation_newer_than_the_prebuilt_answer_goes_the_usual_way(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    client.get(FLOWS)
    responses = responses_of(client)
    generation = int(client.get(FLOWS).headers["x-trendmap-generation"])
    assert responses.hits == 1
    client.get(FLOWS, headers={"X-Trendmap-Min-Generation": str(generation)})
    assert responses.hits == 2
    newer = client.get(FLOWS, headers={"X-Trendmap-Min-Generation": str(generation + 5)})
    assert newer.status_code == 200 and responses.hits == 2
    bad = client.get(FLOWS, headers={"X-Trendmap-Min-Generation": "soon"})
    assert bad.status_code == 400 and responses.hits == 2


def test_a_sliding_window_older_than_the_refresh_period_is_not_served(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(flows_refresh_seconds=30)
    spread(client)
    first = client.get(FLOWS).json()
    client.get(FLOWS)
    responses = responses_of(client)
    assert responses.hits == 1
    cache = client.app_state["trendmap"].cache
    later = cache.clock() + timedelta(seconds=31)
    cache.clock = lambda: later
    refreshed = client.get(FLOWS).json()
    assert responses.hits == 1
    assert refreshed["metadata"]["computed_at"] != first["metadata"]["computed_at"]
    # An explicit instant is not a sliding window: its answer does not age.
    as_of = f"{FLOWS}&as_of={first['metadata']['as_of'].replace('+00:00', 'Z')}"
    client.get(as_of)
    client.get(as_of)
    assert responses.hits == 2


def test_a_feed_failing_or_recovering_stops_the_prebuilt_answer(
    app_with: Callable[..., TestClient],
) -> None:
    """Partial-data warnings follow the feeds' health, not the generation."""
    client = app_with()
    spread(client)
    failing: set[str] = set()
    board = client.app_state["trendmap"].feeds.board
    board.polling = True
    board.lead(lambda: {}, lambda: frozenset(failing))
    responses = responses_of(client)
    client.get(FLOWS)
    assert client.get(FLOWS).json()["warnings"] == [] and responses.hits == 1
    failing.add("BR")
    assert client.get(FLOWS).json()["warnings"] == ["Partial data: BR unavailable"]
    assert responses.hits == 1
    assert client.get(FLOWS).json()["warnings"] == ["Partial data: BR unavailable"]
    assert responses.hits == 2
    failing.clear()
    assert client.get(FLOWS).json()["warnings"] == [] and responses.hits == 2


def test_credential_classes_do_not_share_prebuilt_answers(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(read_api_keys=(READ_KEY,))
    spread(client)
    reader = {"Authorization": f"Bearer {READ_KEY}"}
    writer = {"Authorization": f"Bearer {WRITE_KEY}"}
    responses = responses_of(client)
    assert client.get(FLOWS, headers=reader).status_code == 200
    assert client.get(FLOWS, headers=reader).status_code == 200
    assert responses.hits == 1
    assert client.get(FLOWS).status_code == 401
    assert client.get(FLOWS, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert responses.hits == 1
    assert client.get(FLOWS, headers=writer).status_code == 200
    assert responses.hits == 1  # another class: its own first answer
    assert client.get(FLOWS, headers=writer).status_code == 200
    assert responses.hits == 2


def test_rate_limits_apply_to_prebuilt_answers(app_with: Callable[..., TestClient]) -> None:
    client = app_with(rate_limit_per_minute=4, rate_limit_writes_per_minute=4)
    spread(client)
    statuses = [client.get(FLOWS).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert responses_of(client).hits == 3


def test_one_log_line_per_prebuilt_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'log.db'}", log_level="INFO")
    with TestClient(create_app(settings)) as client:
        spread(client)
        client.get(FLOWS)
        capsys.readouterr()
        answered = client.get(FLOWS, headers={"X-Request-ID": "fast-1"})
        lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert answered.status_code == 200
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 1
    [line] = requests
    assert line["request_id"] == "fast-1" and line["cache_hit"] is True
    assert line["fast_path"] is True and line["status"] == 200
    assert line["time_window"] == "24h" and line["path"] == "/v1/flows"


def test_metrics_count_prebuilt_answers(app_with: Callable[..., TestClient]) -> None:
    client = app_with(metrics_enabled=True)
    spread(client)
    for _ in range(3):
        client.get(FLOWS)
    assert responses_of(client).hits == 2
    text = client.get("/metrics").text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("trendmap_request_duration_seconds_count") and '"/v1/flows"' in line
    ]
    assert counted and any(line.endswith(" 3.0") for line in counted), counted


def test_strict_mode_with_redis_reads_the_generation(
    redis_settings: Callable[..., Settings], throwaway_redis: RedisServer
) -> None:
    """Another worker's ingest (its INCR of the generation in Redis) stops this worker's
    prebuilt answer at once, with no announcement heard."""
    settings = redis_settings(cache_local_seconds=0)
    with TestClient(create_app(settings)) as client:
        spread(client)
        generation = int(client.get(FLOWS).headers["x-trendmap-generation"])
        client.get(FLOWS)
        responses = responses_of(client)
        assert responses.hits == 1
        with redis.Redis.from_url(throwaway_redis.url) as other_worker:
            other_worker.incr(GENERATION_KEY)
        after = client.get(FLOWS)
        assert responses.hits == 1
        assert int(after.headers["x-trendmap-generation"]) == generation + 1
        client.get(FLOWS)
        assert responses.hits == 2


def test_with_a_local_copy_an_announced_generation_stops_the_prebuilt_answer(
    redis_settings: Callable[..., Settings], throwaway_redis: RedisServer
) -> None:
    """CACHE_LOCAL_SECONDS > 0: no store read per request; another worker's announcement
    (what its ingest sends through Redis) retires this one's prebuilt answer."""
    settings = redis_settings(cache_local_seconds=30)
    with TestClient(create_app(settings)) as one:
        spread(one)
        one.get(FLOWS)
        one.get(FLOWS)
        responses = responses_of(one)
        assert responses.hits == 1
        cache, publisher = one.app_state["trendmap"].cache, one.app_state["trendmap"].publisher
        deadline = time.monotonic() + 5
        while (publisher.pending or publisher.unsent) and time.monotonic() < deadline:
            time.sleep(0.01)  # the ingest's live snapshots go out before Redis is paused
        throwaway_redis.pause()
        try:
            # The store is not asked: the prebuilt answer is sent all the same.
            assert one.get(FLOWS).status_code == 200 and responses.hits == 2
        finally:
            throwaway_redis.resume()
        # Past CACHE_LOCAL_SECONDS, one read of the generation in Redis trusts it again.
        prebuilt = responses.get(("/v1/flows", FLOWS.partition("?")[2].encode(), 0))
        assert prebuilt is not None
        prebuilt.trusted_since = -math.inf
        assert one.get(FLOWS).status_code == 200 and responses.hits == 3
        assert prebuilt.trusted_since > 0
        seen = cache.generation
        with redis.Redis.from_url(throwaway_redis.url) as other_worker:
            announced = other_worker.incr(GENERATION_KEY)
            other_worker.publish(GENERATION_CHANNEL, str(announced))
        deadline = time.monotonic() + 5
        while cache.generation == seen and time.monotonic() < deadline:
            time.sleep(0.01)  # the announcement travels through Redis pub/sub
        assert cache.generation > seen
        one.get(FLOWS)
        assert responses.hits == 3


def test_prebuilt_responses_stay_within_their_bounds() -> None:
    mark = Mark("flows", 1, datetime.now(UTC), sliding=False)

    def built(payload: bytes) -> Prebuilt:
        body = b'{"flows":' + payload + b',"metadata":{"request_id":"r","cache_hit":false}}'
        found = prebuild(
            mark,
            [(b"content-length", b"1")],
            body,
            "r",
            log_fields={},
            failing=(),
            epoch=0,
            trusted_since=0.0,
        )
        assert found is not None and found.body("other") == body.replace(
            b'"r"', b'"other"'
        ).replace(b"false", b"true")
        return found

    by_count = PrebuiltResponses(max_entries=2, max_bytes=10_000)
    for n in range(3):
        by_count.put(("/v1/flows", str(n).encode(), 0), built(b"[]"))
    assert len(by_count) == 2 and by_count.get(("/v1/flows", b"0", 0)) is None
    by_bytes = PrebuiltResponses(max_entries=100, max_bytes=300)
    for n in range(5):
        by_bytes.put(("/v1/flows", str(n).encode(), 0), built(b"[" + b"1," * 40 + b"1]"))
    assert by_bytes.bytes <= 300 and len(by_bytes) < 5
    assert by_bytes.get(("/v1/flows", b"4", 0)) is not None
    by_bytes.put(("/v1/flows", b"big", 0), built(b"[" + b"1," * 400 + b"1]"))
    assert by_bytes.get(("/v1/flows", b"big", 0)) is None and by_bytes.bytes <= 300
    # A body that does not hold the id exactly once is not prebuilt.
    twice = b'{"a":{"request_id":"r","cache_hit":true},"b":{"request_id":"r"}}'
    assert (
        prebuild(mark, [], twice, "r", log_fields={}, failing=(), epoch=0, trusted_since=0) is None
    )
