"""GraphQL answers kept and persisted queries, against the bare baseline.

``python -m tests.bench.graphql_cache [--quick] [--seconds N]``: a throwaway PostgreSQL database
and redis-server, the service (one uvicorn worker, rate limits and metrics on: common.Server),
20 hot flows, and ``wrk`` measuring GraphQL ``flows(limit: 20)``:

- the same operation repeated, POST (target >= 70% of bare);
- the same operation as an APQ GET, its document named by hash (>= 70%);
- the same document with new variables each request (>= 30%): a new threshold, the same flows;
- a distinct document each request (>= 10%): a new operation name, so nothing kept helps;
- context: the repeated POST with the answer cache off (GRAPHQL_RESPONSE_CACHE_ENTRIES=0).

The baseline is tests/bench/bare.py answering every POST /graphql with the service's own bytes,
under the same uvicorn settings. Figures on a shared machine are noisy: the ratios measured in
one run are what to read. Exits 0 whatever the figures; 2 when it could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from tests.bench.common import (
    ADMIN_URL,
    API_KEY,
    BenchError,
    Row,
    Server,
    free_port,
    print_table,
    ratio,
    throwaway_database_sync,
    throwaway_redis,
    uvicorn_command,
)

SELECTION = "fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore"
DOCUMENT = 'query Bench { flows(timeWindow: "24h", limit: 20) { ' + SELECTION + " } }"
DISTINCT = 'query %s { flows(timeWindow: "24h", limit: 20) { ' + SELECTION + " } }"
VARIABLES = (
    'query Flows($t: Float) { flows(timeWindow: "24h", limit: 20, threshold: $t) { '
    + SELECTION
    + " } }"
)
PAIRS = 20
CONNECTIONS = 64

# method, body file ("-": none), mode: "same", "distinct" (a new operation name in the body's
# %s) or "variables" (a new threshold in it), and the API key (common.API_KEY). Counts statuses
# (wrk counts only non-2xx).
LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  method, body_file, mode = args[1], args[2], args[3]
  body = nil
  if body_file ~= "-" then
    local f = assert(io.open(body_file, "rb")); body = f:read("*a"); f:close()
  end
  counter = math.random(1, 1000000000)
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[4]}
end
function request()
  local b = body
  if mode == "distinct" then
    counter = counter + 1
    b = string.format(body, "Q" .. counter)
  elseif mode == "variables" then
    counter = counter + 1
    b = string.format(body, string.format("0.5%06d", counter % 1000000))
  end
  return wrk.format(method, nil, headers, b)
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
end
"""


def _wrk(
    executable: str,
    script: Path,
    url: str,
    seconds: float,
    method: str,
    body: Path | None,
    mode: str,
) -> tuple[float, int]:
    """Requests/s answered 2xx, and how many were not."""
    command = [executable, "-t", "1", "-c", str(CONNECTIONS), "-d", f"{max(1, round(seconds))}s"]
    command += ["--timeout", "2s", "-s", str(script), url, "--", method, str(body or "-"), mode]
    command += [API_KEY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or rate is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    statuses = {int(s): int(n) for s, n in re.findall(r"^STATUS (\d+) (\d+)$", done.stdout, re.M)}
    total = sum(statuses.values()) or 1
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return float(rate.group(1)) * ok / total, total - ok


def _records(now: datetime) -> list[dict[str, object]]:
    """Pairs of countries, the second picking up the first's topics an hour later."""
    codes = ["AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW"]
    codes += ["AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN"]
    codes += ["BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD"]
    records: list[dict[str, object]] = []
    for i in range(PAIRS):
        for country, hours in ((codes[2 * i], 3), (codes[2 * i + 1], 2)):
            for word in ("Alpha", "Beta", "Gamma"):
                moment = (now - timedelta(hours=hours)).isoformat()
                records.append(
                    {"timestamp": moment, "country": country, "topic_label": f"Bench {i} {word}"}
                    | {"count": 100, "confidence": 0.9}
                )
    return records


def _server(database_url: str, redis_url: str | None, target: str, **env: str) -> Server:
    port = free_port()
    command = uvicorn_command(target, port, factory=True)
    server = Server(database_url, redis_url, dict(env), port=port, command=command)
    server.start()
    try:
        server.wait_healthy_sync()
    except BaseException:
        server.stop()
        raise
    return server


def _prepare(base: str) -> bytes:
    """Seed the flows, register the APQ document; the service's answer (for bare)."""
    with httpx.Client(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as c:
        stored = c.post("/v1/trends", json=_records(datetime.now(UTC)))
        if stored.status_code != 200:
            raise BenchError(f"seeding failed: {stored.status_code} {stored.text[:300]}")
        answer = c.post("/graphql", json={"query": DOCUMENT})
        if answer.status_code != 200 or len(answer.json()["data"]["flows"]) != PAIRS:
            raise BenchError(f"GraphQL flows failed: {answer.text[:300]}")
        c.post("/graphql", json={"query": DOCUMENT, "extensions": _extension()})
        by_hash = c.get("/graphql", params={"extensions": json.dumps(_extension())})
        if by_hash.json() != answer.json():
            raise BenchError(f"APQ GET failed: {by_hash.text[:300]}")
        return answer.content


def _extension() -> dict[str, object]:
    digest = hashlib.sha256(DOCUMENT.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def measure(args: argparse.Namespace) -> list[Row]:
    executable = shutil.which(args.wrk)
    if executable is None:
        raise BenchError("wrk not found: apt-get install -y wrk")
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    warm = max(1.0, seconds / 5)
    with (
        tempfile.TemporaryDirectory(prefix="trendmap-bench-") as tmp,
        throwaway_database_sync(args.admin_url) as database_url,
        throwaway_redis(args.redis_server) as redis_url,
    ):
        work = Path(tmp)
        script = work / "bench.lua"
        script.write_text(LUA)
        same, distinct, variables = work / "same.json", work / "distinct.json", work / "vars.json"
        same.write_bytes(orjson.dumps({"query": DOCUMENT}))
        distinct.write_bytes(orjson.dumps({"query": DISTINCT}))
        variables.write_bytes(
            b'{"query": ' + orjson.dumps(VARIABLES) + b', "variables": {"t": %s}}'
        )
        apq = "/graphql?" + urllib.parse.urlencode({"extensions": json.dumps(_extension())})
        runs = {
            "repeated POST": ("/graphql", "POST", same, "same"),
            "APQ GET": (apq, "GET", None, "same"),
            "new variables": ("/graphql", "POST", variables, "variables"),
            "distinct documents": ("/graphql", "POST", distinct, "distinct"),
        }

        def run(base: str, name: str) -> tuple[float, int]:
            path, method, body, mode = runs[name]
            _wrk(executable, script, base + path, warm, method, body, mode)
            return _wrk(executable, script, base + path, seconds, method, body, mode)

        service = _server(database_url, redis_url, "graph.http.app:create_app")
        try:
            answer = _prepare(service.base)
            figures = {name: run(service.base, name) for name in runs}
        finally:
            service.stop()
        off = _server(
            database_url,
            redis_url,
            "graph.http.app:create_app",
            GRAPHQL_RESPONSE_CACHE_ENTRIES="0",
        )
        try:
            figures["repeated POST, answers not kept"] = run(off.base, "repeated POST")
        finally:
            off.stop()
        bodies = work / "bodies"
        bodies.mkdir()
        (bodies / "graphql.json").write_bytes(answer)
        (bodies / "flows.json").write_bytes(b"[]")
        bare = _server(database_url, None, "tests.bench.bare:create_app", BENCH_BODIES=str(bodies))
        try:
            baseline, _ = run(bare.base, "repeated POST")
        finally:
            bare.stop()
    targets = {
        "repeated POST": 0.7,
        "APQ GET": 0.7,
        "new variables": 0.3,
        "distinct documents": 0.1,
    }
    rows = []
    for name, (rate, bad) in figures.items():
        share = targets.get(name)
        rows.append(
            Row(
                "b",
                f"GraphQL flows (20), {name}",
                f"{rate:,.0f} req/s",
                f"{baseline:,.0f} req/s",
                ratio(rate, baseline),
                f">= {share:.0%} of bare" if share else "context",
                (rate >= share * baseline and not bad) if share else None,
                f"{bad} non-2xx" if bad else "",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s loads")
    parser.add_argument("--seconds", type=float, help="seconds per load run (10; 2 with --quick)")
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--redis-server", default="redis-server")
    args = parser.parse_args()
    try:
        print_table(measure(args))
    except BenchError as exc:
        print(f"could not run: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
