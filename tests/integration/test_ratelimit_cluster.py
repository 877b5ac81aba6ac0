"""Two `trendmap serve` processes sharing one budget through a throwaway redis-server.

Each worker reserves units of a client's budget in chunks (graph/http/ratelimit/reservation.py):
across workers the client is never served more than its quota, it is short of it by less than
(N - 1) x chunk before its first refusal, and Redis sees one reservation a chunk, not one a
request. The processes keep their own SQLite files: the limits never touch the database.
Each test counts against a credential of its own.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from graph.http.ratelimit.reservation import chunk_of
from tests.support.servers import RedisServer, free_port, wait_until_healthy

QUOTA = 40
WORKERS = 2
CHUNK = chunk_of(QUOTA, WORKERS)
TYPENAME = {"query": "{ __typename }"}
KEYS = ("reader-one", "reader-two")
_REMAINING = re.compile(r'"default";r=(\d+);t=(\d+)')


@dataclass
class Workers:
    a: str
    b: str
    redis: RedisServer


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Both processes started at once, for every test here: each test has a credential, and
    so a budget, of its own."""
    server = RedisServer()
    drop = {"REDIS_URL", "FORWARDED_ALLOW_IPS", "DATABASE_URL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        REDIS_URL=server.url,
        API_KEYS=",".join(KEYS),
        LOG_LEVEL="WARNING",
        RATE_LIMIT_PER_MINUTE=str(QUOTA),
        RATE_LIMIT_WORKERS=str(WORKERS),
    )
    ports = [free_port(), free_port()]
    processes = []
    for port in ports:
        cwd = tmp_path_factory.mktemp("worker")
        command = [sys.executable, "-m", "graph", "serve", "--port", str(port)]
        database = {"DATABASE_URL": f"sqlite:///{cwd / 'trendmap.db'}"}
        processes.append(
            subprocess.Popen(
                command,
                cwd=cwd,
                env={**env, **database},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, process in zip(bases, processes, strict=True):
            wait_until_healthy(base, process)
        yield Workers(bases[0], bases[1], server)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=30)
        server.stop()


def reset_stats(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.config_resetstat()
    finally:
        client.close()


def reservations(url: str) -> int:
    """Scripts Redis ran since the stats were reset: the limiter's INCRBY is one."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


def read(http: httpx.Client, base: str, key: str) -> tuple[int, int]:
    """One read with ``key``: its status and the reads budget's remaining units."""
    headers = {"Authorization": f"Bearer {key}"}
    response = http.get(f"{base}/graphql", params=TYPENAME, headers=headers)
    match = _REMAINING.search(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    assert 1 <= int(match.group(2)) <= 60
    return response.status_code, int(match.group(1))


def test_alternating_workers_serve_the_quota_and_no_more(workers: Workers) -> None:
    assert CHUNK == 5
    seen: dict[str, list[int]] = {workers.a: [], workers.b: []}
    statuses = []
    reset_stats(workers.redis.url)
    with httpx.Client(timeout=10) as http:
        for n in range(3 * QUOTA):
            base = (workers.a, workers.b)[n % 2]
            status, remaining = read(http, base, KEYS[0])
            statuses.append(status)
            seen[base].append(remaining)
    assert set(statuses) == {200, 429}
    # The documented bound: never over the quota (and here, with every worker still called,
    # never under it either).
    assert statuses.count(200) == QUOTA
    for remaining in seen.values():
        assert all(x >= y >= 0 for x, y in zip(remaining, remaining[1:], strict=False))
    # One reservation a chunk per worker, then refusals answered by each worker alone.
    assert reservations(workers.redis.url) <= math.ceil(QUOTA / CHUNK) + WORKERS


def test_a_client_sent_to_one_worker_is_refused_no_sooner_than_the_bound(
    workers: Workers,
) -> None:
    key = KEYS[1]
    with httpx.Client(timeout=10) as http:
        assert read(http, workers.b, key)[0] == 200  # b now holds a chunk less one unit
        on_a = [read(http, workers.a, key)[0] for _ in range(QUOTA)]
        served_before_refusal = 1 + on_a.index(429)
        assert served_before_refusal >= QUOTA - (WORKERS - 1) * (CHUNK - 1)
        assert on_a.count(200) == QUOTA - CHUNK
        # The units b holds are still the client's; then b refuses too.
        on_b = [read(http, workers.b, key)[0] for _ in range(CHUNK + 2)]
        assert on_b == [200] * (CHUNK - 1) + [429] * 3
