"""Scenario o: what tracing costs a cached read. The same ``GET /v1/flows`` (cached) against
three services on the same database and Redis: tracing off, every request traced, and one
request in ten traced (``parentbased_traceidratio`` 0.1), the last two exporting over OTLP/HTTP
to a loopback sink that takes and drops the spans. Runs alternate, off first.

    python -m tests.bench.observability [--seconds 10] [--quick] [--wrk wrk]

Hook it into run.py by adding this module to its list of scenario modules (it exposes
``add_arguments`` and ``scenarios(args)`` like tests/bench/throughput.py, under ``--only o``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `tests.bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import (  # noqa: E402
    ADMIN_URL,
    BenchError,
    Row,
    print_table,
    throwaway_database_sync,
    throwaway_redis,
)
from tests.bench.throughput import (  # noqa: E402
    FLOWS_PATH,
    WRK_MISSING,
    Load,
    Wrk,
    capture,
    service,
)

ROUNDS = 2  # off, on, off, on: drift on a busy machine hits both sides alike
TARGET_OVERHEAD = 0.15  # at most 15% fewer cached reads a second with one request in ten traced
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP receiver on loopback that accepts every export and keeps nothing."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wrk", default="wrk", help="the wrk executable")
    parser.add_argument(
        "--seconds", type=float, help="seconds per load run (default 10; 2 with --quick)"
    )


def scenarios(args: argparse.Namespace) -> list[Row]:
    if "o" not in set(getattr(args, "only", None) or {"o"}):
        return []
    executable = shutil.which(args.wrk)
    if executable is None:
        raise BenchError(WRK_MISSING)
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    with (
        tempfile.TemporaryDirectory(prefix="trendmap-bench-") as tmp,
        throwaway_database_sync(getattr(args, "admin_url", ADMIN_URL)) as database_url,
        throwaway_redis(getattr(args, "redis_server", "redis-server")) as redis_url,
        otlp_sink() as endpoint,
        service(database_url, redis_url) as off,
        service(database_url, redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint) as on,
        service(database_url, redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, **SAMPLED) as part,
    ):
        wrk = Wrk(executable, Path(tmp))
        capture(off.base)  # seeds the data and caches the answer for all
        loads: dict[str, list[Load]] = {"off": [], "on": [], "sampled": []}
        for _ in range(ROUNDS):
            for name, server in (("off", off), ("on", on), ("sampled", part)):
                wrk.run(server.base + FLOWS_PATH, seconds=1)  # warm up
                loads[name].append(wrk.run(server.base + FLOWS_PATH, seconds=seconds))
    return _rows(loads)


def _rows(loads: dict[str, list[Load]]) -> list[Row]:
    for load in (load for runs in loads.values() for load in runs):
        bad = sum(n for status, n in load.statuses.items() if status != 200)
        if bad or load.socket_errors:
            raise BenchError(f"a run had {bad} non-200 answers and {load.socket_errors} errors")
    off = _mean(loads["off"], "rate")
    on, sampled = _mean(loads["on"], "rate"), _mean(loads["sampled"], "rate")
    print(f"tracing overhead: every request {1 - on / off:.1%}, one in ten {1 - sampled / off:.1%}")
    return [
        Row(
            "o",
            "cached GET /v1/flows, every request traced",
            f"{on:,.0f} req/s",
            f"{off:,.0f} req/s off",
            f"{on / off - 1:+.1%}",
            "",
            None,
            f"{ROUNDS} alternating runs each; p50 {_mean(loads['on'], 'p50_ms'):.1f} ms"
            f" vs {_mean(loads['off'], 'p50_ms'):.1f} ms off",
        ),
        Row(
            "o",
            "cached GET /v1/flows, 1 in 10 traced",
            f"{sampled:,.0f} req/s",
            f"{off:,.0f} req/s off",
            f"{sampled / off - 1:+.1%}",
            f"overhead <= {TARGET_OVERHEAD:.0%}",
            1 - sampled / off <= TARGET_OVERHEAD,
        ),
    ]


def _mean(loads: list[Load], name: str) -> float:
    return sum(float(getattr(load, name)) for load in loads) / len(loads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="2-second runs")
    args = parser.parse_args(argv)
    args.only = {"o"}
    try:
        rows = scenarios(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
