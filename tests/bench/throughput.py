"""Scenarios a, b and f: HTTP throughput against a bare baseline and a stock peer, and overload.

Everything runs on this machine: a throwaway PostgreSQL database and redis-server, the service
(one uvicorn worker, rate limiting and metrics on, as in production: common.RATE_LIMITED), the
baseline (tests/bench/bare.py: the same bytes from a bare Starlette app, same uvicorn
settings), the peer (tests/bench/peer.py: FastAPI, pydantic response models, a Redis read per
request and strawberry's stock GraphQLRouter, same uvicorn settings), and ``wrk`` as the load
generator (a Python client would saturate before a 2-core server does). Each figure is next to
the baseline and the peer measured in the same run; the ratios are what hold on a shared
machine. The targets are against bare: a's GET and b's repeated POST alternate with bare's,
PAIRED_ROUNDS runs each, and each side's median is kept, so that drift on the machine between
two runs is not taken for a difference between the servers.

a  cached ``GET /v1/flows?limit=20``: requests/s (>= 80% of bare) and p99 at 64 connections
   (< 20 ms); the same request with ``If-None-Match`` answered 304 (>= 90% of bare's full
   answers; "not built" while the service sends no ETag). Also the plain GET with
   METRICS_ENABLED=false (the instrumentation's cost).
b  GraphQL ``flows(limit: 20)``: the same operation repeated (>= 70%), the same document with
   new variables each request (a new threshold, so no answer is cached for them: >= 30%), and
   a distinct operation each time (a new operation name per request, so no document cache
   helps: every request is lexed, parsed, validated and executed: >= 10%). The service's
   answer cache stays on: "caching off" is about the GraphQL layer. A context row repeats the
   distinct run with USE_CACHE=false (the window's aggregates then come from PostgreSQL on
   every request).
f  overload: paced clients offering twice the saturated rate of b's distinct operations
   (each connection sends one request per second, 2 x saturation connections), against the
   service with its default admission control and, as the baseline, with admission off.
   Target: no request times out (wrk's 2 s); the excess gets a fast 503.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pycountry
import redis

from tests.bench.common import (
    ADMIN_URL,
    API_KEY,
    BENCH_CLIENTS,
    CLIENT_KEY,
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
# The same document each time with a new threshold in [0.5, 0.51): the same 20 flows (heat
# 0.89), but variables no answer was cached for.
VARIABLES = (
    'query Flows($t: Float) { flows(timeWindow: "24h", limit: 20, threshold: $t) { '
    + SELECTION
    + " } }"
)
PEER_KEY = "bench:peer:flows"
CONNECTIONS = 64
TIMEOUT_SECONDS = 2
# The headline runs (a's GET, b's repeated POST) alternate with bare's this many times, each
# side's median kept: on a shared machine, throughput drifts by a third within minutes, and
# figures taken a minute apart would measure the drift as much as the servers.
PAIRED_ROUNDS = 3
PAIRED = ("get", "repeated")
FLOWS_WANTED = 20

# One Lua script for every run: a method and body, an optional new operation name per
# request, optional pacing, the number of clients whose keys take turns (0: the one key
# API_KEY; client i's is CLIENT_KEY with i), and a count of the statuses seen (wrk counts only
# non-2xx).
LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  method, body_file, mode, pace = args[1], args[2], args[3], tonumber(args[4])
  body = nil
  if body_file ~= "-" then
    local f = assert(io.open(body_file, "rb")); body = f:read("*a"); f:close()
  end
  counter = math.random(1, 1000000000)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[7]}
  if args[5] ~= "-" then headers["If-None-Match"] = args[5] end
  keys, turn = {}, math.random(0, 1000000)
  for i = 0, tonumber(args[6]) - 1 do keys[i + 1] = "Bearer " .. args[8] .. i end
end
function request()
  local b = body
  if #keys > 0 then
    turn = turn + 1
    headers["Authorization"] = keys[turn % #keys + 1]
  end
  if mode == "distinct" then
    counter = counter + 1
    b = string.format(body, "Q" .. counter)
  elseif mode == "variables" then
    counter = counter + 1
    b = string.format(body, string.format("0.5%06d", counter % 1000000))
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
        mode: str = "same",
        pace_ms: int = 0,
        threads: int = 1,
        etag: str | None = None,
        clients: int = BENCH_CLIENTS,
    ) -> Load:
        """``mode``: "same" body every request, "distinct" (a new operation name in the body's
        %s) or "variables" (a new threshold in it); ``etag`` is sent as If-None-Match;
        ``clients``: how many API keys take turns (0: every request from the one key)."""
        command = [self.executable, "-t", str(threads), "-c", str(connections)]
        command += ["-d", f"{max(1, round(seconds))}s", "--timeout", f"{TIMEOUT_SECONDS}s"]
        command += ["-s", str(self.script), url, "--", method, str(body or "-")]
        command += [mode, str(pace_ms), etag or "-", str(clients)]
        command += [API_KEY, CLIENT_KEY.format("")]  # the keys' prefix (client i's: prefix + i)
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


@dataclass
class Captured:
    """The service's own answers (cached), for the baseline and the peer to replay."""

    flows: bytes
    graphql: bytes
    etag: str | None


def capture(base: str) -> Captured:
    """Seed the data, then capture the service's answers."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
        stored = http.post("/v1/trends", json=seed_records(datetime.now(UTC)))
        if stored.status_code != 200:
            raise BenchError(f"seeding failed: {stored.status_code} {stored.text}")
        for _ in range(2):
            flows = http.get(FLOWS_PATH)
        if "ratelimit" not in flows.headers:
            raise BenchError("the service answered with no RateLimit header: limits are off")
        if flows.status_code != 200 or len(flows.json()["flows"]) != FLOWS_WANTED:
            raise BenchError(f"expected {FLOWS_WANTED} flows, got {flows.text[:300]}")
        graphql = http.post("/graphql", json={"query": GRAPHQL % "Bench"})
        answer = graphql.json()
        if graphql.status_code != 200 or len(answer["data"]["flows"]) != FLOWS_WANTED:
            raise BenchError(f"GraphQL flows failed: {graphql.text[:300]}")
        return Captured(flows.content, graphql.content, flows.headers.get("etag"))


def register_apq(base: str) -> str:
    """Register b's operation as an Automatic Persisted Query (its document and its sha256 in
    one POST); the path and query string of a GET that names it by hash alone."""
    document = GRAPHQL % "Bench"
    digest = sha256(document.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
        stored = http.post("/graphql", json={"query": document, "extensions": extensions})
        path = "/graphql?" + urlencode({"extensions": orjson.dumps(extensions).decode()})
        answer = http.get(path)
        if (
            stored.status_code != 200
            or answer.status_code != 200
            or len(answer.json().get("data", {}).get("flows", [])) != FLOWS_WANTED
        ):
            raise BenchError(f"the APQ GET failed: {answer.status_code} {answer.text[:300]}")
    return path


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
    query = workdir / "graphql.json"
    query.write_bytes(orjson.dumps({"query": GRAPHQL % "Bench"}))
    # The Lua script puts a new operation name, or a new threshold, in place of %s each request.
    template = workdir / "distinct.json"
    template.write_bytes(orjson.dumps({"query": GRAPHQL}))
    variables = workdir / "variables.json"
    variables.write_bytes(b'{"query": ' + orjson.dumps(VARIABLES) + b', "variables": {"t": %s}}')
    post = {"method": "POST", "body": query}
    runs: dict[str, tuple[str, dict[str, Any]]] = {
        "get": (FLOWS_PATH, {}),
        "repeated": ("/graphql", post),
        "variables": ("/graphql", {"method": "POST", "body": variables, "mode": "variables"}),
        "distinct": ("/graphql", {"method": "POST", "body": template, "mode": "distinct"}),
    }
    warm = max(1.0, seconds / 5)

    def measure(base: str, names: list[str]) -> dict[str, Load]:
        loads = {}
        for name in names:
            path, options = runs[name]
            wrk.run(base + path, seconds=warm, **options)
            loads[name] = wrk.run(base + path, seconds=seconds, **options)
        return loads

    def measure_paired(base: str, baseline: str, name: str) -> tuple[Load, Load]:
        """Service and bare, one run each in turn, PAIRED_ROUNDS times: each side's median."""
        path, options = runs[name]
        for url in (base, baseline):
            wrk.run(url + path, seconds=warm, **options)
        ours: list[Load] = []
        theirs: list[Load] = []
        for _ in range(PAIRED_ROUNDS):
            ours.append(wrk.run(base + path, seconds=seconds / 2, **options))
            theirs.append(wrk.run(baseline + path, seconds=seconds / 2, **options))
        return median_load(ours), median_load(theirs)

    wanted_runs = (["get"] if "a" in wanted else []) + (
        ["repeated", "variables"] if "b" in wanted else []
    )
    if wanted & {"b", "f"}:
        wanted_runs.append("distinct")
    if "b" in wanted:
        wanted_runs.insert(wanted_runs.index("repeated") + 1, "apq")
    with service(database_url, redis_url) as svc:
        captured = capture(svc.base)
        runs["apq"] = (register_apq(svc.base), {})
        if captured.etag is not None:
            runs["304"] = (FLOWS_PATH, {"etag": captured.etag})
            if "a" in wanted:
                # First, while the captured answer is current: a window ending "now" is
                # recomputed every FLOWS_REFRESH_SECONDS (30 s) with a new as_of, and so a new
                # ETag, and the paired runs take longer than that.
                wanted_runs.insert(0, "304")
        bodies = workdir / "bodies"
        bodies.mkdir()
        (bodies / "flows.json").write_bytes(captured.flows)
        (bodies / "graphql.json").write_bytes(captured.graphql)
        bare_port = free_port()
        bare = Server(
            database_url,
            None,
            {"BENCH_BODIES": str(bodies)},
            port=bare_port,
            command=uvicorn_command("tests.bench.bare:create_app", bare_port, factory=True),
        )
        # Both up at once (the idle one costs nothing): the headline runs alternate with bare's.
        started(bare)
        try:
            loads: dict[str, Load] = {}
            base: dict[str, Load] = {}
            for name in wanted_runs:
                if name in PAIRED:
                    loads[name], base[name] = measure_paired(svc.base, bare.base, name)
                else:
                    loads.update(measure(svc.base, [name]))
            # bare answers every POST /graphql with the same bytes: its repeated run is every
            # b row's baseline.
            for name in PAIRED:
                if name not in base:
                    base.update(measure(bare.base, [name]))
        finally:
            bare.stop()

    peer: dict[str, Load] = {}
    peer_missing = ""
    if importlib.util.find_spec("fastapi") is None:
        peer_missing = "no peer: pip install -e '.[bench]' (FastAPI)"
    elif wanted & {"a", "b"}:
        # Stock Strawberry has no persisted queries: the peer gets no APQ run.
        skipped = {"304", "apq"}
        peer_runs = [
            n for n in wanted_runs if n not in skipped and (n != "distinct" or "b" in wanted)
        ]
        peer = _measure_peer(measure, peer_runs, captured, redis_url)

    rows: list[Row] = []
    if "a" in wanted:
        rows += _rows_a(loads, base, peer, wrk, seconds, warm, database_url, redis_url)
    if "b" in wanted:
        rows += _rows_b(loads, base, peer, wrk, template, seconds, warm, database_url, redis_url)
    if peer_missing:
        for row in rows:
            row.peer = "n/a"
        rows[0].note = "; ".join(filter(None, [rows[0].note, peer_missing]))
    if "f" in wanted:
        rows += _rows_f(loads["distinct"], wrk, template, seconds, database_url, redis_url, args)
    return rows


def _measure_peer(
    measure: Callable[[str, list[str]], dict[str, Load]],
    names: list[str],
    captured: Captured,
    redis_url: str,
) -> dict[str, Load]:
    """The same runs against tests/bench/peer.py, its Redis key holding the service's answer."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(PEER_KEY, captured.flows)
    finally:
        client.close()
    port = free_port()
    peer = Server(
        "sqlite://",
        None,
        {"BENCH_PEER_REDIS": redis_url, "BENCH_PEER_KEY": PEER_KEY},
        port=port,
        command=uvicorn_command("tests.bench.peer:create_app", port, factory=True),
    )
    started(peer)
    try:
        answer = httpx.post(f"{peer.base}/graphql", json={"query": GRAPHQL % "Bench"}, timeout=10)
        if answer.status_code != 200 or len(answer.json()["data"]["flows"]) != FLOWS_WANTED:
            raise BenchError(f"the peer's GraphQL flows failed: {answer.text[:300]}")
        return measure(peer.base, names)
    finally:
        peer.stop()


def median_load(loads: list[Load]) -> Load:
    """The run with the median 2xx rate (its latencies come with it)."""
    return sorted(loads, key=lambda load: load.ok_rate)[len(loads) // 2]


def _rate(load: Load) -> str:
    return f"{load.ok_rate:,.0f} req/s"


def _problems(load: Load, ok: int = 200) -> str:
    """What went wrong in a run: statuses other than 2xx (or ``ok``), socket errors, timeouts."""
    expected = load.count(200, 300) if ok == 200 else load.statuses.get(ok, 0)
    bad = sum(load.statuses.values()) - expected
    parts = []
    if bad:
        parts.append(f"{bad} unexpected statuses")
    if load.socket_errors or load.timeouts:
        parts.append(f"{load.socket_errors} socket errors, {load.timeouts} timeouts")
    return "; ".join(parts)


def _against(
    scenario: str, measure: str, load: Load, bare: Load, peer: Load | None, share: float
) -> Row:
    """A throughput row: the service's 2xx rate, against bare (the target) and the peer."""
    return Row(
        scenario,
        measure,
        _rate(load),
        _rate(bare),
        ratio(load.ok_rate, bare.ok_rate),
        f">= {share:.0%} of bare",
        load.ok_rate >= share * bare.ok_rate and not _problems(load),
        _problems(load),
        _rate(peer) if peer else None,
        ratio(load.ok_rate, peer.ok_rate) if peer else None,
    )


def _rows_a(
    loads: dict[str, Load],
    base: dict[str, Load],
    peer: dict[str, Load],
    wrk: Wrk,
    seconds: float,
    warm: float,
    database_url: str,
    redis_url: str,
) -> list[Row]:
    load, bare, peer_get = loads["get"], base["get"], peer.get("get")
    with service(database_url, redis_url, METRICS_ENABLED="false") as plain:
        wrk.run(plain.base + FLOWS_PATH, seconds=warm)
        unmetered = wrk.run(plain.base + FLOWS_PATH, seconds=seconds)
    with service(database_url, redis_url, RATE_LIMIT_ENABLED="false") as unlimited:
        wrk.run(unlimited.base + FLOWS_PATH, seconds=warm)
        free = wrk.run(unlimited.base + FLOWS_PATH, seconds=seconds)
    with service(database_url, redis_url) as single:
        wrk.run(single.base + FLOWS_PATH, seconds=warm, clients=0)
        one_client = wrk.run(single.base + FLOWS_PATH, seconds=seconds, clients=0)
    limits_cost = 1 - load.ok_rate / free.ok_rate if free.ok_rate else 0.0
    cost = 1 - load.ok_rate / unmetered.ok_rate if unmetered.ok_rate else 0.0
    per_request_us = (1 / load.ok_rate - 1 / unmetered.ok_rate) * 1e6 if load.ok_rate else 0.0
    rows = [
        _against(
            "a",
            f"cached GET /v1/flows (20 flows), {CONNECTIONS} connections",
            load,
            bare,
            peer_get,
            0.8,
        ),
        Row(
            "a",
            f"p99 latency, {CONNECTIONS} connections",
            f"{load.p99_ms:.1f} ms",
            f"{bare.p99_ms:.1f} ms",
            None,
            "< 20 ms",
            load.p99_ms < 20,
            f"p50 {load.p50_ms:.1f} ms",
            f"{peer_get.p99_ms:.1f} ms" if peer_get else None,
        ),
    ]
    conditional = loads.get("304")
    if conditional is None:
        rows.append(
            Row(
                "a",
                "conditional GET /v1/flows (If-None-Match) -> 304",
                "not built",
                _rate(bare),
                None,
                ">= 90% of bare",
                None,
                "the service sends no ETag on GET /v1/flows yet",
            )
        )
    else:
        not_modified = conditional.statuses.get(304, 0) / conditional.seconds
        problems = _problems(conditional, ok=304)
        rows.append(
            Row(
                "a",
                "conditional GET /v1/flows (If-None-Match) -> 304",
                f"{not_modified:,.0f} req/s",
                _rate(bare),
                ratio(not_modified, bare.ok_rate),
                ">= 90% of bare",
                not_modified >= 0.9 * bare.ok_rate and not problems,
                "; ".join(filter(None, [problems, "bare and the peer send the full answer"])),
                _rate(peer_get) if peer_get else None,
                ratio(not_modified, peer_get.ok_rate) if peer_get else None,
            )
        )
    rows.append(
        Row(
            "a",
            "same with METRICS_ENABLED=false (instrumentation cost)",
            _rate(unmetered),
            None,
            None,
            "context",
            None,
            f"/metrics costs {cost:.1%} of throughput, about {per_request_us:.0f} us a request",
        )
    )
    rows.append(
        Row(
            "a",
            "same with RATE_LIMIT_ENABLED=false (rate limiting's cost)",
            _rate(free),
            None,
            None,
            "context",
            None,
            f"rate limiting costs {limits_cost:.1%} of throughput",
        )
    )
    rows.append(
        Row(
            "a",
            "same, every request from one client (one key)",
            _rate(one_client),
            _rate(bare),
            ratio(one_client.ok_rate, bare.ok_rate),
            "context",
            None,
            f"p99 {one_client.p99_ms:.1f} ms; its 37-unit chunks reserved from Redis one round"
            " trip at a time: requests that outrun one wait for the next",
        )
    )
    return rows


def _rows_b(
    loads: dict[str, Load],
    base: dict[str, Load],
    peer: dict[str, Load],
    wrk: Wrk,
    template: Path,
    seconds: float,
    warm: float,
    database_url: str,
    redis_url: str,
) -> list[Row]:
    bare = base["repeated"]
    post = {"method": "POST", "body": template, "mode": "distinct"}
    with service(database_url, redis_url, USE_CACHE="false") as uncached:
        wrk.run(uncached.base + "/graphql", seconds=warm, **post)
        cold = wrk.run(uncached.base + "/graphql", seconds=seconds, **post)
    return [
        _against(
            "b",
            "GraphQL flows (20), the same operation repeated",
            loads["repeated"],
            bare,
            peer.get("repeated"),
            0.7,
        ),
        _against(
            "b",
            "GraphQL flows (20), the same operation as an APQ GET (hash only)",
            loads["apq"],
            bare,
            None,
            0.7,
        ),
        _against(
            "b",
            "GraphQL flows (20), the same document with new variables each request",
            loads["variables"],
            bare,
            peer.get("variables"),
            0.3,
        ),
        _against(
            "b",
            "GraphQL flows (20), a distinct operation each request",
            loads["distinct"],
            bare,
            peer.get("distinct"),
            0.1,
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
    post = {"method": "POST", "body": template, "mode": "distinct", "pace_ms": pace_ms}
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
