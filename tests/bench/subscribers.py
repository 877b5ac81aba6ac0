"""Benchmark: how soon a new hot flow reaches N GraphQL subscribers on one worker.

Target (issue): with 1,000 subscribers on one worker, 99% of deliveries arrive within 1 s of
the ingest commit. This is a measurement, not a test: it prints the figures and whether the
target is met, and exits 0 either way (2 only when the benchmark itself could not run).

Per subscriber count N it starts a throwaway PostgreSQL database, a throwaway redis-server and
one ``python -m graph serve --workers 1``; opens N ``graphql-transport-ws`` subscriptions to
``hotFlows`` from this one asyncio process; then, round after round, POSTs a new pair of
countries with identical topics an hour apart (one new hot flow) and times every delivery
from just before the POST was sent, an upper bound on the time since the commit. See README.md.

    python tests/bench/subscribers.py --subscribers 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.version import version as websockets_version

TARGET_SECONDS = 1.0
TARGET_FRACTION = 0.99
API_KEY = "bench"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
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


class BenchError(Exception):
    """The benchmark could not run (not a missed target)."""


# --- the services under the benchmark -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL if it is still there."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def throwaway_redis(executable: str) -> Iterator[str]:
    """A redis-server of our own on a free port, no persistence; yields its URL."""
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
                s.settimeout(1)
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process, 5)


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def throwaway_database(admin_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped at the end; yields its URL."""
    name = f"trendmap_bench_{uuid.uuid4().hex[:8]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        base, _, _ = admin_url.rpartition("/")
        yield f"{base}/{name}"
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Server:
    """One ``graph serve --workers 1`` process, its output in a log file."""

    database_url: str
    redis_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "API_KEYS": API_KEY,
            "LOG_LEVEL": "WARNING",
            # Thousands of sockets from one address would exceed any per-client budget.
            "RATE_LIMIT_ENABLED": "false",
            **self.extra_env,
        }
        command = [sys.executable, "-m", "graph", "serve", "--port", str(self.port)]
        command += ["--workers", "1"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    async def wait_healthy(self, http: httpx.AsyncClient, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"server exited ({self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{self.base}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise BenchError(f"server not healthy after {timeout:.0f} s:\n{self.tail()}")

    async def subscriptions(self, http: httpx.AsyncClient) -> dict[str, int]:
        body = (await http.get(f"{self.base}/health/ready")).json()
        subs: dict[str, int] = body["checks"]["subscriptions"]
        return subs

    def problems(self) -> list[str]:
        """Log lines that look like errors (the server logs at WARNING and above)."""
        words = ("error", "exception", "traceback", "warning")
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if any(w in line.lower() for w in words)]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 20)
        self.log.unlink(missing_ok=True)


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


async def subscribe(url: str, compression: str | None) -> ClientConnection:
    """Open one connection and start its hotFlows subscription."""
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
    ack = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
    if ack.get("type") != "connection_ack":
        raise BenchError(f"expected connection_ack, got {ack}")
    await ws.send(orjson.dumps(SUBSCRIBE), text=True)
    return ws


async def listen(ws: ClientConnection, recorder: Recorder) -> None:
    """Record each delivery's arrival time (taken first, before any parsing)."""
    seen: set[Pair] = set()
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
                recorder.arrived((data["fromCountry"], data["toCountry"]), seen, at)
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


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (inf stands for a delivery that never came)."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


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
    def met(self) -> bool:
        return self.within_target() >= TARGET_FRACTION


async def open_subscribers(
    url: str, n: int, batch: int, compression: str | None, recorder: Recorder
) -> tuple[list[ClientConnection], list[asyncio.Task[None]]]:
    connections: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, n, batch):
        opened = await asyncio.gather(
            *(subscribe(url, compression) for _ in range(min(batch, n - start)))
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


async def wait_active(server: Server, http: httpx.AsyncClient, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    active = -1
    while time.monotonic() < deadline:
        active = (await server.subscriptions(http))["active"]
        if active == n:
            return
        await asyncio.sleep(0.25)
    raise BenchError(f"{active} of {n} subscriptions active after {timeout:.0f} s")


async def measure(n: int, args: argparse.Namespace) -> Result:
    """Start the services, subscribe n clients, run the rounds, tear everything down."""
    print(f"\n== {n} subscribers ==", flush=True)
    async with throwaway_database(args.admin_url) as database_url:
        with contextlib.ExitStack() as stack:
            redis_url = args.redis_url or stack.enter_context(throwaway_redis(args.redis_server))
            server = Server(database_url, redis_url, args.server_env)
            stack.callback(server.stop)
            server.start()
            limits = httpx.Limits(max_connections=4)
            async with httpx.AsyncClient(timeout=60, limits=limits) as http:
                await server.wait_healthy(http)
                return await _run(server, http, n, args)


async def _run(server: Server, http: httpx.AsyncClient, n: int, args: argparse.Namespace) -> Result:
    assert server.process is not None
    url = f"ws://127.0.0.1:{server.port}/graphql"
    compression = None if args.compression == "none" else "deflate"
    recorder = Recorder(n)
    started = time.perf_counter()
    connections, tasks = await open_subscribers(url, n, args.connect_batch, compression, recorder)
    try:
        await wait_active(server, http, n, timeout=60 + n / 50)
        connect_seconds = time.perf_counter() - started
        print(f"{n} subscriptions active after {connect_seconds:.1f} s", flush=True)
        await asyncio.sleep(args.settle)

        rounds: list[Round] = []
        cpu_before, client_before = cpu_seconds(server.process.pid), time.process_time()
        wall_before = time.perf_counter()
        for index, pair in enumerate(PAIRS[: args.rounds], start=1):
            round_ = recorder.rounds[pair] = Round(pair)
            rounds.append(round_)
            body = orjson.dumps(records_for(index, pair, datetime.now(UTC)))
            headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
            round_.sent = time.perf_counter()
            response = await http.post(f"{server.base}/v1/trends", content=body, headers=headers)
            round_.answered = time.perf_counter()
            if response.status_code != 200:
                raise BenchError(f"POST /v1/trends: {response.status_code} {response.text}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(round_.complete.wait(), args.round_timeout)
            print(round_line(index, round_, n), flush=True)
            await asyncio.sleep(args.pause)
        wall = time.perf_counter() - wall_before
        cpu_after, client_after = cpu_seconds(server.process.pid), time.process_time()
        counters = await server.subscriptions(http)
    finally:
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
    )


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
        f"  connect+subscribe {r.connect_seconds:.1f} s; server counters after the rounds:"
        f" delivered {r.counters['delivered']}, dropped {r.counters['dropped']},"
        f" active {r.counters['active']}",
    ]
    if r.server_cpu is not None:
        lines.append(
            f"  CPU over the rounds ({r.wall:.1f} s wall): server {r.server_cpu:.2f} s,"
            f" client {r.client_cpu:.2f} s"
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
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}),"
        f" {platform.platform()}, Python {platform.python_version()},"
        f" websockets {websockets_version}, client loop {args.loop_name}"
    )
    print(
        "server and client share those CPUs; latency = client receipt - just before the POST"
        " (an upper bound on the time since the commit, which happens inside the POST)"
    )
    print(f"subprotocol graphql-transport-ws, compression {args.compression}")
    load = ", ".join(f"{x:.2f}" for x in args.load_before)
    print(f"load average before the runs: {load} (other work on the machine skews the figures)")
    if args.server_env:
        print(f"extra server environment: {args.server_env}")
    print(f"target: {TARGET_FRACTION:.0%} of deliveries within {TARGET_SECONDS:.0f} s\n")
    print(HEADER)
    for r in results:
        print(table_row(r))
    print("  (POST ms: median/max round trip of the ingest; 'lost' = never delivered)")
    for r in results:
        print(f"\n{r.subscribers} subscribers:")
        print("\n".join(details(r)))
        print(f"  target {'met' if r.met else 'MISSED'}: {r.within_target():.2%} within 1 s")
    print(f"\nreproduce: {shlex.join([sys.executable, *sys.argv])}")


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subscribers", type=int, nargs="+", default=[1000], help="one run per count"
    )
    parser.add_argument("--rounds", type=int, default=5, help=f"new flows, 1..{len(PAIRS)}")
    parser.add_argument("--connect-batch", type=int, default=100, help="connections at a time")
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


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.server_env = dict(args.server_env)
    if not 1 <= args.rounds <= len(PAIRS):
        raise SystemExit(f"--rounds must be 1..{len(PAIRS)}")
    if not args.redis_url and shutil.which(args.redis_server) is None:
        raise SystemExit(f"{args.redis_server} not found: install redis or pass --redis-url")
    # Both ends of every connection may live in this process tree: the server inherits it.
    raise_fd_limit(2 * max(args.subscribers) + 256)
    try:
        import uvloop
    except ImportError:
        runner: Any = asyncio.run
        args.loop_name = "asyncio"
    else:
        runner = uvloop.run
        args.loop_name = "uvloop"

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
