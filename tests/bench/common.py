"""What every benchmark scenario shares: the result row, the table, and the throwaway services.

A scenario module exposes ``scenarios(args: argparse.Namespace) -> list[Row]``; ``run.py``
calls each one and prints every row in one table (and writes it into docs/benchmarks.md).
A scenario that cannot run at all raises ``BenchError``; a missed target is a row with
``met=False``, not an exception.

The services are real and throwaway: a fresh PostgreSQL database on the local server
(dropped at the end), a ``redis-server`` of our own on a free port, and server processes
started with the very same uvicorn settings (``uvicorn_command``), so a bare baseline and the
service differ in the application only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
API_KEY = "bench"
ROOT = Path(__file__).resolve().parents[2]


class BenchError(Exception):
    """The benchmark could not run (not a missed target)."""


# --- results --------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of one scenario, next to its same-run baseline, the peer's and its target.

    ``value``/``baseline``/``ratio`` are already formatted (``"41,200 req/s"``, ``"87%"``);
    ``met`` is None for a figure that has no target of its own (context, e.g. a p50).
    ``peer``/``peer_ratio``: the same measure against the stock peer (tests/bench/peer.py),
    for the throughput scenarios.
    """

    scenario: str
    measure: str
    value: str
    baseline: str | None
    ratio: str | None
    target: str
    met: bool | None
    note: str = ""
    peer: str | None = None
    peer_ratio: str | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else "met" if self.met else "MISSED"


COLUMNS = ("scenario", "measure", "figure", "bare", "vs bare", "peer", "vs peer", "target", "met?")


def _cells(row: Row) -> tuple[str, ...]:
    return (
        row.scenario,
        row.measure,
        row.value,
        row.baseline or "",
        row.ratio or "",
        row.peer or "",
        row.peer_ratio or "",
        row.target,
        row.verdict,
    )


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table for a terminal; notes follow, numbered."""
    cells = [COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  [{r.scenario}] {r.measure}: {r.note}" for r in rows if r.note]
    return "\n".join(line.rstrip() for line in lines + notes)


def print_table(rows: Sequence[Row]) -> None:
    print(format_table(rows), flush=True)


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (docs/benchmarks.md), notes in the last column."""
    head = [*COLUMNS, "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [*_cells(row), row.note]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (inf may stand for a never-arriving one)."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.0%}" if baseline else "n/a"


def machine() -> str:
    """One line on where the figures come from (they mean little without it)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.platform()},"
        f" Python {platform.python_version()}; load average {load}"
    )


# --- processes ------------------------------------------------------------------------------


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


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextlib.contextmanager
def throwaway_redis(executable: str = "redis-server") -> Iterator[str]:
    """A redis-server of our own on a free port, no persistence; yields its URL."""
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise BenchError(f"{executable} not found: apt-get install -y redis-server") from exc
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


async def _create_database(admin_url: str) -> tuple[str, str]:
    """A fresh PostgreSQL database: its name and its URL."""
    name = f"trendmap_bench_{uuid.uuid4().hex[:8]}"
    try:
        await _admin(admin_url, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"cannot create a database on {admin_url}: {exc}") from exc
    base, _, _ = admin_url.rpartition("/")
    return name, f"{base}/{name}"


async def _drop_database(admin_url: str, name: str) -> None:
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_loop() -> Any:
    """uvloop's runner when installed (as the server uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


@contextlib.asynccontextmanager
async def throwaway_database(admin_url: str = ADMIN_URL) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped at the end; yields its URL."""
    name, url = await _create_database(admin_url)
    try:
        yield url
    finally:
        await _drop_database(admin_url, name)


@contextlib.contextmanager
def throwaway_database_sync(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """``throwaway_database`` for synchronous callers."""
    name, url = asyncio.run(_create_database(admin_url))
    try:
        yield url
    finally:
        asyncio.run(_drop_database(admin_url, name))


def uvicorn_command(target: str, port: int, *, factory: bool = False) -> list[str]:
    """One uvicorn worker, the same settings for the service and for any baseline.

    ``graph serve`` runs uvicorn with its defaults (loop and http "auto", which pick uvloop
    and httptools when installed) and no access log; the benchmarks name them explicitly so
    both sides are certain to get the same.
    """
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--no-access-log"]
    command += ["--loop", "auto", "--http", "auto", "--log-level", "warning"]
    return [*command, "--factory"] if factory else command


# Rate limiting on, as in production: every request spends from its client's budget. The
# quotas are out of reach (a run must measure answers, not refusals); the workers figure is
# chosen so a worker reserves chunks of 37 units, as for a client at the default 600 reads a
# minute on 4 workers: one Redis round trip per 37 requests of a client, as production
# traffic costs.
BENCH_QUOTA = 1_000_000_000
# The throughput scenarios' load comes from this many clients (API keys), one after another
# request by request, as a production worker's traffic does: at 10,000 requests a second each
# client sends about 10, the default quota's rate. One client sending them all would outrun
# its 37-unit chunks (scenario a's "one client" row shows what that costs).
BENCH_CLIENTS = 1_000
CLIENT_KEY = API_KEY + "-{}"
RATE_LIMITED = {
    "RATE_LIMIT_ENABLED": "true",
    "RATE_LIMIT_PER_MINUTE": str(BENCH_QUOTA),
    "RATE_LIMIT_WRITES_PER_MINUTE": str(BENCH_QUOTA),
    "RATE_LIMIT_WORKERS": str(BENCH_QUOTA // (4 * 37)),
}


@dataclass
class Server:
    """One server process, its output in a log file.

    By default ``python -m graph serve --workers 1`` with the database and Redis given; pass
    ``command`` to run something else (a uvicorn target, a baseline app) with the same
    environment.
    """

    database_url: str
    redis_url: str | None
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    command: list[str] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "API_KEYS": ",".join([API_KEY, *(CLIENT_KEY.format(i) for i in range(BENCH_CLIENTS))]),
            "LOG_LEVEL": "WARNING",
            **RATE_LIMITED,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            **self.extra_env,
        }
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    def start(self) -> None:
        command = self.command or [
            *(sys.executable, "-m", "graph", "serve", "--port", str(self.port)),
            *("--workers", "1"),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=self.environment(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )

    async def wait_healthy(
        self, http: httpx.AsyncClient, timeout: float = 60, path: str = "/health"
    ) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"server exited ({self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{self.base}{path}")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise BenchError(f"server not healthy after {timeout:.0f} s:\n{self.tail()}")

    def wait_healthy_sync(self, timeout: float = 60, path: str = "/health") -> None:
        async def wait() -> None:
            async with httpx.AsyncClient(timeout=5) as http:
                await self.wait_healthy(http, timeout, path)

        asyncio.run(wait())

    def cpu_seconds(self) -> float | None:
        return None if self.process is None else cpu_seconds(self.process.pid)

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

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
