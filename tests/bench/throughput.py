"""Scenarios a, b and f: HTTP throughput against a bare baseline, and overload.

Everything runs on this machine: a throwaway PostgreSQL database and redis-server, the service
(one uvicorn worker) and the baseline (tests/bench/bare.py: the same bytes from a bare
Starlette app, same uvicorn settings), and ``wrk`` as the load generator (a Python client
would saturate before a 2-core server does). Each figure is next to the baseline measured in
the same run; the ratio is what holds on a shared machine.

a  cached ``GET /v1/flows?limit=20``: requests/s against the baseline, and p99 at 64
   connections. Also the same with METRICS_ENABLED=false (the instrumentation's cost).
b  GraphQL ``flows(limit: 20)``: the same operation repeated (parsing and validation cached),
   and a distinct operation each time (a new operation name per request, so no document
   cache helps: every request is lexed, parsed, validated and executed). The service's
   answer cache stays on in both: "caching off" is about the GraphQL layer. A context row
   repeats the distinct run with USE_CACHE=false (the window's aggregates then come from
   PostgreSQL on every request).
f  overload: paced clients offering twice the saturated rate of b's distinct operations
   (each connection sends one request per second, 2 x saturation connections), against the
   service with its default admission control and, as the baseline, with admission off.
   Target: no request times out (wrk's 2 s); the excess gets a fast 503.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pycountry

from tests.bench.common import (
    ADMIN_URL,
    API_KEY,
    BenchError,
    Row,
    Server,
    free_port,
    raise_fd_limit,
    ratio,
    throwaway_database_sync,
    throwaway_redis,
    uvicorn_command,
)

WRK_MISSING = (
    "wrk not found: the HTTP scenarios need it as their load generator."
    " Install it: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS),"
    " or build https://github.com/wg/wrk and put it on PATH (or pass --wrk)."
)
FLOWS_PATH = "/v1/flows?time_window=24h&limit=20"
SELECTION = "fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore"
GRAPHQL = 'query %s { flows(timeWindow: "24h", limit: 20) { ' + SELECTION + " } }"
CONNECTIONS = 64
TIMEOUT_SECONDS = 2
FLOWS_WANTED = 20

# One Lua script for every run: a method and body, an optional new operation name per
# request, optional pacing, and a count of the statuses seen (wrk counts only non-2xx).
LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  method, body_file, distinct, pace = args[1], args[2], args[3] == "1", tonumber(args[4])
  body = nil
  if body_file ~= "-" then
    local f = assert(io.open(body_file, "rb")); body = f:read("*a"); f:close()
  end
  counter = math.random(1, 1000000000)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench"}
end
function request()
  local b = body
  if distinct then
    counter = counter + 1
    b = string.format(body, "Q" .. counter)
  end
  return wrk.format(method, nil, headers, b)
end
function delay()
  if pace > 0 then return math.random(math.floor(pace / 2), pace + math.floor(pace / 2)) end
  return 0
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      io.write(string.format("STATUS %d %d\n", status, n))
    end
  end
  io.write(string.format("LATENCY %d %d %d %d\n", latency:percentile(50),
    latency:percentile(99), latency.max, summary.requests))
  io.write(string.format("ERRORS %d %d %d %d %d\n", summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
end
"""


@dataclass
class Load:
    """What one wrk run saw."""

    rate: float  # completed requests per second (any status)
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0

    def count(self, low: int, high: int) -> int:
        return sum(n for status, n in self.statuses.items() if low <= status < high)

    @property
    def ok_rate(self) -> float:
        return self.count(200, 300) / self.seconds

    @property
    def refused(self) -> int:
        return self.statuses.get(503, 0) + self.statuses.get(429, 0)

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors


class Wrk:
    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.script = workdir / "bench.lua"
        self.script.write_text(LUA)

    def run(
        self,
        url: str,
        *,
        seconds: float,
        connections: int = CONNECTIONS,
        method: str = "GET",
        body: Path | None = None,
        distinct: bool = False,
        pace_ms: int = 0,
        threads: int = 1,
    ) -> Load:
        command = [self.executable, "-t", str(threads), "-c", str(connections)]
        command += ["-d", f"{max(1, round(seconds))}s", "--timeout", f"{TIMEOUT_SECONDS}s"]
        command += ["-s", str(self.script), url, "--", method, str(body or "-")]
        command += ["1" if distinct else "0", str(pace_ms)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
        if done.returncode != 0 or "script error" in done.stderr + done.stdout:
            raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk(done.stdout, max(1, round(seconds)))


def parse_wrk(text: str, seconds: float) -> Load:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    latency = re.search(r"^LATENCY (\d+) (\d+) (\d+) (\d+)$", text, re.M)
    errors = re.search(r"^ERRORS (\d+) (\d+) (\d+) (\d+) (\d+)$", text, re.M)
    if rate is None or latency is None or errors is None:
        raise BenchError(f"cannot read wrk's output:\n{text}")
    p50, p99, most, requests = (int(x) for x in latency.groups())
    connect, read, write, timeout, _status = (int(x) for x in errors.groups())
    statuses = {int(s): int(n) for s, n in re.findall(r"^STATUS (\d+) (\d+)$", text, re.M)}
    return Load(
        rate=float(rate.group(1)),
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
        max_ms=most / 1000,
        requests=requests,
        seconds=seconds,
        statuses=statuses,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


# --- the data and the servers ---------------------------------------------------------------


def seed_records(now: datetime) -> list[dict[str, Any]]:
    """Twenty pairs of countries, B picking up A's topics an hour later: 20 hot flows."""
    codes = sorted(c.alpha_2 for c in pycountry.countries)[: 2 * FLOWS_WANTED]
    records = []
    for i in range(FLOWS_WANTED):
        a, b = codes[2 * i], codes[2 * i + 1]
        for country, hours in ((a, 3), (b, 2)):
            for word in ("Alpha", "Beta", "Gamma"):
                records.append(
                    {
                        "timestamp": (now - timedelta(hours=hours)).isoformat(),
                        "country": country,
                        "topic_label": f"Bench {i} {word}",
                        "count": 100,
                        "confidence": 0.9,
                    }
                )
    return records


def started(server: Server) -> Server:
    server.start()
    try:
        server.wait_healthy_sync()
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def service(database_url: str, redis_url: str, **env: str) -> Iterator[Server]:
    port = free_port()
    command = uvicorn_command("graph.http.app:create_app", port, factory=True)
    server = started(Server(database_url, redis_url, dict(env), port=port, command=command))
    try:
        yield server
    finally:
        server.stop()


def capture(base: str) -> tuple[bytes, bytes]:
    """Seed the data, then the service's own answers (cached) for the baseline to replay."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
        stored = http.post("/v1/trends", json=seed_records(datetime.now(UTC)))
        if stored.status_code != 200:
            raise BenchError(f"seeding failed: {stored.status_code} {stored.text}")
        for _ in range(2):
            flows = http.get(FLOWS_PATH)
        if flows.status_code != 200 or len(flows.json()["flows"]) != FLOWS_WANTED:
            raise BenchError(f"expected {FLOWS_WANTED} flows, got {flows.text[:300]}")
        graphql = http.post("/graphql", json={"query": GRAPHQL % "Bench"})
        answer = graphql.json()
        if graphql.status_code != 200 or len(answer["data"]["flows"]) != FLOWS_WANTED:
            raise BenchError(f"GraphQL flows failed: {graphql.text[:300]}")
        return flows.content, graphql.content


# --- the scenarios --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wrk", default="wrk", help="the wrk executable (scenarios a, b, f)")
    parser.add_argument(
        "--seconds", type=float, help="seconds per load run (default 10; 2 with --quick)"
    )


def scenarios(args: argparse.Namespace) -> list[Row]:
    wanted = set(args.only) & {"a", "b", "f"}
    if not wanted:
        return []
    executable = shutil.which(args.wrk)
    if executable is None:
        raise BenchError(WRK_MISSING)
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    with tempfile.TemporaryDirectory(prefix="trendmap-bench-") as tmp:
        workdir = Path(tmp)
        wrk = Wrk(executable, workdir)
        with (
            throwaway_database_sync(getattr(args, "admin_url", ADMIN_URL)) as database_url,
            throwaway_redis(getattr(args, "redis_server", "redis-server")) as redis_url,
        ):
            return _measure(wanted, wrk, workdir, seconds, database_url, redis_url, args)


def _measure(
    wanted: set[str],
    wrk: Wrk,
    workdir: Path,
    seconds: float,
    database_url: str,
    redis_url: str,
    args: argparse.Namespace,
) -> list[Row]:
    rows: list[Row] = []
    query = workdir / "graphql.json"
    query.write_bytes(orjson.dumps({"query": GRAPHQL % "Bench"}))
    # The Lua script puts a new operation name in place of %s (string.format) each request.
    template = workdir / "distinct.json"
    template.write_bytes(orjson.dumps({"query": GRAPHQL}))
    warm = max(1.0, seconds / 5)

    with service(database_url, redis_url) as svc:
        flows_body, graphql_body = capture(svc.base)
        bodies = workdir / "bodies"
        bodies.mkdir()
        (bodies / "flows.json").write_bytes(flows_body)
        (bodies / "graphql.json").write_bytes(graphql_body)

        loads: dict[str, Load] = {}
        if "a" in wanted:
            wrk.run(svc.base + FLOWS_PATH, seconds=warm)
            loads["a"] = wrk.run(svc.base + FLOWS_PATH, seconds=seconds)
        if "b" in wanted:
            post = {"method": "POST", "body": query}
            wrk.run(svc.base + "/graphql", seconds=warm, **post)
            loads["b1"] = wrk.run(svc.base + "/graphql", seconds=seconds, **post)
        if "b" in wanted or "f" in wanted:
            distinct = {"method": "POST", "body": template, "distinct": True}
            wrk.run(svc.base + "/graphql", seconds=warm, **distinct)
            loads["b2"] = wrk.run(svc.base + "/graphql", seconds=seconds, **distinct)

    bare_port = free_port()
    bare = Server(
        database_url,
        None,
        {"BENCH_BODIES": str(bodies)},
        port=bare_port,
        command=uvicorn_command("tests.bench.bare:create_app", bare_port, factory=True),
    )
    started(bare)
    try:
        wrk.run(bare.base + FLOWS_PATH, seconds=warm)
        base_get = wrk.run(bare.base + FLOWS_PATH, seconds=seconds)
        post = {"method": "POST", "body": query}
        wrk.run(bare.base + "/graphql", seconds=warm, **post)
        base_post = wrk.run(bare.base + "/graphql", seconds=seconds, **post)
    finally:
        bare.stop()

    if "a" in wanted:
        rows += _rows_a(loads["a"], base_get, wrk, seconds, warm, database_url, redis_url)
    if "b" in wanted:
        rows += _rows_b(loads, base_post, wrk, template, seconds, warm, database_url, redis_url)
    if "f" in wanted:
        rows += _rows_f(loads["b2"], wrk, template, seconds, database_url, redis_url, args)
    return rows


def _rate(load: Load) -> str:
    return f"{load.ok_rate:,.0f} req/s"


def _problems(load: Load) -> str:
    bad = load.count(300, 600)
    parts = []
    if bad:
        parts.append(f"{bad} non-2xx")
    if load.socket_errors or load.timeouts:
        parts.append(f"{load.socket_errors} socket errors, {load.timeouts} timeouts")
    return "; ".join(parts)


def _rows_a(
    load: Load,
    bare: Load,
    wrk: Wrk,
    seconds: float,
    warm: float,
    database_url: str,
    redis_url: str,
) -> list[Row]:
    with service(database_url, redis_url, METRICS_ENABLED="false") as plain:
        wrk.run(plain.base + FLOWS_PATH, seconds=warm)
        unmetered = wrk.run(plain.base + FLOWS_PATH, seconds=seconds)
    share = load.ok_rate / bare.ok_rate if bare.ok_rate else 0.0
    cost = 1 - load.ok_rate / unmetered.ok_rate if unmetered.ok_rate else 0.0
    per_request_us = (1 / load.ok_rate - 1 / unmetered.ok_rate) * 1e6 if load.ok_rate else 0.0
    return [
        Row(
            "a",
            f"cached GET /v1/flows (20 flows), {CONNECTIONS} connections",
            _rate(load),
            _rate(bare),
            ratio(load.ok_rate, bare.ok_rate),
            ">= 80% of bare",
            share >= 0.8 and not _problems(load),
            _problems(load),
        ),
        Row(
            "a",
            f"p99 latency, {CONNECTIONS} connections",
            f"{load.p99_ms:.1f} ms",
            f"{bare.p99_ms:.1f} ms",
            None,
            "< 30 ms",
            load.p99_ms < 30,
            f"p50 {load.p50_ms:.1f} ms",
        ),
        Row(
            "a",
            "same with METRICS_ENABLED=false (instrumentation cost)",
            _rate(unmetered),
            None,
            None,
            "context",
            None,
            f"/metrics costs {cost:.1%} of throughput, about {per_request_us:.0f} us a request",
        ),
    ]


def _rows_b(
    loads: dict[str, Load],
    bare: Load,
    wrk: Wrk,
    template: Path,
    seconds: float,
    warm: float,
    database_url: str,
    redis_url: str,
) -> list[Row]:
    repeated, distinct = loads["b1"], loads["b2"]
    post = {"method": "POST", "body": template, "distinct": True}
    with service(database_url, redis_url, USE_CACHE="false") as uncached:
        wrk.run(uncached.base + "/graphql", seconds=warm, **post)
        cold = wrk.run(uncached.base + "/graphql", seconds=seconds, **post)
    return [
        Row(
            "b",
            "GraphQL flows (20), the same operation repeated",
            _rate(repeated),
            _rate(bare),
            ratio(repeated.ok_rate, bare.ok_rate),
            ">= 60% of bare",
            repeated.ok_rate >= 0.6 * bare.ok_rate and not _problems(repeated),
            _problems(repeated),
        ),
        Row(
            "b",
            "GraphQL flows (20), a distinct operation each request",
            _rate(distinct),
            _rate(bare),
            ratio(distinct.ok_rate, bare.ok_rate),
            ">= 20% of bare",
            distinct.ok_rate >= 0.2 * bare.ok_rate and not _problems(distinct),
            _problems(distinct),
        ),
        Row(
            "b",
            "distinct operations with USE_CACHE=false (aggregates from PostgreSQL)",
            _rate(cold),
            _rate(bare),
            ratio(cold.ok_rate, bare.ok_rate),
            "context",
            None,
            _problems(cold),
        ),
    ]


def _rows_f(
    saturated: Load,
    wrk: Wrk,
    template: Path,
    seconds: float,
    database_url: str,
    redis_url: str,
    args: argparse.Namespace,
) -> list[Row]:
    # Each connection sends about one request a second: 2 x saturation connections offer
    # twice what the worker can serve, and without admission they would wait ~2 s each.
    pace_ms = 1000
    connections = max(CONNECTIONS, min(4000, math.ceil(2 * saturated.ok_rate)))
    raise_fd_limit(2 * connections + 1024)
    seconds = max(seconds, 5.0)
    post = {"method": "POST", "body": template, "distinct": True, "pace_ms": pace_ms}
    offered = f"{connections} clients x 1 req/s = 2 x {saturated.ok_rate:,.0f} req/s"
    results: dict[str, Load] = {}
    for name, env in (("on", {}), ("off", {"MAX_INFLIGHT_REQUESTS": "1000000"})):
        with service(database_url, redis_url, **env) as svc:
            results[name] = wrk.run(
                svc.base + "/graphql", seconds=seconds, connections=connections, **post
            )
    on, off = results["on"], results["off"]
    lost = on.timeouts + on.socket_errors
    return [
        Row(
            "f",
            f"timeouts at 2x saturation ({offered})",
            f"{on.timeouts} timeouts, {on.socket_errors} socket errors of {on.requests}",
            f"{off.timeouts} timeouts, {off.socket_errors} socket errors (admission off)",
            None,
            f"no timeouts (wrk --timeout {TIMEOUT_SECONDS}s)",
            lost == 0,
        ),
        Row(
            "f",
            "the excess refused fast (503/429)",
            f"{on.refused} refused, p99 {on.p99_ms:.0f} ms, max {on.max_ms:.0f} ms",
            f"p99 {off.p99_ms:.0f} ms, max {off.max_ms:.0f} ms (admission off)",
            None,
            f"max latency < {TIMEOUT_SECONDS} s",
            on.max_ms < TIMEOUT_SECONDS * 1000 and lost == 0,
            f"{on.count(200, 300)} answered 200; {on.count(500, 600) - on.refused} other 5xx",
        ),
        Row(
            "f",
            "goodput under overload (2xx/s)",
            _rate(on),
            _rate(saturated),
            ratio(on.ok_rate, saturated.ok_rate),
            "context",
            None,
            f"admission off: {_rate(off)}",
        ),
    ]
