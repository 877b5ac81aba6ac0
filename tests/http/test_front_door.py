"""The front door (graph/http/middleware/front_door.py): a current prebuilt answer sent in one
step, limited, admitted, logged and timed as the layers below would; every request one of
those layers must decide goes down to it untouched."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

import redis
from starlette.testclient import TestClient

from graph.cache.keys import GENERATION_KEY
from graph.http.app import create_app
from graph.settings import Settings
from tests.http.test_fast_path import FLOWS, spread, without_request_id
from tests.support.factories import WRITE_KEY
from tests.support.layers import front_door_of, responses_of
from tests.support.servers import RedisServer


def remaining(response: Any) -> int:
    found = re.search(r";r=(\d+);", response.headers["ratelimit"])
    assert found is not None, response.headers["ratelimit"]
    return int(found.group(1))


def test_a_current_prebuilt_answer_is_sent_from_the_front_door(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(rate_limit_per_minute=100)
    spread(client)
    door = front_door_of(client)
    first = client.get(FLOWS)  # the usual way: the route answers, the fast path records it
    assert door.answered == 0
    again = [client.get(FLOWS) for _ in range(3)]
    assert door.answered == 3 and responses_of(client).hits == 3
    for response in again:
        assert response.status_code == 200
        assert set(response.headers) == set(first.headers)
        assert without_request_id(response.json()) == without_request_id(first.json())
        assert response.json()["metadata"]["request_id"] == response.headers["x-request-id"]
    # One budget, spent one read at a time whichever layer answered.
    budgets = [remaining(r) for r in [first, *again]]
    assert budgets == [budgets[0] - n for n in range(4)]
    state = client.app_state["trendmap"]
    assert front_door_of(client).admission.inflight == 0  # every slot given back
    assert state.cache.lookups["flows", True] >= 3


def test_the_front_door_answers_a_matching_if_none_match_with_a_304(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    tag = client.get(FLOWS).headers["etag"]
    door = front_door_of(client)
    unchanged = client.get(FLOWS, headers={"If-None-Match": tag, "X-Request-ID": "mine-304"})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["x-request-id"] == "mine-304" and "ratelimit" in unchanged.headers
    assert door.answered == 1


def test_a_request_a_lower_layer_must_decide_passes_the_front_door(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(
        cors_origins=("https://map.example",),
        rate_limit_per_minute=4,
        admission_queue_seconds=0,
    )
    spread(client)
    door, responses = front_door_of(client), responses_of(client)
    client.get(FLOWS)
    # CORS adds its headers below: the fast path answers it, the front door does not.
    cross = client.get(FLOWS, headers={"Origin": "https://map.example"})
    assert cross.headers["access-control-allow-origin"] == "https://map.example"
    assert (door.answered, responses.hits) == (0, 1)
    # No slot free now: admission decides (here: a 503 at once, with no queue).
    admission = door.admission
    admission.inflight = admission.max_inflight
    try:
        assert client.get(FLOWS).status_code == 503
    finally:
        admission.inflight = 0
    assert door.answered == 0
    assert client.get(FLOWS).status_code == 200 and door.answered == 1
    assert client.get(FLOWS).status_code == 200 and door.answered == 2  # the 4th read of 4
    # The budget is spent: the rate limiter refuses, as for any request.
    refused = client.get(FLOWS)
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
    assert door.answered == 2


def test_in_strict_mode_the_store_is_asked_below_the_front_door(
    redis_settings: Callable[..., Settings], throwaway_redis: RedisServer
) -> None:
    """With CACHE_LOCAL_SECONDS=0 only the store can say the answer is current: the fast path
    reads it, so the front door never answers."""
    settings = redis_settings(cache_local_seconds=0)
    with TestClient(create_app(settings)) as client:
        spread(client)
        client.get(FLOWS)
        client.get(FLOWS)
        assert (front_door_of(client).answered, responses_of(client).hits) == (0, 1)
        with redis.Redis.from_url(throwaway_redis.url) as other_worker:
            other_worker.incr(GENERATION_KEY)
        client.get(FLOWS)
        assert (front_door_of(client).answered, responses_of(client).hits) == (0, 1)


def test_with_a_local_copy_and_redis_the_front_door_answers_within_the_trust(
    redis_settings: Callable[..., Settings],
) -> None:
    """The default on Redis: reads are reserved in chunks, the generation trusted for
    CACHE_LOCAL_SECONDS; a hit then needs neither store, and the front door sends it."""
    settings = redis_settings(cache_local_seconds=30)
    with TestClient(create_app(settings)) as client:
        spread(client)
        first = client.get(FLOWS)
        again = client.get(FLOWS)
        assert front_door_of(client).answered == 1
        assert remaining(again) == remaining(first) - 1


QUERY = '{ flows(timeWindow: "24h", limit: 20, threshold: 0.1) { fromCountry toCountry heat } }'


def test_a_repeated_graphql_operation_is_sent_from_the_front_door(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(metrics_enabled=True)
    spread(client)
    door = front_door_of(client)
    first = client.post("/graphql", json={"query": QUERY})
    assert first.status_code == 200 and first.json()["data"]["flows"]
    again = [client.post("/graphql", json={"query": QUERY}) for _ in range(2)]
    assert door.answered == 2
    for response in again:
        assert response.content == first.content
        assert response.headers["content-type"] == first.headers["content-type"]
        assert response.headers["x-request-id"] != first.headers["x-request-id"]
        assert remaining(response) < remaining(first)
    # Timed under the operation's label, as the route's answer was.
    counted = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("trendmap_request_duration_seconds_count") and 'route="/graphql"' in line
    ]
    assert len(counted) == 1 and counted[0].endswith(" 3.0"), counted


def test_a_persisted_query_asked_by_hash_is_sent_from_the_front_door(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    digest = hashlib.sha256(QUERY.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    stored = client.post("/graphql", json={"query": QUERY, "extensions": extensions})
    assert stored.status_code == 200
    params = {"extensions": json.dumps(extensions)}
    door = front_door_of(client)
    first = client.get("/graphql", params=params)
    assert first.status_code == 200 and door.answered == 0
    second = client.get("/graphql", params=params)
    assert second.content == first.content == stored.content and door.answered == 1


def test_graphql_answers_are_not_shared_across_media_types_or_credentials(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    door = front_door_of(client)
    plain = [client.post("/graphql", json={"query": QUERY}) for _ in range(2)]
    assert door.answered == 1
    spec = {"Accept": "application/graphql-response+json"}
    answers = [client.post("/graphql", json={"query": QUERY}, headers=spec) for _ in range(2)]
    assert [a.headers["content-type"] for a in answers] == ["application/graphql-response+json"] * 2
    assert door.answered == 2  # its own first answer, then its own prebuilt one
    writer = {"Authorization": f"Bearer {WRITE_KEY}"}
    written = [client.post("/graphql", json={"query": QUERY}, headers=writer) for _ in range(2)]
    assert door.answered == 3
    wrong = {"Authorization": "Bearer no"}
    for _ in range(2):  # judged by the endpoint every time
        client.post("/graphql", json={"query": QUERY}, headers=wrong)
    assert door.answered == 3
    assert plain[1].content == answers[1].content == written[1].content


def test_a_min_generation_too_long_to_convert_is_refused_as_the_route_refuses_it(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with()
    spread(client)
    client.get(FLOWS)
    huge = client.get(FLOWS, headers={"X-Trendmap-Min-Generation": "9" * 5000})
    assert huge.status_code == 400 and huge.json()["error"] == "invalid_parameter"
    assert front_door_of(client).answered == 0


def test_a_document_holding_a_mutation_is_charged_a_write_below_the_front_door(
    app_with: Callable[..., TestClient],
) -> None:
    """Only its query ran, so its answer is kept; the limiter still charges the document's
    mutation to the write budget, and only the layers below know that."""
    client = app_with(rate_limit_writes_per_minute=3)
    both = {"query": "query A { __typename } mutation B { __typename }", "operationName": "A"}
    statuses = [client.post("/graphql", json=both).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert front_door_of(client).answered == 0


def test_an_answer_taken_from_the_local_copy_is_trusted_from_the_copys_last_read(
    redis_settings: Callable[..., Settings],
) -> None:
    """A kept GraphQL answer whose generation came from the local copy is known current only
    since the copy's last read of Redis: the front door stops trusting it CACHE_LOCAL_SECONDS
    after that read, not after the request (else a missed announcement could leave it stale
    for twice as long)."""
    settings = redis_settings(cache_local_seconds=1.5)
    with TestClient(create_app(settings)) as client:
        spread(client)
        client.get(FLOWS)  # reads the generation in Redis: the copy is trusted from now
        read_at = client.app_state["trendmap"].cache.local_copy.read_at
        assert read_at is not None
        time.sleep(0.8)
        first = client.post("/graphql", json={"query": QUERY})  # its generation: the copy's
        door = front_door_of(client)
        answered = door.answered
        time.sleep(max(0.0, read_at + 1.6 - time.monotonic()))
        again = client.post("/graphql", json={"query": QUERY})
        assert again.content == first.content
        assert door.answered == answered  # past the copy's trust: the store is asked below
