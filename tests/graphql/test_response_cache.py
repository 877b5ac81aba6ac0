"""Whole answers to repeated GraphQL queries: served from the kept bytes without touching the
database (SQL statements counted on the app's real engine), retired by an ingest on any worker,
never shared across credential classes, told apart by variables, and bounded."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import event
from starlette.testclient import TestClient

from graph.cache.keys import GENERATION_CHANNEL, GENERATION_KEY
from graph.graphql.response_cache import OperationCache
from graph.http.app import create_app
from graph.settings import Settings
from tests.support.factories import (
    READ_KEY,
    TEST_REDIS_URL,
    WRITE_KEY,
    make_settings,
    record,
    spread,
    write_headers,
)
from tests.support.layers import graphql_schema_of, responses_of
from tests.support.servers import RedisServer

TRENDS = "query Recent($n: Int) { trends(first: $n) { totalCount edges { node { country } } } }"


class Statements:
    """Pages of records (what ``trends`` reads) the app's engine read since the last
    ``taken()``. The live publisher's snapshots run beside the requests after an ingest, on
    the same engine: their statements are not counted."""

    def __init__(self, client: TestClient) -> None:
        self.count = 0
        engine = client.app_state["trendmap"].repository.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._ran)

    def _ran(self, _connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.count += statement.lstrip().startswith("SELECT trends_archive.id")

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


def operations(client: TestClient) -> OperationCache:
    """The app's kept answers (its GraphQL endpoint's, over HTTP and WebSocket alike)."""
    return graphql_schema_of(client).operations


def served_kept(client: TestClient) -> int:
    """Requests answered from kept bytes: by the operation cache, or before it by the fast
    path from the bytes it sent (graph.http.prebuilt)."""
    return operations(client).hits + responses_of(client).hits


def ask(
    client: TestClient,
    query: str = TRENDS,
    variables: dict[str, Any] | None = None,
    key: str | None = None,
    **headers: str,
) -> dict[str, Any]:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    response = client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ingest(client: TestClient, records: list[dict[str, Any]]) -> None:
    response = client.post("/v1/trends", json=records, headers=write_headers())
    assert response.status_code == 200, response.text


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(f"sqlite:///{tmp_path / 'a.db'}")
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_repeated_query_is_answered_without_the_database(client: TestClient) -> None:
    ingest(client, [record("US"), record("FR")])
    statements = Statements(client)
    first = ask(client, variables={"n": 5})
    assert first["data"]["trends"]["totalCount"] == 2
    assert statements.taken() > 0
    hits = served_kept(client)
    for _ in range(3):
        assert ask(client, variables={"n": 5}) == first
    assert statements.taken() == 0
    assert served_kept(client) == hits + 3


def test_an_ingest_changes_the_answer(client: TestClient) -> None:
    ingest(client, [record("US")])
    assert ask(client)["data"]["trends"]["totalCount"] == 1
    ask(client)
    ingest(client, [record("BR")])
    assert ask(client)["data"]["trends"]["totalCount"] == 2
    # An ingest that changed nothing retires nothing.
    statements = Statements(client)
    ingest(client, [record("BR")])
    statements.taken()
    assert ask(client)["data"]["trends"]["totalCount"] == 2
    assert statements.taken() == 0


def test_an_ingest_on_another_worker_changes_the_answer(tmp_path: Path) -> None:
    # Strict mode: every lookup reads the generation in Redis, so a read without
    # min_generation sees the other worker's write at once (the local copy's window is below).
    settings = make_settings(
        f"sqlite:///{tmp_path / 'a.db'}", redis_url=TEST_REDIS_URL, cache_local_seconds=0
    )
    # A document of this test's own: other tests' answers never share its keys.
    query = f"{TRENDS} # {uuid.uuid4()}"
    with TestClient(create_app(settings)) as reader, TestClient(create_app(settings)) as writer:
        assert ask(reader, query)["data"]["trends"]["totalCount"] == 0
        statements = Statements(reader)
        assert ask(reader, query)["data"]["trends"]["totalCount"] == 0
        assert statements.taken() == 0
        ingest(writer, [record("US")])
        assert ask(reader, query)["data"]["trends"]["totalCount"] == 1


def test_with_a_local_copy_a_kept_answer_needs_no_store_read_until_an_announcement(
    redis_settings: Callable[..., Settings], throwaway_redis: RedisServer
) -> None:
    """CACHE_LOCAL_SECONDS > 0: a repeated query is answered without asking Redis for the
    generation (as the REST fast path is); another worker's announcement retires the answer."""
    settings = redis_settings(cache_local_seconds=30)
    with TestClient(create_app(settings)) as client:
        ingest(client, [record("US")])
        state = client.app_state["trendmap"]
        deadline = time.monotonic() + 5
        while (state.publisher.pending or state.publisher.unsent) and time.monotonic() < deadline:
            time.sleep(0.01)  # the ingest's live snapshots go out before Redis is paused
        first = ask(client)
        kept = operations(client)
        hits = served_kept(client)
        throwaway_redis.pause()
        try:
            assert ask(client) == first  # the store is not asked
            assert served_kept(client) == hits + 1
        finally:
            throwaway_redis.resume()
        seen = state.cache.generation
        with redis.Redis.from_url(throwaway_redis.url) as other_worker:
            announced = other_worker.incr(GENERATION_KEY)
            other_worker.publish(GENERATION_CHANNEL, str(announced))
        deadline = time.monotonic() + 5
        while state.cache.generation == seen and time.monotonic() < deadline:
            time.sleep(0.01)  # the announcement travels through Redis pub/sub
        assert state.cache.generation > seen
        misses = kept.misses
        assert ask(client) == first
        assert kept.misses == misses + 1 and served_kept(client) == hits + 1


def test_credential_classes_do_not_share_answers(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'a.db'}", read_api_keys=(READ_KEY,))
    with TestClient(create_app(settings)) as client:
        statements = Statements(client)
        assert ask(client, key=READ_KEY)["data"]["trends"]["totalCount"] == 0
        ask(client, key=READ_KEY)
        assert statements.taken() > 0
        assert ask(client, key=READ_KEY)["data"]["trends"]["totalCount"] == 0
        assert statements.taken() == 0
        # The write key's first answer is its own, computed.
        assert ask(client, key=WRITE_KEY)["data"]["trends"]["totalCount"] == 0
        assert statements.taken() > 0
        # Without a credential, or with a wrong one, the read is refused every time.
        for key in (None, "not-a-key", None):
            refused = ask(client, key=key)
            assert refused["data"] is None
            assert refused["errors"][0]["extensions"]["status"] == 401


def test_variables_and_operation_names_tell_answers_apart(client: TestClient) -> None:
    ingest(client, [record("US"), record("FR", hours_ago=2)])
    one = ask(client, variables={"n": 1})
    two = ask(client, variables={"n": 2})
    assert len(one["data"]["trends"]["edges"]) == 1
    assert len(two["data"]["trends"]["edges"]) == 2
    assert ask(client, variables={"n": 1}) == one
    assert ask(client, variables={"n": 2}) == two
    both = f"{TRENDS} query Count {{ trends {{ totalCount }} }}"
    named = client.post(
        "/graphql", json={"query": both, "operationName": "Count", "variables": {}}
    ).json()
    assert named == {"data": {"trends": {"totalCount": 2}}}
    other = client.post(
        "/graphql", json={"query": both, "operationName": "Recent", "variables": {"n": 1}}
    ).json()
    assert other == one


def test_mutations_and_errors_are_never_kept(client: TestClient) -> None:
    kept = operations(client)
    mutation = "mutation In($t: [TrendInput!]!) { ingestTrends(trends: $t) { inserted unchanged } }"
    trend = record("US")
    variables = {
        "t": [
            {
                "timestamp": trend["timestamp"],
                "country": "US",
                "topicLabel": trend["topic_label"],
                "count": 1,
                "confidence": 0.5,
            }
        ]
    }
    answers = [ask(client, mutation, variables, key=WRITE_KEY)["data"] for _ in range(2)]
    assert answers == [
        {"ingestTrends": {"inserted": 1, "unchanged": 0}},
        {"ingestTrends": {"inserted": 0, "unchanged": 1}},
    ]
    broken = '{ flows(timeWindow: "2h") { heat } }'
    for _ in range(2):
        assert ask(client, broken)["errors"][0]["extensions"]["code"] == "invalid_parameter"
    assert len(kept) == 0 and kept.stored == 0


def test_a_window_ending_now_expires_with_the_refresh_period(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    fresh = "{ flows { fromCountry } hotspots { country } }"
    pinned = '{ flows(asOf: "2026-11-20T12:00:00Z") { fromCountry } }'
    # Refreshed every microsecond: every answer ending "now" is too old once it is made.
    with TestClient(create_app(make_settings(url, flows_refresh_seconds=1e-6))) as client:
        ingest(client, spread("US", "FR", ["A", "B"], datetime.now(UTC)))
        kept = operations(client)
        assert ask(client, fresh)["data"]["flows"] == [{"fromCountry": "US"}]
        assert len(kept) == 0
        ask(client, pinned)
        assert len(kept) == 1
    with TestClient(create_app(make_settings(url))) as client:
        kept = operations(client)
        ask(client, fresh)
        [entry] = kept._entries.values()
        assert entry.expires_at is not None
        assert 0 < entry.expires_at - datetime.now(UTC).timestamp() <= 30


def test_a_min_generation_ahead_of_the_cache_is_not_answered_from_it(client: TestClient) -> None:
    statements = Statements(client)
    ask(client)
    ask(client)
    statements.taken()
    ask(client, **{"X-Trendmap-Min-Generation": "0"})
    assert statements.taken() == 0
    ask(client, **{"X-Trendmap-Min-Generation": "1000"})
    assert statements.taken() > 0


def test_kept_answers_are_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    # The fast path keeps the bytes it sent within bounds of its own (tests/http/test_fast_path).
    only = make_settings(url, graphql_response_cache_entries=2, fast_path_enabled=False)
    with TestClient(create_app(only)) as client:
        kept = operations(client)
        for n in range(1, 5):
            ask(client, variables={"n": n})
        assert len(kept) == 2
        statements = Statements(client)
        ask(client, variables={"n": 4})
        assert statements.taken() == 0
        ask(client, variables={"n": 1})
        assert statements.taken() > 0
    small = make_settings(url, graphql_response_cache_bytes=1024, fast_path_enabled=False)
    with TestClient(create_app(small)) as client:
        kept = operations(client)
        for n in range(1, 10):
            ask(client, variables={"n": n})
        assert 0 < kept.held_bytes <= 1024


@pytest.mark.parametrize("overrides", [{"use_cache": False}, {"graphql_response_cache_entries": 0}])
def test_turned_off_nothing_is_kept(tmp_path: Path, overrides: dict[str, Any]) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with TestClient(create_app(make_settings(url, **overrides))) as client:
        statements = Statements(client)
        ask(client)
        ask(client)
        assert statements.taken() >= 2
        assert len(operations(client)) == 0


def test_a_kept_answer_is_sent_in_the_media_type_asked(client: TestClient) -> None:
    ask(client)
    for accept, media in [
        ("application/graphql-response+json", "application/graphql-response+json"),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
    ]:
        response = client.post("/graphql", json={"query": TRENDS}, headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert response.json() == {"data": {"trends": {"totalCount": 0, "edges": []}}}
    refused = client.post("/graphql", json={"query": TRENDS}, headers={"Accept": "text/plain"})
    assert refused.status_code == 406


def test_a_persisted_query_by_hash_is_answered_from_the_kept_bytes(client: TestClient) -> None:
    persisted = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(TRENDS.encode()).hexdigest()}
    }
    client.post("/graphql", json={"query": TRENDS, "extensions": persisted})
    statements = Statements(client)
    response = client.get("/graphql", params={"extensions": json.dumps(persisted)})
    assert response.json() == {"data": {"trends": {"totalCount": 0, "edges": []}}}
    assert statements.taken() == 0
