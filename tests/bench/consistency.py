"""Benchmark i: read-your-writes across two workers, and how stale a read without the token is.

Two ``trendmap serve`` processes (A and B) on one throwaway PostgreSQL database and one
throwaway redis-server, both keeping a local copy (``CACHE_LOCAL_SECONDS``). One client,
sequentially, writes through A and reads FR's hotspot (a sliding 24 h window, cached) through B.
Every write replaces the same FR record (same timestamp, country and topic) with a count one
higher, so FR's volume equals the number of writes so far: a read shows the write when its
volume reaches it. The archive stays one row, so a read after a write recomputes a tiny window
and the pairs measure consistency, not computation (a new topic per write made the window grow
to 20,000 records). Each write must answer that it inserted or updated a row, or the generation
would not move and the pair would mean nothing.

- with the token (10,000 pairs): the read carries ``X-Trendmap-Min-Generation`` with the
  generation the write answered; it is satisfied when it shows the write. Target: 100 %.
- without it (another 10,000 pairs, alternating with those): the read is repeated until it
  shows the write; its staleness is the time from the write's answer to the start of the
  first read that shows it (0 when the first read does). Reported: p50, p99 and max, against
  the bound ``CACHE_LOCAL_SECONDS``.

A measurement, not a test (it is not collected by pytest):

    python -m tests.bench.consistency                  # 10,000 + 10,000 pairs
    python -m tests.bench.consistency --pairs 500      # a quick look (500 + 500)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    ADMIN_URL,
    API_KEY,
    BenchError,
    Row,
    Server,
    percentile,
    print_table,
    throwaway_database_sync,
    throwaway_redis,
)

PAIRS = 10_000
QUICK_PAIRS = 500
LOCAL_SECONDS = 1.0
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


class Session:
    """The client: writes through A, reads through B."""

    def __init__(self, http: httpx.AsyncClient, a: str, b: str) -> None:
        self.http, self.a, self.b = http, a, b
        self.written = 0
        # One natural key for the whole run: well inside the 24 h window for hours.
        self.moment = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    async def write(self) -> int:
        """Replace FR's one record with count ``written + 1``; answer the write's generation."""
        record = {
            "timestamp": self.moment,
            "country": "FR",
            "topic_label": "Consistency",
            "count": self.written + 1,
            "confidence": 1.0,
        }
        response = await self.http.post(f"{self.a}/v1/trends", json=[record], headers=HEADERS)
        if response.status_code != 200:
            raise BenchError(f"write refused: {response.status_code} {response.text}")
        answer = response.json()
        if answer["inserted"] + answer["updated"] != 1:
            raise BenchError(f"write {self.written + 1} changed nothing: {answer}")
        self.written += 1
        generation: int = answer["generation"]
        return generation

    async def volume(self, **headers: str) -> int:
        response = await self.http.get(
            f"{self.b}/v1/hotspots", params={"countries": "FR"}, headers=headers
        )
        if response.status_code != 200:
            raise BenchError(f"read refused: {response.status_code} {response.text}")
        hotspots = response.json()["hotspots"]
        return int(hotspots[0]["volume"]) if hotspots else 0


async def measure(
    a: str, b: str, pairs: int, untokened: int, local_seconds: float
) -> tuple[int, int, list[float]]:
    """Reads with the token that showed the write, reads made with it (``pairs``), and the
    staleness (s) of each of ``untokened`` reads without it; the two kinds alternate."""
    satisfied = asked = 0
    staleness: list[float] = []
    async with httpx.AsyncClient(timeout=10) as http:
        session = Session(http, a, b)
        await session.volume()  # B's copy holds an answer from the start
        both = min(pairs, untokened)
        kinds = [True, False] * both + [True] * (pairs - both) + [False] * (untokened - both)
        for i, with_token in enumerate(kinds):
            generation = await session.write()
            if with_token:
                asked += 1
                token = {"X-Trendmap-Min-Generation": str(generation)}
                satisfied += await session.volume(**token) >= session.written
            else:
                # From the write's answer to the start of the first read that shows it
                # (sequential reads: every read started before that one showed older data).
                written = asked_at = time.perf_counter()
                while await session.volume() < session.written:
                    asked_at = time.perf_counter()
                    if asked_at - written > local_seconds + 10:
                        raise BenchError("B never showed a write made through A")
                staleness.append(asked_at - written)
            if (i + 1) % 1000 == 0:
                print(
                    f"  {i + 1:,} pairs: {asked:,} with the token ({satisfied:,} satisfied),"
                    f" {len(staleness):,} without",
                    flush=True,
                )
    return satisfied, asked, staleness


def run(admin_url: str, pairs: int, untokened: int, local_seconds: float) -> list[Row]:
    env = {"CACHE_LOCAL_SECONDS": str(local_seconds), "POLLER_ENABLED": "false"}
    with throwaway_database_sync(admin_url) as database, throwaway_redis() as redis_url:
        servers = [Server(database, redis_url, extra_env=env) for _ in range(2)]
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_healthy_sync()
            print(f"{pairs:,} + {untokened:,} write-then-read pairs, A -> B ...", flush=True)
            satisfied, asked, staleness = asyncio.run(
                measure(servers[0].base, servers[1].base, pairs, untokened, local_seconds)
            )
        finally:
            for server in servers:
                server.stop()
    stale = sum(1 for s in staleness if s > 0)
    staleness.sort()
    share = satisfied / asked if asked else 0.0
    worst = staleness[-1] if staleness else 0.0
    note = (
        f"2 workers, one PostgreSQL and one Redis, CACHE_LOCAL_SECONDS={local_seconds:g};"
        f" {pairs:,} pairs with the token and {untokened:,} without, alternating, one client,"
        " sequential; FR hotspot, sliding 24 h window over one record updated by every write"
    )
    bound = f"<= {local_seconds:g} s (CACHE_LOCAL_SECONDS)"
    return [
        Row(
            "i",
            "read-your-writes on the other worker, with min_generation",
            f"{share:.2%} ({satisfied:,}/{asked:,})",
            None,
            None,
            "100%",
            satisfied == asked,
            note,
        ),
        Row(
            "i",
            "reads without the token that missed the write just made",
            f"{stale / max(1, len(staleness)):.2%} ({stale:,}/{len(staleness):,})",
            None,
            None,
            "",
            None,
        ),
        Row(
            "i",
            "staleness without the token, p50",
            f"{percentile(staleness, 50) * 1000:.2f} ms",
            None,
            None,
            "",
            None,
        ),
        Row(
            "i",
            "staleness without the token, p99",
            f"{percentile(staleness, 99) * 1000:.2f} ms",
            None,
            None,
            bound,
            percentile(staleness, 99) <= local_seconds,
        ),
        Row(
            "i",
            "staleness without the token, max",
            f"{worst * 1000:.2f} ms",
            None,
            None,
            bound,
            worst <= local_seconds,
        ),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--consistency-pairs", type=int, default=PAIRS, help="i: pairs with the token, and without"
    )
    parser.add_argument(
        "--consistency-local-seconds", type=float, default=LOCAL_SECONDS, help="i: local copy"
    )


def scenarios(args: argparse.Namespace) -> list[Row]:
    pairs = QUICK_PAIRS if getattr(args, "quick", False) else args.consistency_pairs
    admin = getattr(args, "admin_url", ADMIN_URL)
    return run(admin, pairs, pairs, args.consistency_local_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PAIRS} pairs")
    parser.add_argument("--pairs", dest="consistency_pairs", type=int, default=PAIRS)
    parser.add_argument(
        "--local-seconds", dest="consistency_local_seconds", type=float, default=LOCAL_SECONDS
    )
    try:
        print_table(scenarios(parser.parse_args(argv)))
    except BenchError as exc:
        print(f"could not run: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
