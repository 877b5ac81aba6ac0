"""Two app processes sharing PostgreSQL and Redis, driven by real clients.

Subscribers connect to one process over both WebSocket subprotocols (through gql); records
are ingested through the other. Redis is a throwaway server the tests can kill and restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from gql.transport.websockets import WebsocketsTransport

from graph.core.records import assigned_country_codes
from tests.support.factories import WRITE_KEY, spread, write_headers
from tests.support.listener import SUBSCRIPTION, Listener
from tests.support.servers import RedisServer, free_port, running_server, wait_until_healthy
from tests.support.slow_peer import SlowPeer


@dataclass
class Cluster:
    a: str
    b: str
    redis: RedisServer
    processes: list[subprocess.Popen[str]]


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Any) -> Iterator[Cluster]:
    from tests.support.servers import empty_archive

    asyncio.run(empty_archive(postgres_url))
    server = RedisServer()
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": server.url,
        "API_KEYS": WRITE_KEY,
        "LOG_LEVEL": "WARNING",
        "SUBSCRIBER_QUEUE_SIZE": "2",
    }
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "graph", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, process in zip(bases, processes, strict=True):
            wait_until_healthy(base, process)
        yield Cluster(bases[0], bases[1], server, processes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)
        server.stop()


def ingest(base: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/trends", json=records, headers=write_headers(), timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def subscriptions(base: str) -> int:
    count: int = httpx.get(f"{base}/health/ready", timeout=5).json()["checks"]["subscriptions"][
        "active"
    ]
    return count


async def _until(condition: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def _subscribed(base: str, count: int) -> None:
    await _until(lambda: subscriptions(base) >= count)


def test_subscribers_on_one_process_get_flows_ingested_through_the_other(
    cluster: Cluster,
) -> None:
    async def main() -> None:
        now = datetime.now(UTC)
        modern = Listener(cluster.a, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
        legacy = Listener(cluster.a, WebsocketsTransport.APOLLO_SUBPROTOCOL)
        filtered = Listener(
            cluster.a, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, countries=["de", "AT"]
        )
        for listener in (modern, legacy, filtered):
            listener.start()
        await _subscribed(cluster.a, 3)

        ingest(cluster.b, spread("FR", "BE", ["Alpha", "Beta", "Gamma"], now))
        await _until(lambda: modern.received and legacy.received)
        late = Listener(cluster.a, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, current=True)
        late.start()
        await _subscribed(cluster.a, 4)
        await _until(lambda: late.received)

        second = spread("DE", "AT", ["Delta", "Epsilon"], now)
        ingest(cluster.b, second)
        assert ingest(cluster.b, second)["unchanged"] == len(second)  # changes nothing
        await _until(
            lambda: len(modern.received) == 2 and filtered.received and len(late.received) == 2
        )
        await asyncio.sleep(1.5)  # anything more would be a duplicate
        for listener in (modern, legacy, filtered, late):
            await listener.stop()

        assert modern.received == [("FR", "BE"), ("DE", "AT")]
        assert legacy.received == [("FR", "BE"), ("DE", "AT")]
        assert filtered.received == [("DE", "AT")]
        assert late.received == [("FR", "BE"), ("DE", "AT")]

    asyncio.run(main())


def test_reads_see_writes_made_through_the_other_process(cluster: Cluster) -> None:
    now = datetime.now(UTC)
    params = {"threshold": 0.5}
    first = httpx.get(f"{cluster.a}/v1/flows", params=params).json()
    cached = httpx.get(f"{cluster.a}/v1/flows", params=params).json()
    assert first["flows"] == cached["flows"] == []
    assert cached["metadata"]["cache_hit"] is True
    # A may serve its own copy for up to CACHE_LOCAL_SECONDS: the write's generation is what
    # makes a read on another process see it (DESIGN.md's session consistency).
    generation = ingest(cluster.b, spread("ES", "PT", ["Uno", "Dos"], now))["generation"]
    after = httpx.get(
        f"{cluster.a}/v1/flows", params={**params, "min_generation": generation}
    ).json()
    assert after["metadata"]["cache_hit"] is False
    assert [(f["from_country"], f["to_country"]) for f in after["flows"]] == [("ES", "PT")]
    on_b = httpx.get(f"{cluster.b}/v1/flows", params=params).json()
    assert on_b["flows"] == after["flows"]
    assert on_b["metadata"]["cache_hit"] is True  # computed once, by A, for both


def test_cache_keys_and_their_ttl(cluster: Cluster) -> None:
    # On the whole minute: explicit instants off CACHE_AS_OF_RESOLUTION_SECONDS are not kept.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ingest(cluster.b, spread("ES", "PT", ["Uno", "Dos"], now))
    as_of = now.isoformat()
    httpx.get(f"{cluster.a}/v1/flows", params={"countries": "pt,es"})
    httpx.get(f"{cluster.a}/v1/flows", params={"as_of": as_of})
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        keys = {k.decode() for k in client.keys("*")}
        from graph.cache.keys import countries_hash

        expected = {
            "trendmap:generation:counter",
            f"flows:24h:{countries_hash(['ES', 'PT'])}",
            "flows:24h:all",
            f"trends:ES:{now.isoformat()}",
            f"trends:PT:{now.isoformat()}",
            f"trends:countries:{now.isoformat()}",
        }
        assert expected <= keys
        # The generation counter alone never expires: it must outlive every entry it labels.
        assert client.ttl("trendmap:generation:counter") == -1
        for key in keys - {"trendmap:generation:counter"}:
            ttl = client.ttl(key)
            assert 0 < ttl <= 24 * 3600, (key, ttl)
    finally:
        client.close()


def test_redis_dying_never_fails_a_read_and_everything_resumes(cluster: Cluster) -> None:
    async def main() -> None:
        now = datetime.now(UTC)
        listener = Listener(cluster.a, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
        listener.start()
        await _subscribed(cluster.a, 1)

        cluster.redis.stop()
        for base in (cluster.a, cluster.b):
            response = httpx.get(f"{base}/v1/flows", timeout=10)
            assert response.status_code == 200
        ready = httpx.get(f"{cluster.a}/health/ready", timeout=10)
        assert ready.status_code == 200
        checks = ready.json()["checks"]
        assert checks["broker"]["state"] == "unavailable"
        assert httpx.get(f"{cluster.a}/v1/hotspots", timeout=10).status_code == 200
        assert httpx.get(f"{cluster.a}/health/ready").json()["checks"]["cache"]["state"] == (
            "degraded"
        )

        cluster.redis.start()
        # Caching resumes by itself once the breaker lets a probe through.
        deadline = time.monotonic() + 20
        while not httpx.get(f"{cluster.a}/v1/flows").json()["metadata"]["cache_hit"]:
            assert time.monotonic() < deadline, "caching did not resume"
            await asyncio.sleep(0.3)
        # And the live channel: the worker resubscribed by itself.
        deadline = time.monotonic() + 20
        topics = ["Rho"]
        while not listener.received:
            assert time.monotonic() < deadline, "no delivery after Redis came back"
            topics.append(f"Rho {len(topics)}")
            ingest(cluster.b, spread("SE", "NO", topics, now))
            await asyncio.sleep(1.0)
        assert listener.received[0] == ("SE", "NO")
        await listener.stop()

    asyncio.run(main())


def test_a_slow_consumer_is_dropped_without_delaying_a_fast_one(cluster: Cluster) -> None:
    """A client that stops reading falls more than SUBSCRIBER_QUEUE_SIZE (2) snapshots behind
    and is dropped; a fast client on the same worker gets every flow meanwhile."""

    async def main() -> None:
        now = datetime.now(UTC)
        countries = sorted(assigned_country_codes())
        topics = [f"{i} " + "long label " * 18 for i in range(10)]

        def records(group: list[str]) -> list[dict[str, Any]]:
            return [
                {
                    "timestamp": (now - timedelta(minutes=60 + countries.index(c))).isoformat(),
                    "country": c,
                    "topic_label": t,
                    "count": 50,
                    "confidence": 0.9,
                }
                for c in group
                for t in topics
            ]

        slow = SlowPeer(cluster.a, SUBSCRIPTION, {"threshold": 0.5})
        fast = Listener(cluster.a, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
        fast.start()
        await _subscribed(cluster.a, 2)
        started = time.monotonic()
        # 70 countries with identical mixes: 2,415 new hot flows of ~2 kB, more than loopback's
        # kernel buffers absorb (~4 MB), so the server's sends to the non-reader stall...
        used = 70
        ingest(cluster.b, records(countries[:used]))
        # ...then each new country is one more snapshot with new flows, until it is dropped.
        while subscriptions(cluster.a) > 1:
            assert used < 100, "the slow subscriber was never dropped"
            # A fast client keeps up: it has every flow so far before the next country comes
            # (under load, reading a 5 MB burst can take the Python client longer than a fixed
            # pause, and a client still holding a burst when the next one comes is slow too).
            so_far = used * (used - 1) // 2
            await _until(lambda n=so_far: len(fast.received) >= n, seconds=60)
            ingest(cluster.b, records([countries[used]]))
            used += 1
        expected = used * (used - 1) // 2
        await _until(lambda: len(fast.received) == expected, seconds=60)
        took = time.monotonic() - started
        await fast.stop()
        assert len(set(fast.received)) == expected
        # Dropped at once; when it reads again, the backlog ends with the server's close (1008).
        try:
            assert await asyncio.to_thread(slow.close_code, 30) == 1008
        finally:
            slow.sock.close()
        print(f"fast subscriber got {expected} flows in {took:.2f} s while the slow one stalled")

    asyncio.run(main())


def test_serve_with_two_workers_shares_cache_and_channel(
    postgres_url: str, throwaway_redis: RedisServer, tmp_path: Any
) -> None:
    """`trendmap serve --workers 2`: subscribers land on either worker; all get every flow."""
    from tests.support.servers import empty_archive

    asyncio.run(empty_archive(postgres_url))
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": throwaway_redis.url,
        "API_KEYS": WRITE_KEY,
        "LOG_LEVEL": "WARNING",
    }
    with running_server(tmp_path, env, "--workers", "2") as server:
        base = server.base

        async def main() -> None:
            now = datetime.now(UTC)
            ingest(base, spread("FR", "BE", ["Alpha", "Beta"], now))
            listeners = [
                Listener(base, protocol, current=True)
                for protocol in [
                    WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
                    WebsocketsTransport.APOLLO_SUBPROTOCOL,
                ]
                * 3
            ]
            for listener in listeners:
                listener.start()
            # Each got the current flow: its subscription is registered, on whichever worker.
            await _until(lambda: all(listener.received for listener in listeners))
            for _ in range(6):  # the ingests land on either worker
                ingest(base, spread("DE", "AT", ["Gamma"], now))
            await _until(lambda: all(len(listener.received) == 2 for listener in listeners))
            await asyncio.sleep(1)
            for listener in listeners:
                await listener.stop()
                assert listener.received == [("FR", "BE"), ("DE", "AT")]
            hits = [httpx.get(f"{base}/v1/flows").json()["metadata"]["cache_hit"] for _ in range(6)]
            assert hits.count(True) >= 5  # one computation served both workers

        asyncio.run(main())
