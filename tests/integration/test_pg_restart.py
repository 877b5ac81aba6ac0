"""PostgreSQL stopped at once (``pg_ctl stop -m immediate``) and started again under load.

A real ``trendmap serve`` process on a throwaway PostgreSQL cluster, with a few concurrent
clients reading and writing all along: every answer is 200 or 503, never a 500, and the
service recovers by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.factories import WRITE_KEY, write_headers
from tests.support.servers import PostgresServer, running_server

CLIENTS = 8
# The status of every answer, by what was asked.
Tally = dict[str, Counter[int]]


def _records(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "timestamp": (now - timedelta(minutes=n % 600, seconds=i)).isoformat(),
            "country": country,
            "topic_label": f"Topic {n % 7}",
            "count": 1 + n % 40,
            "confidence": 0.8,
        }
        for i, country in enumerate(("US", "BR", "FR"))
    ]


ASKS = ("GET /v1/trends", "GET /v1/flows", "GET /health/ready", "POST /v1/trends")


async def _ask(http: httpx.AsyncClient, what: str, n: int) -> httpx.Response:
    if what == "GET /v1/trends":
        return await http.get("/v1/trends", params={"first": 20})
    if what == "GET /v1/flows":
        # A distinct instant for each read: answered from the database, not from a cache.
        as_of = (datetime.now(UTC) - timedelta(seconds=n)).isoformat()
        return await http.get("/v1/flows", params={"as_of": as_of, "threshold": 0.1})
    if what == "GET /health/ready":
        return await http.get("/health/ready")
    return await http.post("/v1/trends", json=_records(n), headers=write_headers())


async def _client(
    base: str, number: int, tally: Tally, counter: itertools.count[int], stop: asyncio.Event
) -> None:
    """Reads and writes in turn until ``stop``; each answer's status goes to ``tally``."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while not stop.is_set():
            n = next(counter)
            what = ASKS[(n + number) % len(ASKS)]
            response = await _ask(http, what, n)
            tally.setdefault(what, Counter())[response.status_code] += 1
            if response.status_code == 500:
                tally.setdefault("500 bodies", Counter())[response.text] += 1


def test_an_immediate_postgres_restart_under_load_is_never_a_500(
    throwaway_postgres: PostgresServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": throwaway_postgres.url,
        "API_KEYS": WRITE_KEY,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ENABLED": "false",
        "DB_CONNECT_TIMEOUT_SECONDS": "2",
    }
    env.pop("REDIS_URL", None)
    with running_server(tmp_path, env) as server:

        async def main() -> tuple[Tally, Tally, Tally, float]:
            before: Tally = {}
            during: Tally = {}
            after: Tally = {}
            counter = itertools.count()

            async def phase(tally: Tally, until: Any) -> None:
                stop = asyncio.Event()
                clients = [
                    asyncio.create_task(_client(server.base, i, tally, counter, stop))
                    for i in range(CLIENTS)
                ]
                try:
                    await until()
                finally:
                    stop.set()
                    await asyncio.gather(*clients)

            def answered(tally: Tally, count: int) -> Any:
                async def wait() -> None:
                    deadline = time.monotonic() + 10
                    while sum(sum(c.values()) for c in tally.values()) < count:
                        assert time.monotonic() < deadline, "the clients got stuck"
                        await asyncio.sleep(0.02)

                return wait

            await phase(before, answered(before, 40))

            async def outage() -> None:
                await asyncio.to_thread(throwaway_postgres.stop)
                # Long enough for every client to be refused a few times.
                await answered(during, sum(sum(c.values()) for c in during.values()) + 20)()
                await asyncio.to_thread(throwaway_postgres.start)

            started = time.monotonic()
            await phase(during, outage)

            async def recovered() -> None:
                deadline = time.monotonic() + 15
                async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
                    while (await http.get("/health/ready")).status_code != 200:
                        assert time.monotonic() < deadline, "did not recover"
                        await asyncio.sleep(0.05)

            await phase(during, recovered)
            took = time.monotonic() - started
            await phase(after, answered(after, 40))
            return before, during, after, took

        before, during, after, took = asyncio.run(main())
        print(f"outage and recovery in {took:.2f} s: {during}")
        for tally in (before, during, after):
            assert "500 bodies" not in tally, tally["500 bodies"]
        statuses = {status for counts in during.values() for status in counts}
        assert statuses <= {200, 503}, during
        assert 503 in statuses  # the outage was seen
        for what, counts in {**before, **after}.items():
            assert set(counts) == {200}, (what, counts)
    # The outage is logged as what it is, never as a crash with a traceback.
    assert "Traceback" not in server.output and '"exception"' not in server.output, server.output
