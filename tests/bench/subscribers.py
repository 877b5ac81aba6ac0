"""Benchmark: how soon a new hot flow reaches N GraphQL subscribers on one or more workers.

Targets (issue 16, e): with 5,000 subscribers on one worker, p99 delivery under 250 ms; with
20,000 on two (``--workers 2``), p99 under 1 s, none lost and none twice. Besides latency it
prints the server's CPU seconds per event per 1,000 subscribers. This is a measurement, not a
test: it prints the figures and whether the target is met, and exits 0 either way (2 only
when the benchmark itself could not run).

With two or more CPUs the server (all its workers) runs on CPU 0 and this load client on the
others (``taskset``/``sched_setaffinity``), so that neither steals the other's time; with one,
they share it, and the report says so. A process may hold as many sockets as its hard
``ulimit -n`` allows, less a margin: past that, subscriptions share sockets (``--per-socket``,
set to the fewest that fit), and the report says how many sockets carried them.

Per subscriber count N it starts a throwaway PostgreSQL database, a throwaway redis-server and
one ``python -m graph serve --workers W``; opens N ``graphql-transport-ws`` subscriptions to
``hotFlows`` from this one asyncio process; then, round after round, POSTs a new pair of
countries with identical topics an hour apart (one new hot flow) and times every delivery
from just before the POST was sent, an upper bound on the time since the commit. See README.md.

    python tests/bench/subscribers.py --subscribers 1000 --rounds 5
    python tests/bench/subscribers.py --subscribers 10000 --workers 2

The client's garbage collector is off during the timed rounds (after one full pass, its heap
frozen): with thousands of connections, one full pass of its own stalled every receipt by 250 ms
or more, and those stalls were timed as the server's latency (2026-11-26).

With several workers the server's own subscription counter is per worker (each answers
/health/ready for itself), so readiness is proven by warm-up rounds instead: an untimed new
flow that every one of the N subscribers must receive before the timed rounds start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import platform
import resource
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.version import version as websockets_version

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    ADMIN_URL,
    API_KEY,
    BenchError,
    Row,
    Server,
    cpu_seconds,
    percentile,
    raise_fd_limit,
    run_loop,
    throwaway_database,
    throwaway_redis,
)

TARGET_SECONDS = 1.0
TARGET_FRACTION = 0.99
# p99 delivery targets by worker count (issue 16).
P99_TARGETS = {1: 0.25, 2: 1.0}
FD_MARGIN = 256  # descriptors kept for everything but the sockets
CPUS = sorted(os.sched_getaffinity(0))  # before this process pins itself
SUBSCRIBE = {
    "id": "1",
    "type": "subscribe",
    "payload": {
        "query": 'subscription { hotFlows(timeWindow: "24h", threshold: 0.5)'
        " { fromCountry toCountry heat } }"
    },
}
# One new pair per round, each with topics of its own: similarity 1 within a pair, 0 across.
PAIRS = [
    ("FR", "BE"), ("DE", "AT"), ("ES", "PT"), ("IT", "CH"), ("NL", "LU"),
    ("SE", "NO"), ("DK", "FI"), ("PL", "CZ"), ("IE", "GB"), ("GR", "CY"),
    ("HU", "SK"), ("RO", "BG"), ("HR", "SI"), ("EE", "LV"), ("LT", "IS"),
    ("US", "CA"), ("MX", "BR"), ("AR", "CL"), ("JP", "KR"), ("AU", "NZ"),
]  # fmt: skip

Pair = tuple[str, str]


# --- the clients ----------------------------------------------------------------------------


@dataclass
class Round:
    pair: Pair
    sent: float = 0.0  # perf_counter just before the POST
    answered: float = 0.0  # perf_counter when its 200 came back
    arrivals: list[float] = field(default_factory=list)
    complete: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Recorder:
    """Every subscriber's deliveries, by the round whose pair they name."""

    subscribers: int
    rounds: dict[Pair, Round] = field(default_factory=dict)
    unexpected: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    closed: dict[str, int] = field(default_factory=dict)

    def arrived(self, pair: Pair, seen: set[Pair], at: float) -> None:
        """A delivery to the subscription whose pairs so far are ``seen``."""
        round_ = self.rounds.get(pair)
        if round_ is None:
            self.unexpected += 1
        elif pair in seen:
            self.duplicates += 1
        else:
            seen.add(pair)
            round_.arrivals.append(at)
            if len(round_.arrivals) >= self.subscribers:
                round_.complete.set()


async def subscribe(url: str, compression: str | None, per_socket: int = 1) -> ClientConnection:
    """Open one connection and start ``per_socket`` hotFlows subscriptions on it."""
    ws = await connect(
        url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        compression=compression,
        max_queue=None,
        ping_interval=None,
        open_timeout=120,
        close_timeout=5,
    )
    await ws.send(b'{"type":"connection_init","payload":{}}', text=True)
    try:
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 120))
    except ConnectionClosed as exc:
        raise BenchError(f"a subscriber's socket closed before connection_ack: {exc}") from exc
    if ack.get("type") != "connection_ack":
        raise BenchError(f"expected connection_ack, got {ack}")
    for index in range(per_socket):
        await ws.send(orjson.dumps({**SUBSCRIBE, "id": str(index + 1)}), text=True)
    return ws


async def listen(ws: ClientConnection, recorder: Recorder) -> None:
    """Record each delivery's arrival time (taken first, before any parsing)."""
    seen: dict[str, set[Pair]] = {}  # by subscription id
    try:
        async for raw in ws:
            at = time.perf_counter()
            message = orjson.loads(raw)
            kind = message.get("type")
            if kind == "next":
                data = (message["payload"].get("data") or {}).get("hotFlows")
                if data is None:
                    recorder.errors.append(orjson.dumps(message["payload"]).decode())
                    continue
                pairs = seen.setdefault(message["id"], set())
                recorder.arrived((data["fromCountry"], data["toCountry"]), pairs, at)
            elif kind == "ping":
                await ws.send(b'{"type":"pong"}', text=True)
            elif kind in ("error", "complete"):
                recorder.errors.append(f"{kind}: {orjson.dumps(message).decode()}")
    except ConnectionClosed as exc:
        key = f"{exc.rcvd.code} {exc.rcvd.reason}".strip() if exc.rcvd else "no close frame"
        recorder.closed[key] = recorder.closed.get(key, 0) + 1


# --- one measurement ------------------------------------------------------------------------


def records_for(index: int, pair: Pair, now: datetime) -> list[dict[str, Any]]:
    """A seen the round's topics 3 h ago, B 2 h ago: one new flow A -> B, heat ~0.89."""
    topics = [f"Bench {index} {word}" for word in ("Alpha", "Beta", "Gamma")]
    return [
        {
            "timestamp": (now - timedelta(hours=hours)).isoformat(),
            "country": country,
            "topic_label": topic,
            "count": 100,
            "confidence": 0.9,
        }
        for country, hours in ((pair[0], 3), (pair[1], 2))
        for topic in topics
    ]


@dataclass
class Result:
    subscribers: int
    rounds: list[Round]
    connect_seconds: float
    server_cpu: float | None
    client_cpu: float
    wall: float
    counters: dict[str, int]
    recorder: Recorder
    server_problems: list[str]
    workers: int = 1
    sockets: int = 0
    pinned: str = "not pinned"

    @property
    def expected(self) -> int:
        return self.subscribers * len(self.rounds)

    @property
    def received(self) -> int:
        return sum(len(r.arrivals) for r in self.rounds)

    def latencies(self) -> list[float]:
        """Every expected delivery's latency, sorted; inf for the missing ones."""
        values = [at - r.sent for r in self.rounds for at in r.arrivals]
        values += [math.inf] * (self.expected - len(values))
        return sorted(values)

    def within_target(self) -> float:
        return sum(v <= TARGET_SECONDS for v in self.latencies()) / self.expected

    @property
    def p99(self) -> float:
        return percentile(self.latencies(), 99)

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def p99_target(self) -> float:
        return P99_TARGETS.get(self.workers, TARGET_SECONDS)

    @property
    def met(self) -> bool:
        """p99 within its target, nothing lost, nothing twice."""
        return self.p99 <= self.p99_target and self.lost == 0 and self.recorder.duplicates == 0

    def cpu_per_event_per_thousand(self) -> float | None:
        """Server CPU seconds per new flow per 1,000 subscribers."""
        if self.server_cpu is None or not self.rounds:
            return None
        return self.server_cpu / len(self.rounds) / (self.subscribers / 1000)


async def open_subscribers(
    url: str, n: int, batch: int, compression: str | None, recorder: Recorder, per_socket: int = 1
) -> tuple[list[ClientConnection], list[asyncio.Task[None]]]:
    connections: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    sockets = -(-n // per_socket)
    for start in range(0, sockets, batch):
        opened = await asyncio.gather(
            *(
                subscribe(url, compression, min(per_socket, n - (start + i) * per_socket))
                for i in range(min(batch, sockets - start))
            )
        )
        connections += opened
        tasks += [asyncio.create_task(listen(ws, recorder)) for ws in opened]
    return connections, tasks


async def close_subscribers(
    connections: list[ClientConnection], tasks: list[asyncio.Task[None]], batch: int
) -> None:
    for start in range(0, len(connections), batch):
        await asyncio.gather(
            *(ws.close() for ws in connections[start : start + batch]), return_exceptions=True
        )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def subscriptions(server: Server, http: httpx.AsyncClient) -> dict[str, int]:
    body = (await http.get(f"{server.base}/health/ready")).json()
    subs: dict[str, int] = body["checks"]["subscriptions"]
    return subs


async def wait_active(server: Server, http: httpx.AsyncClient, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    active = -1
    while time.monotonic() < deadline:
        active = (await subscriptions(server, http))["active"]
        if active == n:
            return
        await asyncio.sleep(0.25)
    raise BenchError(f"{active} of {n} subscriptions active after {timeout:.0f} s")


# Warm-up flows use the last pairs, which the timed rounds (at most len(PAIRS) - 3) never reach.
WARM_UP = 3


async def post_round(server: Server, http: httpx.AsyncClient, index: int, round_: Round) -> None:
    body = orjson.dumps(records_for(index, round_.pair, datetime.now(UTC)))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    round_.sent = time.perf_counter()
    response = await http.post(f"{server.base}/v1/trends", content=body, headers=headers)
    round_.answered = time.perf_counter()
    if response.status_code != 200:
        raise BenchError(f"POST /v1/trends: {response.status_code} {response.text}")


async def warm_up(
    server: Server, http: httpx.AsyncClient, n: int, recorder: Recorder, timeout: float
) -> None:
    """Untimed new flows until one reaches all n subscribers, whichever worker holds them."""
    for attempt in range(WARM_UP):
        index = len(PAIRS) - attempt
        pair = PAIRS[index - 1]
        round_ = recorder.rounds[pair] = Round(pair)
        await post_round(server, http, index, round_)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(round_.complete.wait(), timeout)
        print(f"warm-up {attempt + 1}: {len(round_.arrivals)}/{n} delivered", flush=True)
        if round_.complete.is_set():
            return
    raise BenchError(f"no warm-up flow reached all {n} subscribers")


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and its children (uvicorn's workers), from Linux /proc."""
    total = cpu_seconds(pid)
    if total is None:
        return None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(stat.parent.name)) or 0.0
    return total


async def measure(n: int, args: argparse.Namespace) -> Result:
    """Start the services, subscribe n clients, run the rounds, tear everything down."""
    workers = getattr(args, "workers", 1)
    print(f"\n== {n} subscribers, {workers} worker(s) ==", flush=True)
    async with throwaway_database(args.admin_url) as database_url:
        with contextlib.ExitStack() as stack:
            redis_url = args.redis_url or stack.enter_context(throwaway_redis(args.redis_server))
            server = Server(database_url, redis_url, args.server_env)
            workers = getattr(args, "workers", 1)
            # Room for every socket on whichever worker accepts them.
            room = str(n + FD_MARGIN)
            server.extra_env = {
                "WS_MAX_CONNECTIONS": room,
                "MAX_CONNECTIONS": room,
                # Thousands of handshakes on one pinned CPU of a busy machine: the bench
                # measures deliveries, not how soon connection_init is answered.
                "WS_INIT_TIMEOUT_SECONDS": "120",
                "HTTP_HEADER_TIMEOUT_SECONDS": "120",
                **server.extra_env,
            }
            server.command = [
                *(sys.executable, "-m", "graph", "serve", "--port", str(server.port)),
                *("--workers", str(workers)),
            ]
            args.pinned = pin_apart(server)
            # The scenarios measured after this one get the whole machine back.
            stack.callback(os.sched_setaffinity, 0, CPUS)
            stack.callback(server.stop)
            server.start()
            limits = httpx.Limits(max_connections=4)
            async with httpx.AsyncClient(timeout=60, limits=limits) as http:
                await server.wait_healthy(http, timeout=300)  # a busy machine starts slowly
                return await _run(server, http, n, args)


async def _run(server: Server, http: httpx.AsyncClient, n: int, args: argparse.Namespace) -> Result:
    assert server.process is not None
    url = f"ws://127.0.0.1:{server.port}/graphql"
    compression = None if args.compression == "none" else "deflate"
    recorder = Recorder(n)
    started = time.perf_counter()
    per_socket = max(getattr(args, "per_socket", 1), subscriptions_per_socket(n))
    connections, tasks = await open_subscribers(
        url, n, args.connect_batch, compression, recorder, per_socket
    )
    try:
        if getattr(args, "workers", 1) == 1:
            await wait_active(server, http, n, timeout=60 + n / 50)
        else:
            await warm_up(server, http, n, recorder, args.round_timeout)
        connect_seconds = time.perf_counter() - started
        print(f"{n} subscriptions active after {connect_seconds:.1f} s", flush=True)
        await asyncio.sleep(args.settle)

        rounds: list[Round] = []
        # The load client's own collector stays out of the timed rounds: with thousands of
        # connections in its heap, one full pass stalls every receipt for 250 ms or more,
        # which would be timed as the server's delivery latency. What the rounds leave is
        # collected after them.
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu_before, client_before = tree_cpu_seconds(server.process.pid), time.process_time()
        wall_before = time.perf_counter()
        for index, pair in enumerate(PAIRS[: args.rounds], start=1):
            round_ = recorder.rounds[pair] = Round(pair)
            rounds.append(round_)
            await post_round(server, http, index, round_)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(round_.complete.wait(), args.round_timeout)
            print(round_line(index, round_, n), flush=True)
            await asyncio.sleep(args.pause)
        wall = time.perf_counter() - wall_before
        cpu_after, client_after = tree_cpu_seconds(server.process.pid), time.process_time()
        counters = await subscriptions(server, http)
    finally:
        gc.enable()
        gc.unfreeze()
        await close_subscribers(connections, tasks, args.connect_batch)

    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Result(
        subscribers=n,
        rounds=rounds,
        connect_seconds=connect_seconds,
        server_cpu=server_cpu,
        client_cpu=client_after - client_before,
        wall=wall,
        counters=counters,
        recorder=recorder,
        server_problems=server.problems(),
        workers=getattr(args, "workers", 1),
        sockets=len(connections),
        pinned=getattr(args, "pinned", "not pinned"),
    )


def subscriptions_per_socket(n: int) -> int:
    """The fewest subscriptions per socket that let n fit under this process's hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or n + FD_MARGIN <= hard:
        return 1
    return -(-n // (hard - FD_MARGIN))


def pin_apart(server: Server) -> str:
    """The server on CPU 0, this client on the others, when there are two or more."""
    cpus = CPUS
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return f"not pinned ({len(cpus)} CPU, or no taskset): server and client share"
    assert server.command is not None
    server.command = ["taskset", "-c", str(cpus[0]), *server.command]
    os.sched_setaffinity(0, cpus[1:])
    client = ",".join(map(str, cpus[1:]))
    return f"server pinned to CPU {cpus[0]}, load client to CPU {client}"


# --- output ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "lost" if math.isinf(seconds) else f"{seconds * 1000:.0f}"


def round_line(index: int, round_: Round, n: int) -> str:
    got = sorted(at - round_.sent for at in round_.arrivals)
    line = (
        f"round {index} {round_.pair[0]}->{round_.pair[1]}:"
        f" POST {ms(round_.answered - round_.sent)} ms, {len(got)}/{n} delivered"
    )
    if got:
        line += f"; first {ms(got[0])} ms, p50 {ms(percentile(got, 50))}, last {ms(got[-1])}"
    return line


HEADER = (
    f"{'subscribers':>11} {'rounds':>6} {'expected':>8} {'received':>8} {'p50 ms':>7}"
    f" {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'<=1 s':>7} {'POST ms':>9}  target"
)


def table_row(r: Result) -> str:
    values = r.latencies()
    posts = sorted(x.answered - x.sent for x in r.rounds)
    post = f"{ms(percentile(posts, 50))}/{ms(posts[-1])}"
    verdict = "met" if r.met else "MISSED"
    return (
        f"{r.subscribers:>11} {len(r.rounds):>6} {r.expected:>8} {r.received:>8}"
        f" {ms(percentile(values, 50)):>7} {ms(percentile(values, 90)):>7}"
        f" {ms(percentile(values, 99)):>7} {ms(values[-1]):>7}"
        f" {r.within_target():>7.2%} {post:>9}  {verdict}"
    )


def details(r: Result) -> list[str]:
    rec = r.recorder
    lines = [
        f"  connect+subscribe {r.connect_seconds:.1f} s; server counters after the rounds"
        " (one worker's, when there are several):"
        f" delivered {r.counters['delivered']}, dropped {r.counters['dropped']},"
        f" active {r.counters['active']}",
    ]
    lines.append(
        f"  p99 {ms(r.p99)} ms (target {ms(r.p99_target)} ms), lost {r.lost},"
        f" duplicates {rec.duplicates}; {r.sockets:,} sockets; {r.pinned}"
    )
    if r.server_cpu is not None:
        per = r.cpu_per_event_per_thousand()
        lines.append(
            f"  CPU over the rounds ({r.wall:.1f} s wall): server {r.server_cpu:.2f} s,"
            f" client {r.client_cpu:.2f} s; server {per:.3f} s per event per 1,000 subscribers"
        )
    if rec.unexpected or rec.duplicates or rec.errors or rec.closed:
        lines.append(
            f"  unexpected flows {rec.unexpected}, duplicates {rec.duplicates},"
            f" GraphQL errors {len(rec.errors)}, closed by server {rec.closed or 0}"
        )
        lines += [f"    {e}" for e in rec.errors[:5]]
    if r.server_problems:
        lines.append(f"  server logged {len(r.server_problems)} warning/error lines, e.g.:")
        lines += [f"    {line[:200]}" for line in r.server_problems[:5]]
    return lines


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"machine: {os.cpu_count()} CPUs (nproc {len(CPUS)}),"
        f" {platform.platform()}, Python {platform.python_version()},"
        f" websockets {websockets_version}, client loop {args.loop_name}"
    )
    print(
        f"{getattr(args, 'pinned', 'not pinned')}; the machine is shared with other work;"
        " latency = client receipt - just before the POST"
        " (an upper bound on the time since the commit, which happens inside the POST)"
    )
    print(f"subprotocol graphql-transport-ws, compression {args.compression}")
    load = ", ".join(f"{x:.2f}" for x in args.load_before)
    print(f"load average before the runs: {load} (other work on the machine skews the figures)")
    if args.server_env:
        print(f"extra server environment: {args.server_env}")
    print(
        "targets: p99 under 250 ms on 1 worker, under 1 s on 2; none lost, none twice"
        " (the share within 1 s is shown too)\n"
    )
    print(HEADER)
    for r in results:
        print(table_row(r))
    print("  (POST ms: median/max round trip of the ingest; 'lost' = never delivered)")
    for r in results:
        print(f"\n{r.subscribers} subscribers:")
        print("\n".join(details(r)))
        print(
            f"  target {'met' if r.met else 'MISSED'}: p99 {ms(r.p99)} ms"
            f" (<= {ms(r.p99_target)}), lost {r.lost}, duplicates {r.recorder.duplicates}"
        )
    print(f"\nreproduce: {shlex.join([sys.executable, *sys.argv])}")


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subscribers", type=int, nargs="+", default=[1000], help="one run per count"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help=f"new flows, 1..{len(PAIRS) - WARM_UP}"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server worker processes (serve --workers)"
    )
    parser.add_argument("--connect-batch", type=int, default=100, help="connections at a time")
    parser.add_argument(
        "--per-socket",
        type=int,
        default=1,
        help="subscriptions per socket (at least what the hard ulimit -n needs)",
    )
    parser.add_argument("--round-timeout", type=float, default=30.0, help="seconds per round")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before round 1")
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="offer permessage-deflate, as browsers do (default) or not",
    )
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL to create the db on")
    parser.add_argument(
        "--redis-url",
        help="use this Redis instead of a throwaway redis-server (pub/sub channels are"
        " server-wide: another trendmap on it would see the benchmark's flows)",
    )
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    parser.add_argument(
        "--server-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the server, e.g. SUBSCRIBER_QUEUE_SIZE=64 (repeatable)",
    )
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """run.py's options for scenario e."""
    parser.add_argument(
        "--subscribers-one", type=int, default=5_000, help="e: subscribers on one worker"
    )
    parser.add_argument(
        "--subscribers-two", type=int, default=20_000, help="e: subscribers on two workers"
    )
    parser.add_argument("--subscriber-rounds", type=int, default=5, help="e: timed new flows")


def scenarios(args: argparse.Namespace) -> list[Row]:
    """Target e for run.py: N subscribers on one worker, then 2N on two (smaller with --quick)."""
    quick = getattr(args, "quick", False)
    plan = [
        (500 if quick else getattr(args, "subscribers_one", 5_000), 1),
        (1_000 if quick else getattr(args, "subscribers_two", 20_000), 2),
    ]
    rows = []
    for n, workers in plan:
        options = build_parser().parse_args(["--subscribers", str(n)])
        options.workers = workers
        options.connect_batch = 50  # handshakes at a pace a busy 2-CPU machine keeps up with
        options.rounds = 2 if quick else getattr(args, "subscriber_rounds", 5)
        options.admin_url = getattr(args, "admin_url", ADMIN_URL)
        options.redis_server = getattr(args, "redis_server", "redis-server")
        options.server_env = {}
        raise_fd_limit(n + FD_MARGIN)
        result = run_loop()(measure(n, options))
        rows.append(result_row(result, workers, quick))
    return rows


def result_row(r: Result, workers: int, quick: bool) -> Row:
    values = r.latencies()
    per = r.cpu_per_event_per_thousand()
    cpu = "" if per is None else f"; server CPU {per:.3f} s per event per 1,000 subscribers"
    return Row(
        scenario="e",
        measure=f"hotFlows delivery, {r.subscribers:,} subscribers on {workers} worker(s)",
        value=f"p99 {ms(r.p99)} ms",
        baseline=None,
        ratio=None,
        target=f"p99 < {ms(r.p99_target)} ms, none lost or twice"
        + (" (quick run)" if quick else ""),
        met=None if quick else r.met,
        note=(
            f"{len(r.rounds)} rounds, received {r.received:,}/{r.expected:,}, lost {r.lost},"
            f" duplicates {r.recorder.duplicates}; p50 {ms(percentile(values, 50))} ms, max"
            f" {ms(values[-1])} ms, {r.within_target():.2%} within 1 s{cpu};"
            f" {r.sockets:,} sockets; {r.pinned}"
        ),
    )


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.server_env = dict(args.server_env)
    if not 1 <= args.rounds <= len(PAIRS) - WARM_UP:
        raise SystemExit(f"--rounds must be 1..{len(PAIRS) - WARM_UP}")
    if not args.redis_url and shutil.which(args.redis_server) is None:
        raise SystemExit(f"{args.redis_server} not found: install redis or pass --redis-url")
    # Both ends of every connection may live in this process tree: the server inherits it.
    raise_fd_limit(max(args.subscribers) + FD_MARGIN)
    runner = run_loop()
    args.loop_name = "asyncio" if runner is asyncio.run else "uvloop"

    args.load_before = os.getloadavg()

    async def run_all() -> list[Result]:
        return [await measure(n, args) for n in args.subscribers]

    try:
        results = runner(run_all())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
