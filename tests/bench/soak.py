"""Soak: two workers under mixed reads, writes and subscribers, through a Redis and a PostgreSQL
restart, watching whether their memory levels off (issue 14, point 9).

It starts a throwaway PostgreSQL cluster (its own port, so it can be stopped), a throwaway
redis-server and two ``python -m graph serve --workers 1`` processes sharing them. Subscribers
(``graphql-transport-ws``, ``hotFlows`` at threshold 0.1) are spread over both workers. For
the whole run it sends paced reads (REST flows, hotspots and trends; GraphQL queries, half of
them documents never seen before) to both workers, and every ``--write-every`` seconds one
``POST /v1/trends`` that creates exactly one new flow. At a third of the run Redis is killed
and started again on its port; at two thirds PostgreSQL is stopped (``-m immediate``) and
started again. It prints the requests by status, latency percentiles, the live deliveries
expected, received, missed and duplicated, each worker's RSS after the warm-up, every minute
and at the end, and the RSS slope over the last half of the run. See README.md.

    python -m tests.bench.soak                  # 10 minutes after a 30 s warm-up
    python -m tests.bench.soak --quick          # 1 minute
    python -m tests.bench.soak --minutes 5 --subscribers 400

Expected deliveries come from the database, not from the service: each write's topics name
its pair, so the pairs whose records were committed are exactly the flows that appeared. Every
subscriber subscribes before the first write, so each should get every one of them, once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pycountry
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    API_KEY,
    BenchError,
    Row,
    Server,
    machine,
    percentile,
    raise_fd_limit,
)
from tests.support.servers import PostgresServer, RedisServer  # noqa: E402

THRESHOLD = 0.1
SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {
        "query": 'subscription { hotFlows(timeWindow: "24h", threshold: 0.1)'
        " { fromCountry toCountry heat } }"
    },
}
SAMPLE_SECONDS = 5.0
Pair = tuple[str, str]
COUNTRIES = sorted(c.alpha_2 for c in pycountry.countries)


def pair_schedule() -> list[Pair]:
    """The pairs the writes create, in order: (c[i], c[i + s]) for s = 1..4.

    A pair's three topics are its own, so its two rows share them only: similarity
    1/sqrt(k*m) for countries in k and m pairs. No country is in more than 8, so every flow
    has heat >= 0.89/8 = 0.11 (one hour apart: x 0.5^(1/6)) from the moment it appears to the
    end of the run, above the subscribers' 0.1; and no two pairs share a topic, so no other
    flow ever appears.
    """
    n = len(COUNTRIES)
    return [(COUNTRIES[i], COUNTRIES[(i + s) % n]) for s in range(1, 5) for i in range(n)]


PAIRS = pair_schedule()


def topic(index: int, word: str) -> str:
    return f"Soak {index} {word}"


def write_body(index: int, now: datetime) -> bytes:
    """Pair ``index``: A saw its topics 3 h ago, B 2 h ago, so one new flow A -> B."""
    a, b = PAIRS[index]
    return orjson.dumps(
        [
            {
                "timestamp": (now - timedelta(hours=hours)).isoformat(),
                "country": country,
                "topic_label": topic(index, word),
                "count": 100,
                "confidence": 0.9,
            }
            for country, hours in ((a, 3), (b, 2))
            for word in ("Alpha", "Beta", "Gamma")
        ]
    )


# --- what happened --------------------------------------------------------------------------


@dataclass
class Requests:
    """Every request's status (or transport error) and latency, by kind."""

    statuses: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def record(self, kind: str, status: str, seconds: float) -> None:
        self.statuses[status] += 1
        self.by_kind.setdefault(kind, Counter())[status] += 1
        self.latencies.setdefault(kind, []).append(seconds)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def all_latencies(self) -> list[float]:
        return sorted(v for values in self.latencies.values() for v in values)


@dataclass
class Subscriber:
    worker: int
    received: Counter[Pair] = field(default_factory=Counter)
    arrivals: dict[Pair, float] = field(default_factory=dict)  # first arrival, perf_counter
    errors: list[str] = field(default_factory=list)
    closed: str | None = None


@dataclass
class Sample:
    at: float  # seconds since the measured run began (negative: warm-up)
    rss_mb: list[float]


@dataclass
class Soak:
    args: argparse.Namespace
    workers: list[Server]
    redis: RedisServer
    postgres: PostgresServer
    database_url: str
    requests: Requests = field(default_factory=Requests)
    subscribers: list[Subscriber] = field(default_factory=list)
    sent: dict[int, float] = field(default_factory=dict)  # pair index -> perf_counter at POST
    samples: list[Sample] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    churn: Counter[str] = field(default_factory=Counter)  # short-lived subscribers
    began: float = 0.0  # perf_counter when the measured run began (after the warm-up)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def succeeded(status: str) -> bool:
    """A 2xx answer (not a transport error, not a GraphQL answer carrying errors)."""
    return status.isdigit() and status.startswith("2")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    if len(points) < 2:
        return math.nan
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / den if den else math.nan


# --- the load -------------------------------------------------------------------------------


def pick(rng: random.Random, items: Sequence[str], low: int, high: int) -> list[str]:
    return rng.sample(list(items), rng.randint(low, high))


def recent_instant(rng: random.Random) -> str:
    """A distinct explicit as_of within the last two hours (to the second)."""
    at = datetime.now(UTC) - timedelta(seconds=rng.randint(0, 7200))
    return at.replace(microsecond=0).isoformat()


FLOW_FIELDS = ("id", "fromCountry", "toCountry", "heat", "sharedTopics", "timeDeltaHours")
HOTSPOT_FIELDS = ("id", "country", "intensity", "score", "volume", "velocity", "topicCount")
WINDOWS = ("1h", "6h", "12h", "24h")


def read_request(rng: random.Random) -> tuple[str, str, str, dict[str, Any]]:
    """One read of the mix: (kind, method, path, httpx keyword arguments).

    Real clients repeat a few shapes; a soak must also send what a cache keyed on the request
    would have to bound: filters, explicit as_of instants and GraphQL documents never seen
    before.
    """
    roll = rng.random()
    params: dict[str, Any] = {"time_window": rng.choice(WINDOWS)}
    if rng.random() < 0.3:
        params["countries"] = ",".join(pick(rng, COUNTRIES, 2, 6))
    if rng.random() < 0.2:
        params["as_of"] = recent_instant(rng)
    if roll < 0.25:
        params["threshold"] = rng.choice(("0.1", "0.3", "0.5"))
        return "REST flows", "GET", "/v1/flows", {"params": params}
    if roll < 0.4:
        return "REST hotspots", "GET", "/v1/hotspots", {"params": params}
    if roll < 0.5:
        trends = {"countries": rng.choice(COUNTRIES), "first": str(rng.choice((10, 50)))}
        return "REST trends", "GET", "/v1/trends", {"params": trends}
    fresh = rng.random() < 0.5  # a document this worker has never parsed
    name = f"Q{rng.getrandbits(40):x}" if fresh else "Soak"
    if roll < 0.8:
        fields = pick(rng, FLOW_FIELDS, 2, len(FLOW_FIELDS)) if fresh else list(FLOW_FIELDS)
        document = (
            f"query {name}($w: String!, $t: Float, $c: [String!], $a: DateTime) {{"
            f" flows(timeWindow: $w, threshold: $t, countries: $c, asOf: $a)"
            f" {{ {' '.join(fields)} }} }}"
        )
        variables = {
            "w": params["time_window"],
            "t": rng.choice((0.1, 0.5)),
            "c": params.get("countries", "").split(",") if "countries" in params else None,
            "a": params.get("as_of"),
        }
        kind = "GraphQL flows"
    elif roll < 0.95:
        fields = (
            pick(rng, HOTSPOT_FIELDS, 2, len(HOTSPOT_FIELDS)) if fresh else list(HOTSPOT_FIELDS)
        )
        document = (
            f"query {name}($w: String!) {{ hotspots(timeWindow: $w, limit: 20)"
            f" {{ {' '.join(fields)} topTopics {{ label count }} }} }}"
        )
        variables = {"w": params["time_window"]}
        kind = "GraphQL hotspots"
    else:
        document = (
            f"query {name}($c: [String!]) {{ trends(countries: $c, first: 20) {{ totalCount"
            " edges { cursor node { country topicLabel count } } pageInfo { hasNextPage } } }"
        )
        variables = {"c": [rng.choice(COUNTRIES)]}
        kind = "GraphQL trends"
    body = {"query": document, "variables": variables, "operationName": name}
    return kind, "POST", "/graphql", {"json": body}


async def timed(soak: Soak, http: httpx.AsyncClient, kind: str, method: str, url: str,
                **kwargs: Any) -> httpx.Response | None:  # fmt: skip
    started = time.perf_counter()
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        soak.requests.record(kind, type(exc).__name__, time.perf_counter() - started)
        return None
    seconds = time.perf_counter() - started
    status = str(response.status_code)
    if (
        kind.startswith("GraphQL")
        and response.status_code == 200
        and b'"errors"' in response.content
    ):
        status = "200 with errors"  # GraphQL answers a dependency failure with 200 and errors
    soak.requests.record(kind, status, seconds)
    return response


async def reader(soak: Soak, http: httpx.AsyncClient, seed: int, period: float) -> None:
    """Reads until told to stop, one every ``period`` seconds (or back to back when slower)."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.random() * period)
    while not soak.stop.is_set():
        started = time.perf_counter()
        worker = soak.workers[rng.randrange(len(soak.workers))]
        kind, method, path, kwargs = read_request(rng)
        await timed(soak, http, kind, method, f"{worker.base}{path}", **kwargs)
        with contextlib.suppress(TimeoutError):
            wait = period * rng.uniform(0.5, 1.5) - (time.perf_counter() - started)
            await asyncio.wait_for(soak.stop.wait(), max(0.0, wait))


async def writer(soak: Soak, http: httpx.AsyncClient) -> None:
    """One new pair every ``--write-every`` seconds, to the workers in turn."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    for index in range(len(PAIRS)):
        if soak.stop.is_set():
            return
        started = time.perf_counter()
        worker = soak.workers[index % len(soak.workers)]
        body = write_body(index, datetime.now(UTC))
        soak.sent[index] = time.perf_counter()
        url = f"{worker.base}/v1/trends"
        await timed(soak, http, "POST trends", "POST", url, content=body, headers=headers)
        with contextlib.suppress(TimeoutError):
            wait = soak.args.write_every - (time.perf_counter() - started)
            await asyncio.wait_for(soak.stop.wait(), max(0.0, wait))
    soak.events.append(f"the {len(PAIRS)} pairs are used up: no more writes")


# --- subscribers ----------------------------------------------------------------------------


async def subscribe(url: str) -> ClientConnection:
    ws = await connect(
        url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        compression="deflate",
        max_queue=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=5,
    )
    await ws.send(b'{"type":"connection_init","payload":{}}', text=True)
    ack = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    if ack.get("type") != "connection_ack":
        raise BenchError(f"expected connection_ack, got {ack}")
    await ws.send(orjson.dumps(SUBSCRIBE), text=True)
    return ws


async def listen(ws: ClientConnection, sub: Subscriber) -> None:
    try:
        async for raw in ws:
            at = time.perf_counter()
            message = orjson.loads(raw)
            kind = message.get("type")
            if kind == "next":
                flow = (message["payload"].get("data") or {}).get("hotFlows")
                if flow is None:
                    sub.errors.append(orjson.dumps(message["payload"]).decode()[:200])
                    continue
                key = (flow["fromCountry"], flow["toCountry"])
                sub.received[key] += 1
                sub.arrivals.setdefault(key, at)
            elif kind == "ping":
                await ws.send(b'{"type":"pong"}', text=True)
            elif kind in ("error", "complete"):
                sub.errors.append(f"{kind}: {orjson.dumps(message).decode()[:200]}")
    except ConnectionClosed as exc:
        sub.closed = f"{exc.rcvd.code} {exc.rcvd.reason}".strip() if exc.rcvd else "no close frame"


async def ready_subscriptions(worker: Server, http: httpx.AsyncClient) -> int:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        body = (await http.get(f"{worker.base}/health/ready")).json()
        return int(body["checks"]["subscriptions"]["active"])
    return -1


async def open_subscribers(
    soak: Soak, http: httpx.AsyncClient
) -> tuple[list[ClientConnection], list[asyncio.Task[None]]]:
    """``--subscribers`` connections, alternating between the workers, until each worker counts
    its own (each one is its own process and answers /health/ready for itself)."""
    connections: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    n = soak.args.subscribers
    for start in range(0, n, 50):
        batch = range(start, min(n, start + 50))
        urls = [f"ws://127.0.0.1:{soak.workers[i % 2].port}/graphql" for i in batch]
        opened = await asyncio.gather(*(subscribe(url) for url in urls))
        for i, ws in zip(batch, opened, strict=True):
            sub = Subscriber(worker=i % 2)
            soak.subscribers.append(sub)
            connections.append(ws)
            tasks.append(asyncio.create_task(listen(ws, sub)))
    deadline = time.monotonic() + 60
    for w, worker in enumerate(soak.workers):
        share = sum(1 for s in soak.subscribers if s.worker == w)
        while (active := await ready_subscriptions(worker, http)) != share:
            if time.monotonic() > deadline:
                raise BenchError(f"worker {w + 1}: {active} of {share} subscriptions active")
            await asyncio.sleep(0.2)
    return connections, tasks


async def close_subscribers(
    connections: list[ClientConnection], tasks: list[asyncio.Task[None]]
) -> None:
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def churner(soak: Soak, seed: int, period: float) -> None:
    """Subscribers that come and go (``--churn`` a second, each for 1-5 s), half of them
    closing properly and half dropping the connection without a close frame, as a closed
    laptop would: a worker must release whatever a connection held either way."""
    rng = random.Random(seed)
    while not soak.stop.is_set():
        started = time.perf_counter()
        worker = soak.workers[rng.randrange(len(soak.workers))]
        try:
            ws = await subscribe(f"ws://127.0.0.1:{worker.port}/graphql")
        except (OSError, TimeoutError, ConnectionClosed, BenchError) as exc:
            soak.churn[f"refused: {type(exc).__name__}"] += 1
        else:
            soak.churn["opened"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(soak.stop.wait(), rng.uniform(1, 5))
            if rng.random() < 0.5:
                with contextlib.suppress(Exception):
                    await ws.close()
            else:
                ws.transport.abort()
                with contextlib.suppress(Exception):
                    await ws.wait_closed()
        with contextlib.suppress(TimeoutError):
            wait = period * rng.uniform(0.5, 1.5) - (time.perf_counter() - started)
            await asyncio.wait_for(soak.stop.wait(), max(0.0, wait))


# --- the run --------------------------------------------------------------------------------


def elapsed(soak: Soak) -> float:
    return time.perf_counter() - soak.began


def sample(soak: Soak) -> Sample:
    rss = []
    for worker in soak.workers:
        assert worker.process is not None
        with contextlib.suppress(OSError):
            rss.append(rss_mb(worker.process.pid))
            continue
        rss.append(math.nan)  # the worker is gone
    return Sample(elapsed(soak), rss)


def minute_line(soak: Soak, s: Sample, label: str = "") -> str:
    req = soak.requests
    other = sum(n for status, n in req.statuses.items() if not succeeded(status))
    got = sum(sum(sub.received.values()) for sub in soak.subscribers)
    rss = ", ".join(f"w{i + 1} {mb:.1f}" for i, mb in enumerate(s.rss_mb))
    when = label or f"{s.at / 60:5.1f} min"
    return (
        f"  {when:<9}  RSS MiB {rss}; requests {req.total:,} ({other:,} not 2xx);"
        f" writes {len(soak.sent):,}; deliveries {got:,}"
    )


async def monitor(soak: Soak) -> None:
    """An RSS sample every few seconds; a line every minute."""
    next_line = 60.0
    while not soak.stop.is_set():
        s = sample(soak)
        soak.samples.append(s)
        if s.at >= next_line:
            print(minute_line(soak, s), flush=True)
            next_line += 60
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), SAMPLE_SECONDS)


async def restarts(soak: Soak, seconds: float) -> None:
    """Redis at a third of the run (kill, start on its port), PostgreSQL at two thirds."""

    async def at(fraction: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), fraction * seconds - elapsed(soak))
        return not soak.stop.is_set()

    outage = soak.args.outage
    if await at(1 / 3):
        soak.events.append(f"{elapsed(soak):.0f} s: Redis killed")
        print(f"  {elapsed(soak) / 60:5.1f} min  killing Redis for {outage:.0f} s", flush=True)
        await asyncio.to_thread(soak.redis.stop)
        await asyncio.sleep(outage)
        await asyncio.to_thread(soak.redis.start)
        soak.events.append(f"{elapsed(soak):.0f} s: Redis started again")
    if await at(2 / 3):
        soak.events.append(f"{elapsed(soak):.0f} s: PostgreSQL stopped (immediate)")
        print(
            f"  {elapsed(soak) / 60:5.1f} min  stopping PostgreSQL for {outage:.0f} s", flush=True
        )
        await asyncio.to_thread(soak.postgres.stop)
        await asyncio.sleep(outage)
        await asyncio.to_thread(soak.postgres.start)
        soak.events.append(f"{elapsed(soak):.0f} s: PostgreSQL started again")


async def committed_pairs(database_url: str) -> set[int]:
    """The pair indexes whose records are in the database (whatever the POSTs answered)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT topic_label FROM trends_archive WHERE topic_label LIKE 'Soak %'"
        )
    finally:
        await conn.close()
    return {int(row["topic_label"].split()[1]) for row in rows}


def all_delivered(soak: Soak, expected: set[Pair]) -> bool:
    return all(
        sub.closed is not None or expected <= sub.received.keys() for sub in soak.subscribers
    )


async def flows_answers(soak: Soak, http: httpx.AsyncClient) -> list[set[Pair] | str]:
    """Each worker's ``GET /v1/flows`` at the subscribers' threshold, as pairs."""
    out: list[set[Pair] | str] = []
    for worker in soak.workers:
        params = {"time_window": "24h", "threshold": str(THRESHOLD)}
        try:
            response = await http.get(f"{worker.base}/v1/flows", params=params)
        except httpx.HTTPError as exc:
            out.append(type(exc).__name__)
            continue
        if response.status_code != 200:
            out.append(f"HTTP {response.status_code}")
            continue
        flows = response.json()["flows"]
        out.append({(f["from_country"], f["to_country"]) for f in flows})
    return out


@dataclass
class Outcome:
    soak: Soak
    seconds: float
    expected_pairs: set[Pair]
    flows_seen: list[set[Pair] | str]
    problems: list[Counter[str]]

    @property
    def expected(self) -> int:
        return len(self.expected_pairs) * len(self.soak.subscribers)

    @property
    def received(self) -> int:
        return sum(
            1 for sub in self.soak.subscribers for p in sub.received if p in self.expected_pairs
        )

    @property
    def missed(self) -> int:
        return self.expected - self.received

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for sub in self.soak.subscribers for n in sub.received.values() if n > 1)

    @property
    def unexpected(self) -> int:
        return sum(
            1 for sub in self.soak.subscribers for p in sub.received if p not in self.expected_pairs
        )

    def slopes(self) -> list[float]:
        """Per worker, MiB/min over the last half of the measured run."""
        half = [s for s in self.soak.samples if s.at >= self.seconds / 2]
        workers = len(self.soak.workers)
        return [slope([(s.at, s.rss_mb[w]) for s in half]) for w in range(workers)]

    def rss_at(self, which: str) -> list[float]:
        measured = [s for s in self.soak.samples if s.at >= 0]
        return (measured[0] if which == "start" else measured[-1]).rss_mb

    def delivery_latencies(self) -> list[float]:
        by_pair = {PAIRS[i]: t for i, t in self.soak.sent.items()}
        return sorted(
            at - by_pair[p]
            for sub in self.soak.subscribers
            for p, at in sub.arrivals.items()
            if p in by_pair and p in self.expected_pairs
        )


async def run(args: argparse.Namespace) -> Outcome:
    seconds = args.minutes * 60
    print(
        f"soak: {args.minutes:g} min after {args.warm_up:.0f} s of warm-up; 2 workers,"
        f" {args.subscribers} subscribers (and {args.churn:g}/s short-lived ones), reads"
        f" {args.read_rate:g}/s, a write every {args.write_every:g} s",
        flush=True,
    )
    redis = await asyncio.to_thread(RedisServer)
    postgres = await asyncio.to_thread(PostgresServer)
    workers: list[Server] = []
    try:
        database_url = postgres.url.rsplit("/", 1)[0] + "/soak"
        conn = await asyncpg.connect(postgres.url)
        try:
            await conn.execute('CREATE DATABASE "soak"')
        finally:
            await conn.close()
        env = {
            # Rate limiting on, as deployed, with budgets this one client cannot reach.
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_PER_MINUTE": "10000000",
            "RATE_LIMIT_WRITES_PER_MINUTE": "10000000",
            **dict(args.server_env),
        }
        workers = [Server(database_url, redis.url, env) for _ in range(2)]
        soak = Soak(args, workers, redis, postgres, database_url)
        limits = httpx.Limits(max_connections=args.readers + 4)
        async with httpx.AsyncClient(timeout=15, limits=limits) as http:
            for worker in workers:  # one at a time: the first one migrates the database
                worker.start()
                await worker.wait_healthy(http, timeout=180)
            return await _measure(soak, http, seconds)
    finally:
        for number, worker in enumerate(workers, start=1):
            if args.keep_logs and worker.log.exists():
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                shutil.copy(worker.log, Path(args.keep_logs) / f"worker-{number}.log")
            worker.stop()
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(postgres.remove)


async def _measure(soak: Soak, http: httpx.AsyncClient, seconds: float) -> Outcome:
    args = soak.args
    connections, listeners = await open_subscribers(soak, http)
    print(f"{len(connections)} subscriptions active on 2 workers", flush=True)
    soak.began = time.perf_counter() + args.warm_up  # warm-up samples are at negative times
    period = args.readers / args.read_rate
    load = [asyncio.create_task(writer(soak, http))]
    load += [asyncio.create_task(reader(soak, http, i, period)) for i in range(args.readers)]
    # Several churners, each waiting out its connection's life, make --churn a second in all.
    churners = math.ceil(args.churn * 4) if args.churn > 0 else 0
    load += [
        asyncio.create_task(churner(soak, 1000 + i, churners / args.churn)) for i in range(churners)
    ]
    watch = asyncio.create_task(monitor(soak))
    try:
        await asyncio.sleep(args.warm_up)
        first = sample(soak)
        print(minute_line(soak, first, "start"), flush=True)
        chaos = asyncio.create_task(restarts(soak, seconds))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(chaos), seconds)
        await asyncio.sleep(max(0.0, seconds - elapsed(soak)))
        soak.samples.append(sample(soak))
    finally:
        soak.stop.set()
        await asyncio.gather(*load, watch, return_exceptions=True)
    print(minute_line(soak, soak.samples[-1], "end"), flush=True)
    if not chaos.done():
        chaos.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await chaos

    expected = {PAIRS[i] for i in await committed_pairs(soak.database_url)}
    deadline = time.monotonic() + args.settle
    while not all_delivered(soak, expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    flows_seen = await flows_answers(soak, http)
    await close_subscribers(connections, listeners)
    problems = [log_problems(worker) for worker in soak.workers]
    return Outcome(soak, seconds, expected, flows_seen, problems)


def log_problems(worker: Server) -> Counter[str]:
    """The worker's warning and error lines, counted by level and event."""
    counted: Counter[str] = Counter()
    for line in worker.problems():
        try:
            entry = json.loads(line)
            counted[f"{entry.get('level', '?')}: {entry.get('event', '?')}"] += 1
        except ValueError:
            counted[line[:120]] += 1
    return counted


# --- output ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def report(o: Outcome, args: argparse.Namespace) -> None:
    soak, req = o.soak, o.soak.requests
    print(f"\nmachine: {machine()}")
    print("events: " + "; ".join(soak.events))
    print(f"\nrequests: {req.total:,} in {o.seconds / 60 + args.warm_up / 60:.1f} min")
    print("  by status: " + ", ".join(f"{s} {n:,}" for s, n in sorted(req.statuses.items())))
    print(f"  {'kind':<17} {'count':>7} {'p50 ms':>7} {'p99 ms':>7}  statuses")
    for kind in sorted(req.latencies):
        values = sorted(req.latencies[kind])
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(req.by_kind[kind].items()))
        print(
            f"  {kind:<17} {len(values):>7,} {ms(percentile(values, 50)):>7}"
            f" {ms(percentile(values, 99)):>7}  {statuses}"
        )
    every = req.all_latencies()
    print(f"  all: p50 {ms(percentile(every, 50))} ms, p99 {ms(percentile(every, 99))} ms")

    closed = Counter(sub.closed for sub in soak.subscribers if sub.closed)
    errors = sum(len(sub.errors) for sub in soak.subscribers)
    print(
        f"\ndeliveries: {len(o.expected_pairs)} flows committed x {len(soak.subscribers)}"
        f" subscribers = {o.expected:,} expected; received {o.received:,}, missed {o.missed:,},"
        f" duplicated {o.duplicated:,}, unexpected {o.unexpected:,}"
    )
    for w in range(len(soak.workers)):
        mine = [s for s in soak.subscribers if s.worker == w]
        got = sum(1 for s in mine for p in s.received if p in o.expected_pairs)
        missed = len(mine) * len(o.expected_pairs) - got
        print(f"  on worker {w + 1}: {len(mine)} subscribers, missed {missed:,}")
    latencies = o.delivery_latencies()
    if latencies:
        print(
            f"  latency from the POST: p50 {ms(percentile(latencies, 50))} ms,"
            f" p99 {ms(percentile(latencies, 99))} ms, max {ms(latencies[-1])} ms"
        )
    if closed or errors:
        print(f"  closed by the server: {dict(closed)}; GraphQL errors {errors}")
        for sub in soak.subscribers:
            for error in sub.errors[:2]:
                print(f"    {error}")
    missed_pairs = Counter(
        p for sub in soak.subscribers for p in o.expected_pairs if p not in sub.received
    )
    if missed_pairs:
        index = {p: i for i, p in enumerate(PAIRS)}
        worst = sorted(missed_pairs.items(), key=lambda kv: index[kv[0]])[:10]
        print("  missed, by flow (write number: subscribers): " + ", ".join(
            f"{index[p]}: {n}" for p, n in worst
        ))  # fmt: skip
    if soak.churn:
        churn = ", ".join(f"{k} {n:,}" for k, n in sorted(soak.churn.items()))
        print(f"  short-lived subscribers (not counted above): {churn}")
    for w, seen in enumerate(o.flows_seen):
        if isinstance(seen, str):
            print(f"  worker {w + 1}'s GET /v1/flows at the end: {seen}")
        else:
            lacking = len(o.expected_pairs - seen)
            print(
                f"  worker {w + 1}'s GET /v1/flows at the end: {len(seen)} flows,"
                f" {lacking} committed flows not in it"
            )

    print(f"\nRSS (MiB; start = after the {args.warm_up:.0f} s warm-up):")
    start, end, slopes = o.rss_at("start"), o.rss_at("end"), o.slopes()
    for w in range(len(soak.workers)):
        print(
            f"  worker {w + 1}: start {start[w]:.1f}, end {end[w]:.1f}"
            f" ({end[w] - start[w]:+.1f}); slope over the last half {slopes[w]:+.2f} MiB/min"
        )
    for w, counted in enumerate(o.problems):
        if counted:
            print(f"\nworker {w + 1} logged (level: event x count):")
            for line, n in counted.most_common(12):
                print(f"  {line} x {n}")


# --- entry points ---------------------------------------------------------------------------


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(parser, prefix="")
    parser.add_argument("--quick", action="store_true", help="1 minute, 10 s warm-up")
    return parser


def add_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The soak's options; run.py gives them a ``soak-`` prefix."""
    p = f"--{prefix}"
    parser.add_argument(f"{p}minutes", type=float, default=10.0, help="measured minutes (10)")
    parser.add_argument(f"{p}warm-up", type=float, default=30.0, help="seconds before (30)")
    parser.add_argument(f"{p}subscribers", type=int, default=200, help="over both workers")
    parser.add_argument(f"{p}readers", type=int, default=8, help="concurrent readers (8)")
    parser.add_argument(f"{p}read-rate", type=float, default=40.0, help="reads/s in all (40)")
    parser.add_argument(
        f"{p}write-every", type=float, default=0.0,
        help="seconds between writes (default: 1, or longer so the pairs last the run)",
    )  # fmt: skip
    parser.add_argument(
        f"{p}churn", type=float, default=2.0, help="short-lived subscribers a second (2)"
    )
    parser.add_argument(f"{p}outage", type=float, default=3.0, help="seconds down (3)")
    parser.add_argument(f"{p}settle", type=float, default=20.0, help="s to await deliveries")
    parser.add_argument(f"{p}keep-logs", metavar="DIR", help="copy the workers' logs here")
    parser.add_argument(
        f"{p}server-env", type=env_pair, action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for both workers (repeatable)",
    )  # fmt: skip


def settle_options(args: argparse.Namespace, quick: bool) -> argparse.Namespace:
    if quick:
        args.minutes, args.warm_up = 1.0, 10.0
    if args.write_every <= 0:
        # Enough pairs for the run and its warm-up, with a margin.
        args.write_every = max(1.0, (args.minutes * 60 + args.warm_up) / (len(PAIRS) * 0.9))
    return args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """run.py's options for scenario h (``--soak-minutes`` and so on)."""
    add_options(parser, prefix="soak-")


def scenarios(args: argparse.Namespace) -> list[Row]:
    """Scenario h for run.py: the soak, as rows."""
    quick = getattr(args, "quick", False)
    options = argparse.Namespace(
        **{
            name.removeprefix("soak_"): value
            for name, value in vars(args).items()
            if name.startswith("soak_")
        }
    )
    options = settle_options(options, quick)
    raise_fd_limit(2 * options.subscribers + 512)
    return rows(asyncio.run(run(options)), options, quick)


def rows(o: Outcome, args: argparse.Namespace, quick: bool) -> list[Row]:
    report(o, args)
    req = o.soak.requests
    every = req.all_latencies()
    ok = sum(n for s, n in req.statuses.items() if succeeded(s))
    slopes = o.slopes()
    start, end = o.rss_at("start"), o.rss_at("end")
    label = f"soak {args.minutes:g} min, 2 workers"
    statuses = ", ".join(f"{s} {n:,}" for s, n in sorted(req.statuses.items()))
    return [
        Row("h", f"{label}: requests", f"{req.total:,}", None, None, "", None,
            f"{ok / max(1, req.total):.1%} 2xx ({statuses}); Redis and PostgreSQL restarted"),
        Row("h", f"{label}: latency p99", f"{ms(percentile(every, 99))} ms", None, None, "",
            None, f"p50 {ms(percentile(every, 50))} ms, over reads and writes"),
        Row("h", f"{label}: live deliveries missed", f"{o.missed:,} of {o.expected:,}", None,
            None, "none missed or twice", None if quick else (o.missed == 0 and o.duplicated == 0),
            f"{len(o.soak.subscribers)} subscribers; duplicated {o.duplicated:,}"),
        Row("h", f"{label}: RSS slope, last half", " / ".join(f"{s:+.2f}" for s in slopes)
            + " MiB/min", None, None, "", None,
            "per worker; RSS start->end " + ", ".join(
                f"{a:.0f}->{b:.0f} MiB" for a, b in zip(start, end, strict=True))),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parsed = build_parser().parse_args(argv)
    args = settle_options(parsed, quick=parsed.quick)
    raise_fd_limit(2 * args.subscribers + 512)
    try:
        outcome = asyncio.run(run(args))
    except BenchError as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 2
    report(outcome, args)
    print(f"\nreproduce: {shlex.join(['python', '-m', 'tests.bench.soak', *sys.argv[1:]])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
