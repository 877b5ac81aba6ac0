"""Rate limits: per client and per kind of request, in-process or shared through Redis.

Every test runs the app on SQLite (the limits never touch the database). Redis is
``TEST_REDIS_URL``, flushed before each test that uses it; the outage test kills and restarts
a redis-server of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import os
import re
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from httpx import Response
from starlette.applications import Starlette
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message, Receive, Scope, Send

from graph.auth import Access, _known, header_credential
from graph.core.errors import Unauthenticated
from graph.http.app import create_app
from graph.http.middleware.ratelimit import RateLimitMiddleware
from graph.http.ratelimit.cost import Cost, is_mutation, request_cost
from graph.http.ratelimit.limiter import RateLimiter, client_of
from graph.http.ratelimit.local import LocalCounts
from graph.http.ratelimit.reservation import chunk_of
from graph.http.ratelimit.usage import Usage
from graph.observability.log import configure_logging
from graph.stores import open_store
from graph.stores.memory import MemoryStore
from tests.support.factories import TEST_REDIS_URL, WRITE_KEY, make_settings, record, write_headers
from tests.support.servers import RedisServer, running_server

TYPENAME = {"query": "{ __typename }"}
MUTATION = "mutation { ingestTrends(trends: []) { received } }"
_ITEM = re.compile(r'"(\w+)";r=(\d+);t=(\d+)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trendmap.db'}"


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    client.close()
    return TEST_REDIS_URL


def serve(url: str, **overrides: Any) -> TestClient:
    return TestClient(create_app(make_settings(url, **overrides)))


def read(client: TestClient, **headers: str) -> Response:
    """A read that touches neither the database nor the cache."""
    return client.get("/graphql", params=TYPENAME, headers=headers)


def remaining(response: Response) -> dict[str, int]:
    """Each policy's ``r`` in the RateLimit header, after checking its ``t`` is sane."""
    items = _ITEM.findall(response.headers["RateLimit"])
    assert items, response.headers["RateLimit"]
    for _, _, reset in items:
        assert 1 <= int(reset) <= 60
    return {policy: int(left) for policy, left, _ in items}


def counters(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        return {k.decode(): int(client.get(k) or 0) for k in client.keys("ratelimit:*")}
    finally:
        client.close()


def limiter_of(app: Starlette) -> RateLimiter:
    [limiter] = [m.kwargs["limiter"] for m in app.user_middleware if m.cls is RateLimitMiddleware]
    assert isinstance(limiter, RateLimiter)
    return limiter


# What a request costs: plain functions.


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("mutation { a }", True),
        ("  # why\n\t,mutation M($x: Int) { a(x: $x) }", True),
        ("\ufeffmutation{a}", True),
        ("query A { a } mutation B { b }", True),
        ("{ a }", False),
        ("query { a }", False),
        ('{ a(note: "mutation") }', False),
        ('query Q($m: String = "mutation") { a }', False),
        ("# mutation\nquery { a }", False),
        ("subscription { mutation }", False),
        ("fragment F on Mutation { a } query { ...F }", False),
    ],
)
def test_a_mutation_is_found_by_its_keyword(document: str, expected: bool) -> None:
    assert is_mutation(document) is expected


@pytest.mark.parametrize(
    ("method", "path", "query_string", "body", "cost"),
    [
        ("POST", "/v1/trends", b"", None, Cost(writes=1)),
        ("GET", "/v1/trends", b"", None, Cost(reads=1)),
        ("GET", "/graphql", b"query=%7B%20a%20%7D", None, Cost(reads=1)),
        ("GET", "/graphql", b"query=mutation%20%7B%20a%20%7D", None, Cost(writes=1)),
        ("POST", "/graphql", b"", b'{"query": "{ a }"}', Cost(reads=1)),
        ("POST", "/graphql", b"", b'{"query": "mutation { a }"}', Cost(writes=1)),
        ("POST", "/graphql", b"", b'{"query": "\\u006dutation { a }"}', Cost(writes=1)),
        (
            "POST",
            "/graphql",
            b"",
            b' [{"query": "{ a }"}, {"query": "mutation { a }"}, {"query": "{ b }"}]',
            Cost(reads=2, writes=1),
        ),
        ("POST", "/graphql", b"", b"[]", Cost(reads=1)),
        ("POST", "/graphql", b"", b"[not json", Cost(reads=1)),
        ("POST", "/graphql", b"", None, Cost(reads=1)),
    ],
)
def test_what_a_request_costs(
    method: str, path: str, query_string: bytes, body: bytes | None, cost: Cost
) -> None:
    assert request_cost(method, path, query_string, body) == cost


# The middleware in the app, counting in-process.


def test_the_limit_is_accepted_and_one_more_request_is_refused(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=5) as client:
        for n in range(5):
            response = read(client) if n % 2 else client.get("/v1/hotspots")
            assert response.status_code == 200, response.text
            assert response.headers["RateLimit-Policy"] == '"default";q=5;w=60'
            assert remaining(response) == {"default": 4 - n}
        refused = read(client)
        assert refused.status_code == 429
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= 60
        assert refused.headers["RateLimit-Policy"] == '"default";q=5;w=60'
        assert refused.headers["RateLimit"] == f'"default";r=0;t={retry}'
        body = refused.json()
        assert body["error"] == "rate_limited"
        assert "5 requests a minute" in body["detail"]
        assert body["request_id"] == refused.headers["X-Request-ID"]
        assert body["timestamp"]
        assert client.get("/v1/hotspots").status_code == 429


def test_each_credential_has_its_own_budget_and_made_up_ones_share_the_address(
    sqlite_url: str,
) -> None:
    keys = ("reader-a", "reader-b")
    with serve(sqlite_url, rate_limit_per_minute=2, read_api_keys=keys) as client:
        a = {"Authorization": "Bearer reader-a"}
        assert [read(client, **a).status_code for _ in range(3)] == [200, 200, 429]
        assert read(client, Authorization="Bearer reader-b").status_code == 200
        # Unknown tokens are 401s counted against the address, not a fresh budget each.
        first = read(client, Authorization="Bearer made-up-1")
        assert first.status_code != 429 and remaining(first) == {"default": 1}
        assert read(client).status_code != 429
        assert read(client, Authorization="Bearer made-up-2").status_code == 429


def test_writes_have_a_budget_of_their_own(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=3, rate_limit_writes_per_minute=2) as client:
        posted = client.post("/v1/trends", json=[record()], headers=write_headers())
        assert posted.status_code == 200, posted.text
        assert posted.headers["RateLimit-Policy"] == '"writes";q=2;w=60'
        assert remaining(posted) == {"writes": 1}
        commented = f"# ingest nothing\n  {MUTATION}"
        mutated = client.post("/graphql", json={"query": commented}, headers=write_headers())
        assert remaining(mutated) == {"writes": 0}
        refused = client.post("/v1/trends", json=[record()], headers=write_headers())
        assert refused.status_code == 429
        assert refused.headers["RateLimit-Policy"] == '"writes";q=2;w=60'
        assert "2 writes a minute" in refused.json()["detail"]
        # A mutation behind a query, or over GET, is still a write.
        hidden = {
            "query": "query A { __typename } mutation B { ingestTrends(trends: []) { received } }",
            "operationName": "B",
        }
        assert client.post("/graphql", json=hidden, headers=write_headers()).status_code == 429
        over_get = client.get("/graphql", params={"query": MUTATION}, headers=write_headers())
        assert over_get.status_code == 429
        # The reads were not spent by any of it.
        assert remaining(read(client)) == {"default": 2}


def test_a_graphql_batch_costs_one_per_operation(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=5) as client:
        mixed = client.post("/graphql", json=[TYPENAME, {"query": MUTATION}])
        assert mixed.status_code == 400  # batching is off; the operations still count
        assert mixed.headers["RateLimit-Policy"] == '"default";q=5;w=60, "writes";q=60;w=60'
        assert remaining(mixed) == {"default": 4, "writes": 59}
        # The body the middleware read is still there for the app.
        single = client.post("/graphql", json=TYPENAME)
        assert single.json() == {"data": {"__typename": "Query"}}
        assert remaining(single) == {"default": 3}
        batch = client.post("/graphql", json=[TYPENAME] * 3)
        assert batch.status_code == 400
        assert remaining(batch) == {"default": 0}
        assert client.post("/graphql", json=TYPENAME).status_code == 429


def test_a_body_over_the_limit_costs_one_and_is_still_refused_as_too_large(
    sqlite_url: str,
) -> None:
    with serve(sqlite_url, rate_limit_per_minute=5, max_body_bytes=1024) as client:
        batch = orjson.dumps([TYPENAME] * 100)
        assert len(batch) > 1024
        response = client.post(
            "/graphql", content=batch, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert remaining(response) == {"default": 4}


def test_health_checks_and_the_openapi_document_are_free(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=1) as client:
        for path in ("/health", "/health/ready", "/openapi.json") * 3:
            response = client.get(path)
            assert response.status_code == 200, path
            assert "RateLimit" not in response.headers
        assert remaining(read(client)) == {"default": 0}
        assert read(client).status_code == 429
        assert client.get("/health").status_code == 200


def test_rate_limits_can_be_turned_off(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=1, rate_limit_enabled=False) as client:
        for _ in range(3):
            response = read(client)
            assert response.status_code == 200
            assert "RateLimit" not in response.headers


def test_x_forwarded_for_counts_only_when_trusted(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=1) as client:
        assert read(client, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
        assert read(client, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 429
    with serve(sqlite_url, rate_limit_per_minute=1, trust_forwarded_for=True) as client:
        chain = {"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
        assert read(client, **chain).status_code == 200
        assert read(client, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 200
        # Only the last entry, the proxy's, names the client; the first is the client's own.
        assert read(client, **{"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        assert read(client, **{"X-Forwarded-For": "10.0.0.1, 203.0.113.1"}).status_code == 429
        # Without a usable header, the peer's address.
        assert read(client).status_code == 200
        assert read(client, **{"X-Forwarded-For": "unknown"}).status_code == 429


def test_a_websocket_upgrade_costs_one_and_over_the_limit_gets_a_429(sqlite_url: str) -> None:
    with serve(sqlite_url, rate_limit_per_minute=2) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init"})
            assert ws.receive_json()["type"] == "connection_ack"
        assert remaining(read(client)) == {"default": 0}
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]),
        ):
            pass
        assert denied.value.status_code == 429
        assert int(denied.value.headers["Retry-After"]) >= 1
        assert remaining(denied.value) == {"default": 0}
        assert denied.value.json()["error"] == "rate_limited"


# The middleware on its own, for what the test client cannot do.


def call(app: Any, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Run an ASGI app on one connection; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def scope_of(client: TestClient, kind: str, **extra: Any) -> Scope:
    return {
        "type": kind,
        "path": "/graphql",
        "query_string": b"",
        "headers": [],
        "client": ("192.0.2.9", 1234),
        "state": {"trendmap": client.app_state["trendmap"]},
        **extra,
    }


def test_without_denial_responses_a_websocket_is_closed_before_it_is_accepted(
    sqlite_url: str,
) -> None:
    async def accept(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    middleware = RateLimitMiddleware(accept)
    with serve(sqlite_url, rate_limit_per_minute=1) as client:
        connect = [{"type": "websocket.connect"}]
        accepted = call(middleware, scope_of(client, "websocket"), list(connect))
        assert accepted[0]["type"] == "websocket.accept"
        assert remaining(Response(101, headers=accepted[0]["headers"])) == {"default": 0}
        refused = call(middleware, scope_of(client, "websocket"), list(connect))
        assert refused == [{"type": "websocket.close", "code": 1008, "reason": "rate limited"}]


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with the body received, or ``disconnected``."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            body = b"disconnected"
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def chunked(*chunks: bytes) -> list[Message]:
    last = len(chunks) - 1
    return [
        {"type": "http.request", "body": chunk, "more_body": n < last}
        for n, chunk in enumerate(chunks)
    ]


def test_a_body_read_in_chunks_is_replayed_whole(sqlite_url: str) -> None:
    middleware = RateLimitMiddleware(echo)
    chunks = [b'[{"query": "{ a }"},', b' {"query": "mutation', b' { b }"}]']
    with serve(sqlite_url) as client:
        sent = call(middleware, scope_of(client, "http", method="POST"), chunked(*chunks))
    assert sent[1]["body"] == b"".join(chunks)
    assert (b"ratelimit-policy", b'"default";q=600;w=60, "writes";q=60;w=60') in sent[0]["headers"]


def test_a_body_past_the_limit_or_cut_short_costs_one_and_reaches_the_app(
    sqlite_url: str,
) -> None:
    """The middleware stops reading past MAX_BODY_BYTES; the app gets what it read and the rest."""
    middleware = RateLimitMiddleware(echo)
    chunks = [b"[" + b" " * 799, b" " * 800, b" " * 800 + b"]"]
    with serve(sqlite_url, max_body_bytes=1024) as client:
        post = scope_of(client, "http", method="POST")
        sent = call(middleware, post, chunked(*chunks))
        assert sent[1]["body"] == b"".join(chunks)
        assert remaining(Response(200, headers=sent[0]["headers"])) == {"default": 599}
        cut = call(middleware, post, [{"type": "http.disconnect"}])
        assert cut[1]["body"] == b"disconnected"
        assert remaining(Response(200, headers=cut[0]["headers"])) == {"default": 598}


# Through Redis.


def test_counts_live_in_redis_under_the_digest_of_the_credential(
    sqlite_url: str, redis_url: str
) -> None:
    with serve(sqlite_url, redis_url=redis_url, rate_limit_per_minute=3) as client:
        for _ in range(3):
            assert read(client, **write_headers()).status_code == 200
        assert read(client, **write_headers()).status_code == 429
        digest = hashlib.sha256(WRITE_KEY.encode()).hexdigest()
        # The third request took the counter to the quota: the refusal asked Redis nothing.
        assert counters(redis_url) == {f"ratelimit:default:key:{digest}": 3}
        raw = redis.Redis.from_url(redis_url)
        try:
            assert all(WRITE_KEY.encode() not in key for key in raw.keys("*"))
            assert 0 < raw.pttl(f"ratelimit:default:key:{digest}") <= 60_000
        finally:
            raw.close()


def test_a_credential_names_one_client_however_its_header_is_spelled() -> None:
    """The front door reads a configured key's client from its plain ``Bearer <key>`` header
    without parsing or hashing it again; every spelling still names the same client, a bad
    token none, and only configured keys are remembered, one header each."""
    settings = make_settings("sqlite://", api_keys=(WRITE_KEY,), read_api_keys=("reader-key",))
    digest = hashlib.sha256(WRITE_KEY.encode()).hexdigest()
    spellings = [f"Bearer {WRITE_KEY}", f"bearer  {WRITE_KEY} ", f"BEARER {WRITE_KEY}"]
    for authorization in spellings * 2:
        assert header_credential(authorization, settings) == (f"key:{digest}", Access.WRITE)
        scope = {"headers": [(b"authorization", authorization.encode())], "client": ("10.0.0.1", 1)}
        assert client_of(scope, settings) == f"key:{digest}"
    reader = header_credential("Bearer reader-key", settings)
    assert reader is not None and reader[1] is Access.READ
    assert header_credential(None, settings) is None
    assert header_credential("", settings) is None
    for n in range(100):
        with pytest.raises(Unauthenticated):
            header_credential(f"Bearer made-up-{n}", settings)
        scope = {
            "headers": [(b"authorization", f"Bearer made-up-{n}".encode())],
            "client": ("10.0.0.1", 1),
        }
        assert client_of(scope, settings) == "ip:10.0.0.1"
    assert _known(settings).by_header.keys() == {f"Bearer {WRITE_KEY}", "Bearer reader-key"}


def test_two_instances_share_their_counts(sqlite_url: str, redis_url: str) -> None:
    settings = {"redis_url": redis_url, "rate_limit_per_minute": 4}
    with serve(sqlite_url, **settings) as first, serve(sqlite_url, **settings) as second:
        assert [read(first).status_code for _ in range(2)] == [200, 200]
        assert remaining(read(second)) == {"default": 1}
        assert read(second).status_code == 200
        assert read(second).status_code == 429
        assert read(first).status_code == 429


def test_a_redis_outage_falls_back_to_counting_in_process(
    sqlite_url: str, throwaway_redis: RedisServer
) -> None:
    settings = make_settings(sqlite_url, redis_url=throwaway_redis.url, rate_limit_per_minute=3)
    app = create_app(settings)
    # Probe Redis again after 0.2 s rather than 5, to keep the test short.
    limiter_of(app).breaker.reset_seconds = 0.2
    with TestClient(app) as client:
        assert read(client).status_code == 200
        assert counters(throwaway_redis.url) == {"ratelimit:default:ip:testclient": 1}

        throwaway_redis.stop()
        started = time.monotonic()
        assert [read(client).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert time.monotonic() - started < 2.0

        throwaway_redis.start()
        time.sleep(0.3)  # the breaker's reset: the next request probes Redis
        assert [read(client).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert counters(throwaway_redis.url) == {"ratelimit:default:ip:testclient": 3}


def _served_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "FORWARDED_ALLOW_IPS"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 's.db'}", LOG_LEVEL="WARNING", **settings)
    return env


def test_a_served_process_never_takes_the_client_address_from_a_forged_header(
    tmp_path: Path,
) -> None:
    """A real `trendmap serve` on loopback: a new X-Forwarded-For per request is no new budget
    unless FORWARDED_ALLOW_IPS names the peer as a proxy."""
    env = _served_env(tmp_path, RATE_LIMIT_PER_MINUTE="3", TRUST_FORWARDED_FOR="false")
    with running_server(tmp_path, env) as server:
        spoofed = [
            httpx.get(
                f"{server.base}/graphql",
                params=TYPENAME,
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            for i in range(5)
        ]
        assert [r.status_code for r in spoofed] == [200, 200, 200, 429, 429]
        assert spoofed[-1].json()["error"] == "rate_limited"

    env = _served_env(tmp_path, RATE_LIMIT_PER_MINUTE="1", FORWARDED_ALLOW_IPS="127.0.0.1")
    with running_server(tmp_path, env) as server:

        def get(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            return httpx.get(f"{server.base}/graphql", params=TYPENAME, headers=headers).status_code

        # The operator named loopback as a proxy: each forwarded client has its own budget.
        assert [get("198.51.100.1"), get("198.51.100.2"), get("198.51.100.1")] == [200, 200, 429]


# Reserving from a shared store: the limiter on its own, with a store of the test's own.


class SharedCounter(MemoryStore):
    """The in-process store posing as a shared one, so the limiter reserves from it in chunks,
    on the test's clock; it counts the limiter's round trips."""

    kind = "redis"

    def __init__(self, clock: list[float]) -> None:
        super().__init__(clock=lambda: clock[0])
        self.hits = 0

    async def hit(self, key: str, window_seconds: float, cost: int) -> tuple[int, float]:
        self.hits += 1
        return await super().hit(key, window_seconds, cost)


def spend_each(
    requests: Iterable[tuple[RateLimiter, MemoryStore, str]], **limits: Any
) -> list[Usage]:
    """One-unit reads, one after the other, each by (worker, store, client): the reads budget
    after each."""
    settings = make_settings("sqlite://", **limits)

    async def run() -> list[Usage]:
        return [
            (await limiter.spend(store, settings, client, Cost(reads=1)))[0]
            for limiter, store, client in requests
        ]

    return asyncio.run(run())


def test_a_steady_stream_asks_the_store_once_a_chunk() -> None:
    """Quota 1,000 shared by 2 workers: chunks of 125, so 8 round trips serve the quota, and
    the refusals after it ask the store nothing."""
    clock = [0.0]
    store = SharedCounter(clock)
    limiter = RateLimiter(clock=lambda: clock[0])
    assert chunk_of(1000, 2) == 125
    stream = [(limiter, store, "ip:a")] * 1100
    usages = spend_each(stream, rate_limit_per_minute=1000, rate_limit_workers=2)
    assert [u.exceeded for u in usages] == [False] * 1000 + [True] * 100
    assert store.hits == math.ceil(1000 / 125)
    left = [u.remaining for u in usages]
    assert left[:3] == [999, 998, 997] and left[999:] == [0] * 101
    assert all(a > b for a, b in itertools.pairwise(left[:1000]))
    assert all(u.reset == 60 for u in usages)


def test_concurrent_requests_share_one_reservation() -> None:
    clock = [0.0]
    store = SharedCounter(clock)
    limiter = RateLimiter(clock=lambda: clock[0])
    settings = make_settings("sqlite://", rate_limit_per_minute=1000, rate_limit_workers=2)

    async def run() -> list[list[Usage]]:
        spends = (limiter.spend(store, settings, "ip:a", Cost(reads=1)) for _ in range(100))
        return await asyncio.gather(*spends)

    usages = asyncio.run(run())
    # One reservation for all of them; the next chunk, once they ran it low, in the background.
    assert store.hits == 2
    assert sorted(u.remaining for [u] in usages) == list(range(900, 1000))


def test_workers_sharing_a_store_never_serve_more_than_the_quota() -> None:
    """Alternating between two workers, the client gets exactly its quota; sent to one worker
    while the other holds units, it is refused no sooner than the documented bound."""
    clock = [0.0]
    store = SharedCounter(clock)
    a, b = (RateLimiter(clock=lambda: clock[0]) for _ in range(2))
    limits = {"rate_limit_per_minute": 100, "rate_limit_workers": 2}
    chunk = chunk_of(100, 2)
    assert chunk == 12

    alternating = spend_each([(a, store, "ip:a"), (b, store, "ip:a")] * 150, **limits)
    assert sum(not u.exceeded for u in alternating) == 100
    assert store.hits <= math.ceil(100 / chunk) + 2

    # Worker b reserves a chunk and spends one unit of it; a serves the rest of the quota.
    assert not spend_each([(b, store, "ip:b")], **limits)[0].exceeded
    alone = spend_each([(a, store, "ip:b")] * 150, **limits)
    first_refusal = [u.exceeded for u in alone].index(True)
    assert 1 + first_refusal >= 100 - (2 - 1) * (chunk - 1)
    assert sum(not u.exceeded for u in alone) == 100 - chunk
    # The units b still holds are the client's.
    rest = spend_each([(b, store, "ip:b")] * 20, **limits)
    assert sum(not u.exceeded for u in rest) == chunk - 1


def test_spending_in_process_reserves_the_next_chunk_before_the_units_run_out() -> None:
    """The front door's path (``spend_now``) makes no store round trip and never waits for
    one: once fewer than half a chunk is left, the next is reserved in the background, so a
    steady stream never runs dry (and never piles up behind one reservation)."""
    clock = [0.0]
    store = SharedCounter(clock)
    limiter = RateLimiter(clock=lambda: clock[0])
    settings = make_settings("sqlite://", rate_limit_per_minute=1000, rate_limit_workers=2)
    assert chunk_of(1000, 2) == 125

    async def run() -> int:
        await limiter.spend(store, settings, "ip:a", Cost(reads=1))  # the first reservation
        served = 1
        while served < 600:
            if limiter.spend_now(store, settings, "ip:a", Cost(reads=1)) is None:
                break
            served += 1
            await asyncio.sleep(0)  # what a server does between requests: the loop runs
        return served

    assert asyncio.run(run()) == 600
    assert store.hits <= math.ceil(600 / 125) + 1

    async def burst() -> int:
        """Requests between which the loop never runs: still one refill in flight."""
        before = store.hits
        for _ in range(100):
            limiter.spend_now(store, settings, "ip:b", Cost(reads=1)) or await limiter.spend(
                store, settings, "ip:b", Cost(reads=1)
            )
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return store.hits - before

    assert asyncio.run(burst()) == 2  # the first reservation, and one refill


class DistantCounter(SharedCounter):
    """A shared counter whose every answer takes a few turns of the loop, as Redis's does
    under load."""

    async def hit(self, key: str, window_seconds: float, cost: int) -> tuple[int, float]:
        for _ in range(5):
            await asyncio.sleep(0)
        return await super().hit(key, window_seconds, cost)


def test_spending_the_usual_way_reserves_the_next_chunk_before_the_units_run_out() -> None:
    """A request that the front door leaves to the stack (``spend``) refills in the background
    too: after the first reservation, a steady stream never waits for the store."""
    clock = [0.0]
    store = DistantCounter(clock)
    limiter = RateLimiter(clock=lambda: clock[0])
    settings = make_settings("sqlite://", rate_limit_per_minute=1000, rate_limit_workers=2)

    async def run() -> list[int]:
        await limiter.spend(store, settings, "ip:a", Cost(reads=1))  # the first reservation
        waited = []
        for n in range(600):
            spending = asyncio.ensure_future(limiter.spend(store, settings, "ip:a", Cost(reads=1)))
            await asyncio.sleep(0)  # one turn: enough unless it waits for the store
            if not spending.done():
                waited.append(n)
            assert not (await spending)[0].exceeded
        return waited

    assert asyncio.run(run()) == []
    assert store.hits <= math.ceil(601 / chunk_of(1000, 2)) + 1


def test_workers_refilling_in_the_background_never_serve_more_than_the_quota() -> None:
    clock = [0.0]
    store = SharedCounter(clock)
    workers = [RateLimiter(clock=lambda: clock[0]) for _ in range(2)]
    settings = make_settings("sqlite://", rate_limit_per_minute=100, rate_limit_workers=2)

    async def run() -> list[bool]:
        refused = []
        for n in range(300):
            limiter = workers[n % 2]
            usages = limiter.spend_now(store, settings, "ip:a", Cost(reads=1))
            if usages is None:  # the usual way, as the front door leaves it to the stack
                usages = await limiter.spend(store, settings, "ip:a", Cost(reads=1))
            refused.append(usages[0].exceeded)
            await asyncio.sleep(0)
        return refused

    refused = asyncio.run(run())
    assert refused.count(False) == 100  # the whole quota, and not one more
    # The documented bound: short by less than (N - 1) x 1.5 chunks at the first refusal.
    assert refused.index(True) >= 100 - (2 - 1) * 1.5 * chunk_of(100, 2)


def test_units_reserved_in_one_window_are_not_spent_in_the_next() -> None:
    clock = [0.0]
    store = SharedCounter(clock)
    limiter = RateLimiter(clock=lambda: clock[0])
    limits = {"rate_limit_per_minute": 100, "rate_limit_workers": 1}
    [first] = spend_each([(limiter, store, "ip:a")], **limits)
    assert first.remaining == 99 and store.hits == 1
    clock[0] = 59.5
    [later] = spend_each([(limiter, store, "ip:a")], **limits)
    assert (later.remaining, later.reset, store.hits) == (98, 1, 1)
    clock[0] = 60.0
    [fresh] = spend_each([(limiter, store, "ip:a")], **limits)
    assert (fresh.remaining, fresh.reset, store.hits) == (99, 60, 2)


def test_a_request_costing_more_than_a_chunk_reserves_what_it_costs() -> None:
    clock = [0.0]
    store = SharedCounter(clock)
    limiter = RateLimiter(clock=lambda: clock[0])
    settings = make_settings("sqlite://", rate_limit_per_minute=100, rate_limit_workers=5)

    async def run(cost: int) -> Usage:
        return (await limiter.spend(store, settings, "ip:a", Cost(reads=cost)))[0]

    assert chunk_of(100, 5) == 5
    assert asyncio.run(run(30)).remaining == 70
    # 70 units were left: the store grants them, and they are too few.
    assert asyncio.run(run(80)).exceeded
    # They are still the client's, for smaller requests.
    assert [asyncio.run(run(35)).exceeded for _ in range(2)] == [False, False]
    assert asyncio.run(run(1)).exceeded
    # The two reservations, and the refill the last units asked for (none left to grant).
    assert store.hits == 3


def test_the_clients_a_worker_tracks_are_bounded() -> None:
    """RATE_LIMIT_MAX_CLIENTS caps both tables; a forgotten client loses the units it held
    and gets none back, so being forgotten never lets it past its quota."""
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    shared, local = SharedCounter(clock), MemoryStore(clock=lambda: clock[0])
    many = [(limiter, store, f"ip:{n}") for n in range(500) for store in (shared, local)]
    spend_each(many, rate_limit_max_clients=50)
    assert len(limiter.reservations.table) == 50
    assert len(limiter.local.table) == 50

    limits = {"rate_limit_per_minute": 10, "rate_limit_workers": 1, "rate_limit_max_clients": 1}
    assert chunk_of(10, 1) == 2
    usages = spend_each([(limiter, shared, "ip:x"), (limiter, shared, "ip:y")] * 30, **limits)
    # Each reservation of 2 serves one request before the other client evicts it.
    assert sum(not u.exceeded for u in usages[0::2]) == 5
    assert sum(not u.exceeded for u in usages[1::2]) == 5
    assert len(limiter.reservations.table) == 1


def test_ended_windows_leave_the_table_as_traffic_goes_on() -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    store = MemoryStore(clock=lambda: clock[0])
    spend_each([(limiter, store, f"ip:{n}") for n in range(100)])
    clock[0] = 61.0
    spend_each([(limiter, store, f"ip:new-{n}") for n in range(60)])
    assert len(limiter.local.table) == 60


def test_an_outage_met_by_many_clients_at_once_is_one_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every client's reservation fails together (one pipeline to a dead Redis): each falls
    back to counting in-process, and the operator reads about it once, not once per client."""
    configure_logging("INFO")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    store = open_store(f"redis://127.0.0.1:{port}/0")
    limiter = RateLimiter()
    settings = make_settings("sqlite://", rate_limit_per_minute=5)

    async def run() -> list[list[Usage]]:
        try:
            spends = (
                limiter.spend(store, settings, f"ip:10.0.0.{i}", Cost(reads=1)) for i in range(50)
            )
            return await asyncio.gather(*spends)
        finally:
            await store.close()

    capsys.readouterr()
    usages = asyncio.run(run())
    assert [u.remaining for [u] in usages] == [4] * 50  # counted in-process, each on its own
    logged = [orjson.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [line["event"] for line in logged] == ["rate limits counted in-process"]


def test_a_new_window_never_resets_later_than_its_length() -> None:
    """At some clock readings (now + 60) - now is 60 and an ulp; the header still says 60."""
    instant = 8161.962517661547
    assert (instant + 60) - instant > 60  # the reading this test is about
    counts = LocalCounts(clock=lambda: instant)
    usage = counts.spend("reads:key:a", "default", 10, 1)
    assert usage.reset == 60
