"""Live flows while Redis is down: two real workers sharing PostgreSQL and a throwaway Redis.

The worker that took an ingest delivers to its own subscribers at once; the other catches up
when Redis returns, each crossing exactly once per subscriber.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gql.transport.websockets import WebsocketsTransport

from tests.support.factories import WRITE_KEY, spread, write_headers
from tests.support.listener import Listener
from tests.support.servers import RedisServer, empty_archive, free_port, wait_until_healthy

Pair = tuple[str, str]


@dataclass
class Worker:
    base: str
    process: subprocess.Popen[str]
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            try:
                lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                lines.append({"event": line, "level": "unparsed"})
        return lines


@dataclass
class Workers:
    a: Worker
    b: Worker
    redis: RedisServer


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[Workers]:
    asyncio.run(empty_archive(postgres_url))
    server = RedisServer()
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": server.url,
        "API_KEYS": WRITE_KEY,
        "LOG_LEVEL": "INFO",
    }
    started: list[Worker] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            # A file, not a pipe: nobody reads the log until the end, and a full pipe would
            # stall the server.
            with log.open("w") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "graph", "serve", "--port", str(port)],
                    cwd=tmp_path,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            started.append(Worker(f"http://127.0.0.1:{port}", process, log))
        for worker in started:
            wait_until_healthy(worker.base, worker.process)
        yield Workers(started[0], started[1], server)
    finally:
        for worker in started:
            worker.process.terminate()
        for worker in started:
            worker.process.wait(timeout=30)
        server.stop()


def ingest(base: str, records: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{base}/v1/trends", json=records, headers=write_headers(), timeout=30)
    assert response.status_code == 200, response.text


def subscriptions(base: str) -> int:
    checks = httpx.get(f"{base}/health/ready", timeout=5).json()["checks"]
    active: int = checks["subscriptions"]["active"]
    return active


async def until(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Wait for ``condition`` at most ``seconds``; how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def test_redis_down_delivers_locally_at_once_and_the_other_worker_catches_up(
    workers: Workers,
) -> None:
    async def main() -> None:
        now = datetime.now(UTC)
        a, b = workers.a, workers.b
        on_a = Listener(a.base, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
        on_b = Listener(b.base, WebsocketsTransport.APOLLO_SUBPROTOCOL)
        on_a.start()
        on_b.start()
        await until(lambda: subscriptions(a.base) == 1, 10, "A's subscription")
        await until(lambda: subscriptions(b.base) == 1, 10, "B's subscription")
        ingest(a.base, spread("ES", "PT", ["Uno", "Dos"], now))
        await until(lambda: on_a.received and on_b.received, 10, "the flow before the outage")

        workers.redis.stop()
        ingest(b.base, spread("DE", "AT", ["Gamma"], now))
        took_b = await until(lambda: ("DE", "AT") in on_b.received, 3, "B's own flow")
        # A's next snapshot holds B's flow too: the archive is shared, only the channel is down.
        ingest(a.base, spread("FR", "BE", ["Alpha"], now))
        took_a = await until(lambda: ("FR", "BE") in on_a.received, 3, "A's own flow")
        ingest(a.base, spread("JP", "KR", ["Anime"], now))
        took_a2 = await until(lambda: ("JP", "KR") in on_a.received, 3, "A's second flow")
        # Nothing can have carried A's flows to B: they travel on the channel that is down.
        assert ("FR", "BE") not in on_b.received and ("JP", "KR") not in on_b.received

        workers.redis.start()
        caught_up = await until(
            lambda: {("FR", "BE"), ("JP", "KR")} <= set(on_b.received), 15, "B catching up"
        )
        # A flow after the outage reaches both: whatever the outage left in flight was sent
        # before it, so a duplicate would be seen by now.
        ingest(b.base, spread("SE", "NO", ["Rho"], now))
        await until(
            lambda: ("SE", "NO") in on_a.received and ("SE", "NO") in on_b.received,
            10,
            "the flow after the outage",
        )
        for listener in (on_a, on_b):
            await listener.stop()
        print(
            f"local delivery while Redis was down: {took_b:.3f} s, {took_a:.3f} s,"
            f" {took_a2:.3f} s; caught up {caught_up:.2f} s after Redis returned"
        )
        expected = {("ES", "PT"), ("DE", "AT"), ("FR", "BE"), ("JP", "KR"), ("SE", "NO")}
        for listener in (on_a, on_b):
            counts = Counter(listener.received)
            assert set(counts) == expected, listener.received
            assert all(n == 1 for n in counts.values()), listener.received
        assert on_a.received[0] == on_b.received[0] == ("ES", "PT")
        assert on_a.received[-1] == on_b.received[-1] == ("SE", "NO")

    asyncio.run(main())
    for worker in (workers.a, workers.b):
        lines = worker.lines()
        failures = [line for line in lines if line.get("level") in ("error", "critical")]
        assert not failures, failures
        assert not [line for line in lines if "exception" in line or "Traceback" in str(line)]
        # One line when the channel goes, one when it is back: not one per round.
        live = Counter(
            line["event"]
            for line in lines
            if "live flows" in str(line.get("event")) or line.get("channel") == "trendmap:flows"
        )
        assert live["live flows not sent to other workers; will retry"] == 1, live
        assert live["live flows sent to other workers again"] == 1, live
        assert live["store subscription lost"] <= 1, live
