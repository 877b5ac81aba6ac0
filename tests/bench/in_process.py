"""What one request costs inside the process, against bare Starlette sending the same bytes.

``python -m tests.bench.in_process [--requests N] [--repeat R]``: the app built by
``create_app`` (SQLite in a temporary folder, the local redis-server at ``--redis-url``, rate
limits and metrics on, a read budget out of reach in chunks of 37 units as
tests/bench/common.RATE_LIMITED sets it) is called as uvicorn would call it, one request at a
time, with no socket: what is left is the application's own work. Each case is timed ``R``
times and the best run kept (the least disturbed by the rest of the machine):

- a cached ``GET /v1/flows`` (20 flows) answered by the front door, and its 304;
- GraphQL ``flows``, the same POST repeated (the front door again), the same document with a
  new threshold each request, and a new operation name each request;
- the baseline: a bare Starlette route answering with the service's own bytes.

wrk's figures (tests/bench/throughput.py) add uvicorn's HTTP work, the same for every server,
to both sides; these show the application's share alone. Exits 0 whatever the figures, 2 when
it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph.http.app import create_app  # noqa: E402
from tests.bench.common import BENCH_QUOTA, BenchError  # noqa: E402
from tests.support.factories import WRITE_KEY, make_settings, record  # noqa: E402

SELECTION = "fromCountry toCountry heat sharedTopics timeDeltaHours similarityScore"
DOCUMENT = 'query %s { flows(timeWindow: "24h", limit: 20) { ' + SELECTION + " } }"
VARIABLES = (
    'query Flows($t: Float) { flows(timeWindow: "24h", limit: 20, threshold: $t) { '
    + SELECTION
    + " } }"
)
FLOWS = ("/v1/flows", b"time_window=24h&limit=20")
JSON_HEADERS = [(b"content-type", b"application/json"), (b"accept", b"application/json")]

Headers = list[tuple[bytes, bytes]]


def scope_of(state: dict[str, Any], method: str, path: str, query: bytes, headers: Headers) -> Any:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),  # as uvicorn hands each request a copy of the lifespan's state
    }


async def call(
    app: ASGIApp, state: dict[str, Any], method: str, path: str, query: bytes = b"",
    headers: Headers | None = None, body: bytes = b"",
) -> list[Message]:  # fmt: skip
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    heads = [*(headers or []), (b"content-length", str(len(body)).encode())] if body else headers
    await app(scope_of(state, method, path, query, heads or []), receive, send)
    return sent


class Lifespan:
    """The app's lifespan run as uvicorn runs it: the state every request gets a copy of."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.state = app, {}
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def __aenter__(self) -> dict[str, Any]:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        started = await self.outbox.get()
        if started["type"] != "lifespan.startup.complete":
            raise BenchError(f"the app did not start: {started}")
        return self.state

    async def __aexit__(self, *_: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.task


async def best_of(repeat: int, requests: int, one: Callable[[], Awaitable[None]]) -> float:
    """Microseconds per request, the best of ``repeat`` runs of ``requests`` each."""
    for _ in range(min(requests, 200)):
        await one()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(requests):
            await one()
            await asyncio.sleep(0)  # the loop runs between requests, as in a server
        runs.append((time.perf_counter() - started) / requests * 1e6)
    return min(runs)


async def measure(redis_url: str, requests: int, repeat: int) -> list[tuple[str, float, float]]:
    """(case, µs per request, µs of bare Starlette with the same bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(
            f"sqlite:///{Path(folder) / 'bench.db'}",
            redis_url=redis_url,
            metrics_enabled=True,
            rate_limit_per_minute=BENCH_QUOTA,
            rate_limit_writes_per_minute=BENCH_QUOTA,
            rate_limit_workers=BENCH_QUOTA // (4 * 37),
        )
        app = create_app(settings)
        async with Lifespan(app) as state:
            return await _cases(app, state, requests, repeat)


async def _cases(
    app: ASGIApp, state: dict[str, Any], requests: int, repeat: int
) -> list[tuple[str, float, float]]:
    now = datetime.now(UTC)
    batch = [
        record(country, f"Topic {n}", hours_ago=4 if country == "US" else 3, count=50, as_of=now)
        for n in range(20)
        for country in ("US", "BR")
    ]
    written = await call(
        app, state, "POST", "/v1/trends", headers=[*JSON_HEADERS,
        (b"authorization", f"Bearer {WRITE_KEY}".encode())], body=orjson.dumps(batch),
    )  # fmt: skip
    if written[0]["status"] != 200:
        raise BenchError(f"the seed was refused: {written}")

    async def answer(method: str, path: str, query: bytes, headers: Headers, body: bytes) -> Any:
        sent = await call(app, state, method, path, query, headers, body)
        if sent[0]["status"] not in (200, 304):
            raise BenchError(f"{method} {path} answered {sent[0]['status']}")
        return sent

    first = await answer("GET", *FLOWS, [], b"")
    rest_body, rest_headers = first[1]["body"], first[0]["headers"]
    etag = dict(rest_headers)[b"etag"]
    repeated = orjson.dumps({"query": DOCUMENT % "Bench"})
    graphql = await answer("POST", "/graphql", b"", JSON_HEADERS, repeated)
    counter = itertools.count()

    def new_variables() -> bytes:
        threshold = 0.5 + next(counter) % 100_000 / 1e7
        return orjson.dumps({"query": VARIABLES, "variables": {"t": threshold}})

    def distinct() -> bytes:
        return orjson.dumps({"query": DOCUMENT % f"Op{next(counter)}"})

    cases: list[tuple[str, Callable[[], Awaitable[Any]], bytes, Headers]] = [
        ("cached GET /v1/flows (front door)", lambda: answer("GET", *FLOWS, [], b""),
         rest_body, rest_headers),
        ("the same with If-None-Match: 304", lambda: answer(
            "GET", *FLOWS, [(b"if-none-match", etag)], b""), rest_body, rest_headers),
        ("GraphQL flows, the same POST repeated", lambda: answer(
            "POST", "/graphql", b"", JSON_HEADERS, repeated), graphql[1]["body"],
         graphql[0]["headers"]),
        ("GraphQL flows, new variables each request", lambda: answer(
            "POST", "/graphql", b"", JSON_HEADERS, new_variables()), graphql[1]["body"],
         graphql[0]["headers"]),
        ("GraphQL flows, a distinct document each request", lambda: answer(
            "POST", "/graphql", b"", JSON_HEADERS, distinct()), graphql[1]["body"],
         graphql[0]["headers"]),
    ]  # fmt: skip
    results = []
    for name, one, body, headers in cases:
        bare = _bare(body, headers)
        method = "GET" if "GET" in name or "304" in name else "POST"

        async def bare_one(bare: ASGIApp = bare, method: str = method) -> None:
            await call(bare, {}, method, "/v1/flows", b"", [], b"")

        costly = "variables" in name or "distinct" in name
        n = max(200, requests // 10) if costly else requests
        results.append((name, await best_of(repeat, n, one), await best_of(repeat, n, bare_one)))
    return results


def _bare(body: bytes, headers: Headers) -> Starlette:
    """Bare Starlette answering every request with ``body`` and the service's headers."""
    kept = {k.decode(): v.decode() for k, v in headers if k.lower() != b"content-length"}

    async def endpoint(_: Request) -> Response:
        return Response(body, headers=kept)

    return Starlette(routes=[Route("/v1/flows", endpoint, methods=["GET", "POST"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args(argv)
    try:
        results = asyncio.run(measure(args.redis_url, args.requests, args.repeat))
    except (BenchError, OSError) as exc:
        print(f"in_process could not run: {exc}", file=sys.stderr)
        return 2
    print(f"{'case':<50} {'us/request':>11} {'bare us':>8} {'ratio':>6}")
    for name, cost, bare in results:
        print(f"{name:<50} {cost:>11.1f} {bare:>8.1f} {cost / bare:>5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
