"""Benchmark: ingestion through ``POST /v1/trends`` into PostgreSQL, and idempotent re-ingestion.

Targets (issue 16, d): 1,000,000 new records at >= 100,000 records/s, and the same records
again (every one unchanged: the upsert is idempotent) at >= 150,000 records/s. (Issue 6 asked
for 20,000 records/s.) This is a measurement, not a test: it prints the figures and whether
the targets are met, and exits 0 either way (2 only when the benchmark itself could not run).

It starts a throwaway PostgreSQL database, a throwaway redis-server and one
``python -m graph serve --workers 1`` (rate limiting off, as for any bulk loader with its own
key), builds every request body up front (the client's JSON encoding is not timed), then:

1. posts all the batches, ``--concurrency`` requests in flight, and reports records/s over the
   whole run (first request sent to last answer received), checking that every record was
   inserted;
2. posts the very same batches again and checks that every record comes back ``unchanged``
   (the idempotent upsert), with that pass's records/s;
3. counts the rows in the database: exactly the distinct records.

The records are fresh (the last 24 h), so every ingest also retires the cache and wakes the
live-flows publisher, as in production; with no live subscriber, it computes no window
(graph.live.interest).

    python tests/bench/ingest.py                    # 1,000,000 records, 10,000 per request
    python tests/bench/ingest.py --records 200000 --batch 5000 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson
import websockets
from websockets.asyncio.client import connect

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    ADMIN_URL,
    API_KEY,
    BenchError,
    Row,
    Server,
    machine,
    print_table,
    throwaway_database,
    throwaway_redis,
)

TARGET_RATE = 100_000
TARGET_UNCHANGED_RATE = 150_000
COUNTRIES = 200
TOPICS = 5_000


def make_bodies(records: int, batch: int, seed: int) -> tuple[list[bytes], int]:
    """Request bodies of ``batch`` records each, and how many records they hold.

    Countries and topics are skewed (a few big countries, Zipf-like topics), every record has
    a distinct natural key and a timestamp in the last 24 h, a tenth carry sources.
    """
    import pycountry

    rng = np.random.default_rng(seed)
    codes = sorted(c.alpha_2 for c in pycountry.countries)[:COUNTRIES]
    weights = np.arange(1, TOPICS + 1, dtype=np.float64) ** -1.1
    country_weights = np.arange(1, COUNTRIES + 1, dtype=np.float64) ** -0.6
    country = rng.choice(COUNTRIES, size=records, p=country_weights / country_weights.sum())
    topic = rng.choice(TOPICS, size=records, p=weights / weights.sum())
    window_us = 24 * 3_600_000_000
    offset = rng.integers(0, window_us - 60_000_000, size=records)
    keys = np.stack([country, topic, offset], axis=1)
    _, keep = np.unique(keys, axis=0, return_index=True)
    keep.sort()
    count = rng.geometric(0.02, size=len(keep))
    confidence = np.round(rng.uniform(0.3, 1.0, size=len(keep)), 4)
    sourced = rng.random(len(keep)) < 0.1

    start = datetime.now(UTC) - timedelta(hours=24) + timedelta(minutes=1)
    items: list[dict[str, Any]] = []
    for c, t, us, n, conf, src in zip(
        country[keep].tolist(),
        topic[keep].tolist(),
        offset[keep].tolist(),
        count.tolist(),
        confidence.tolist(),
        sourced.tolist(),
        strict=True,
    ):
        item: dict[str, Any] = {
            "timestamp": (start + timedelta(microseconds=us)).isoformat(),
            "country": codes[c],
            "topic_label": f"Topic {t:04d}",
            "count": n,
            "confidence": conf,
        }
        if src:
            item["sources"] = [f"https://example.org/{t}"]
        items.append(item)
    bodies = [orjson.dumps(items[i : i + batch]) for i in range(0, len(items), batch)]
    return bodies, len(items)


@dataclass
class Pass:
    """One pass over every body: its wall time and the summed answers."""

    seconds: float
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    slowest: float = 0.0

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0


async def post_all(
    http: httpx.AsyncClient, base: str, bodies: list[bytes], concurrency: int
) -> Pass:
    """Every body, ``concurrency`` requests in flight; fails on any non-200 answer."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    queue = iter(bodies)
    result = Pass(0.0)

    async def worker() -> None:
        for body in queue:
            sent = time.perf_counter()
            response = await http.post(f"{base}/v1/trends", content=body, headers=headers)
            result.slowest = max(result.slowest, time.perf_counter() - sent)
            if response.status_code != 200:
                raise BenchError(f"POST /v1/trends: {response.status_code} {response.text[:300]}")
            answer = response.json()
            result.received += answer["received"]
            result.inserted += answer["inserted"]
            result.updated += answer["updated"]
            result.unchanged += answer["unchanged"]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class Measured:
    records: int
    batch: int
    concurrency: int
    first: Pass
    second: Pass
    stored: int
    server_cpu: float | None
    # The first pass again, into a fresh database, with a live map open (one subscriber).
    watched: Pass | None = None
    watched_frames: int = 0


async def measure(args: argparse.Namespace) -> Measured:
    print(f"building {args.records:,} records in batches of {args.batch:,} ...", flush=True)
    bodies, records = make_bodies(args.records, args.batch, args.seed)
    mib = sum(len(b) for b in bodies) / 2**20
    print(f"  {records:,} distinct records, {len(bodies)} bodies, {mib:.0f} MiB", flush=True)
    async with serving(args) as (database_url, server, http):
        if getattr(args, "without_rollup", False):
            # For comparison only: the archive as before migration 0003's triggers.
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("ALTER TABLE trends_archive DISABLE TRIGGER USER")
            finally:
                await conn.close()
        cpu_before = server.cpu_seconds()
        first = await post_all(http, server.base, bodies, args.concurrency)
        cpu_after = server.cpu_seconds()
        print(f"  first pass: {first.rate:,.0f} records/s ({first.seconds:.1f} s)")
        second = await post_all(http, server.base, bodies, args.concurrency)
        print(f"  second pass: {second.rate:,.0f} records/s ({second.seconds:.1f} s)")
        problems = server.problems()
        conn = await asyncpg.connect(database_url)
        try:
            stored = int(await conn.fetchval("SELECT count(*) FROM trends_archive"))
        finally:
            await conn.close()
    if problems:
        print(f"  server logged {len(problems)} warning/error lines, e.g.:")
        for line in problems[:5]:
            print(f"    {line[:200]}")
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    measured = Measured(records, args.batch, args.concurrency, first, second, stored, cpu)
    if getattr(args, "watched", True):
        measured.watched, measured.watched_frames = await watched_pass(args, bodies)
        print(f"  with a live map open: {measured.watched.rate:,.0f} records/s", flush=True)
    return measured


# A live map on the default window: every round of the publisher computes it.
WATCH = {
    "id": "1",
    "type": "subscribe",
    "payload": {
        "query": 'subscription { hotFlows(timeWindow: "24h", threshold: 0.5) { fromCountry } }'
    },
}


async def watched_pass(args: argparse.Namespace, bodies: list[bytes]) -> tuple[Pass, int]:
    """The first pass into a fresh database, one hotFlows subscriber on 24 h meanwhile: what
    the live publisher's rounds cost a bulk load that somebody watches (with nobody watching,
    it computes no window). The pass, and the frames the subscriber received."""
    async with serving(args) as (_, server, http), live_map(server.base, http) as frames:
        watched = await post_all(http, server.base, bodies, args.concurrency)
    return watched, len(frames)


@contextlib.asynccontextmanager
async def serving(args: argparse.Namespace) -> AsyncIterator[tuple[str, Server, httpx.AsyncClient]]:
    """A throwaway database and redis-server, one healthy server on them (batches up to
    ``args.batch`` allowed), and a client with ``args.concurrency`` connections to it."""
    async with throwaway_database(args.admin_url) as database_url:
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(throwaway_redis(args.redis_server))
            env = {"MAX_BATCH_RECORDS": str(max(args.batch, 100_000)), **args.server_env}
            server = stack.enter_context(Server(database_url, redis_url, env))
            timeout = httpx.Timeout(120.0)
            limits = httpx.Limits(max_connections=args.concurrency)
            async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
                await server.wait_healthy(http)
                yield database_url, server, http


@contextlib.asynccontextmanager
async def live_map(base: str, http: httpx.AsyncClient) -> AsyncIterator[list[str | bytes]]:
    """One ``graphql-transport-ws`` subscription to hotFlows for the block, counted active by
    the server before the block runs; yields the frames it receives meanwhile."""
    url = base.replace("http://", "ws://", 1) + "/graphql"
    protocol = websockets.Subprotocol("graphql-transport-ws")
    async with connect(url, subprotocols=[protocol], max_queue=None) as ws:
        await ws.send('{"type":"connection_init","payload":{}}')
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise BenchError(f"expected connection_ack, got {ack}")
        await ws.send(orjson.dumps(WATCH).decode())
        deadline = time.monotonic() + 30
        while (await http.get(f"{base}/health/ready")).json()["checks"]["subscriptions"][
            "active"
        ] < 1:
            if time.monotonic() > deadline:
                raise BenchError("the live map's subscription was not active after 30 s")
            await asyncio.sleep(0.1)
        frames: list[str | bytes] = []

        async def read() -> None:
            async for frame in ws:
                frames.append(frame)

        reading = asyncio.create_task(read())
        try:
            yield frames
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reading


def rows_for(m: Measured, *, quick: bool = False) -> list[Row]:
    shape = f"{m.batch:,} records per POST, {m.concurrency} in flight"
    first_ok = m.first.inserted == m.records and m.stored == m.records
    cpu = "" if m.server_cpu is None else f"; server CPU {m.server_cpu:.1f} s"
    return [
        Row(
            scenario="d",
            measure=f"POST /v1/trends, {m.records:,} new records into PostgreSQL",
            value=f"{m.first.rate:,.0f} records/s",
            baseline=None,
            ratio=None,
            target=f">= {TARGET_RATE:,} records/s" + (" (quick run)" if quick else ""),
            met=None if quick else (m.first.rate >= TARGET_RATE and first_ok),
            note=(
                f"{shape}; {m.first.seconds:.1f} s; inserted {m.first.inserted:,}, rows stored"
                f" {m.stored:,}; slowest POST {m.first.slowest * 1000:.0f} ms{cpu}"
            ),
        ),
        Row(
            scenario="d",
            measure="the same records again (idempotent upsert)",
            value=f"{m.second.rate:,.0f} records/s",
            baseline=None,
            ratio=None,
            target=f"all unchanged, >= {TARGET_UNCHANGED_RATE:,} records/s"
            + (" (quick run)" if quick else ""),
            met=(
                m.second.unchanged == m.records
                and m.stored == m.records
                and (quick or m.second.rate >= TARGET_UNCHANGED_RATE)
            ),
            note=(
                f"unchanged {m.second.unchanged:,}, inserted {m.second.inserted:,}, updated"
                f" {m.second.updated:,}; {m.second.seconds:.1f} s"
            ),
        ),
        *(
            []
            if m.watched is None
            else [
                Row(
                    scenario="d",
                    measure="new records again, a live map open (one hotFlows subscriber, 24h)",
                    value=f"{m.watched.rate:,.0f} records/s",
                    baseline=None,
                    ratio=None,
                    target="context",
                    met=None,
                    note=(
                        f"a fresh database; {m.watched.seconds:.1f} s; the subscriber received"
                        f" {m.watched_frames} frames; the publisher computes the 24 h window"
                        " after each ingest (with nobody watching, none: the first row)"
                    ),
                )
            ]
        ),
    ]


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """run.py's options for scenario d."""
    parser.add_argument(
        "--ingest-records", type=int, default=1_000_000, help="d: records to ingest"
    )
    parser.add_argument("--ingest-batch", type=int, default=10_000, help="d: records per POST")
    parser.add_argument("--ingest-concurrency", type=int, default=4, help="d: requests in flight")


def scenarios(args: argparse.Namespace) -> list[Row]:
    """Target d for run.py (100,000 records with --quick)."""
    quick = getattr(args, "quick", False)
    options = argparse.Namespace(
        admin_url=getattr(args, "admin_url", ADMIN_URL),
        redis_server=getattr(args, "redis_server", "redis-server"),
        records=100_000 if quick else getattr(args, "ingest_records", 1_000_000),
        batch=getattr(args, "ingest_batch", 10_000),
        concurrency=getattr(args, "ingest_concurrency", 4),
        seed=6,
        server_env={},
    )
    return rows_for(asyncio.run(measure(options)), quick=quick)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to ingest")
    parser.add_argument("--batch", type=int, default=10_000, help="records per POST")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--seed", type=int, default=6, help="random seed of the records")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL to create the db on")
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    parser.add_argument(
        "--server-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server (repeatable)",
    )
    parser.add_argument(
        "--without-rollup",
        action="store_true",
        help="disable the rollup's triggers (a comparison: what maintaining it costs)",
    )
    args = parser.parse_args(argv)
    args.server_env = dict(args.server_env)
    print(machine(), flush=True)
    try:
        measured = asyncio.run(measure(args))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    print()
    print_table(rows_for(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
