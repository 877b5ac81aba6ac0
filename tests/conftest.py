"""Fixtures: the app on SQLite and on a real PostgreSQL, and a way to make records.

PostgreSQL is ``TEST_DATABASE_URL`` (default: the local server). Each test session works in a
throwaway database it creates and drops. Tests that need PostgreSQL fail, never skip, when it
is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from db.engine import make_engine
from graph.app import create_app
from graph.settings import Settings

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
WRITE_KEY = "test-write-key"
READ_KEY = "test-read-key"
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(statement: str) -> None:
    engine = make_engine(_admin_url())
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"trendmap_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(_admin_url()).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def schemaless_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database with no trendmap schema."""
    name = f"trendmap_empty_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            exists = await conn.run_sync(lambda c: sa.inspect(c).has_table("trends_archive"))
            if exists:
                await conn.execute(sa.text("TRUNCATE trends_archive RESTART IDENTITY"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each app test runs once on SQLite and once on PostgreSQL, on an empty archive."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trendmap.db'}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_reset(url))
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_keys": (WRITE_KEY,),
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url))) as test_client:
        yield test_client


@pytest.fixture
def app_with(tmp_path: Path) -> Iterator[Any]:
    """Build running apps on SQLite with some settings overridden: ``app_with(**overrides)``."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(
            create_app(make_settings(f"sqlite:///{tmp_path / 'a.db'}", **overrides))
        )
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def as_input(r: dict[str, Any]) -> dict[str, Any]:
    """A REST-shaped record as GraphQL's TrendInput (camelCase)."""
    return {
        "timestamp": r["timestamp"],
        "country": r["country"],
        "topicLabel": r["topic_label"],
        "count": r["count"],
        "confidence": r["confidence"],
        "sources": r["sources"],
    }


def write_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {WRITE_KEY}"}


def record(
    country: str = "US",
    topic: str = "World Cup",
    *,
    hours_ago: float = 1.0,
    count: int = 10,
    confidence: float = 0.9,
    sources: list[str] | None = None,
    as_of: datetime = AS_OF,
) -> dict[str, Any]:
    """A valid record in the REST shape, placed relative to AS_OF."""
    moment = as_of - timedelta(hours=hours_ago)
    return {
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "country": country,
        "topic_label": topic,
        "count": count,
        "confidence": confidence,
        "sources": sources,
    }


def spread(a: str, b: str, topics: list[str], now: datetime | None = None) -> list[dict[str, Any]]:
    """`b` picks up exactly `a`'s topics an hour later (3 h and 2 h before ``now``, default the
    real clock): one hot flow a → b, heat 0.5^(1/6) ≈ 0.89."""
    now = now if now is not None else datetime.now(UTC)
    return [
        {
            "timestamp": (now - timedelta(hours=hours)).isoformat(),
            "country": country,
            "topic_label": topic,
            "count": 100,
            "confidence": 0.9,
        }
        for country, hours in ((a, 3), (b, 2))
        for topic in topics
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(base: str, process: subprocess.Popen[str], seconds: float = 60) -> None:
    """Wait for a server process to answer /health; fail with its output if it dies."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


@dataclass
class Served:
    base: str
    process: subprocess.Popen[str]
    output: str = ""


@contextlib.contextmanager
def running_server(cwd: Path, env: dict[str, str], *args: str) -> Iterator[Served]:
    """``python -m graph serve --port <free port> ARGS`` until it answers /health; then SIGTERM,
    and (unless the test failed) it must exit cleanly. Its output is ``output`` afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "graph", "serve", "--port", str(port), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}", process)
    try:
        wait_until_healthy(served.base, process)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            served.output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Reap it (and close its pipe) before failing, so nothing leaks into later tests.
            process.kill()
            served.output, _ = process.communicate()
            raise AssertionError(
                f"the server did not exit within 30 s of SIGTERM:\n{served.output}"
            ) from None
    # uvicorn shuts down gracefully, then re-raises the signal it received.
    assert process.returncode in (0, -signal.SIGTERM), served.output


def subscribed(client: TestClient, count: int = 1) -> None:
    """Wait until the server has registered ``count`` subscriptions: a flow published before a
    subscription is registered is not that subscriber's to receive."""
    deadline = time.monotonic() + 10
    while client.get("/health/ready").json()["checks"]["subscriptions"]["active"] != count:
        assert time.monotonic() < deadline, "the subscription was never registered"
        time.sleep(0.01)


class RedisServer:
    """A throwaway redis-server on a free port, to stop, start, pause and resume in a test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        """Keep the data, stop answering (a network outage, not a restart)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, to kill, restart, pause and resume."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free port, to stop and start in a test.

    initdb refuses to run as root, so the cluster belongs to the `postgres` user (run through
    `runuser` when the tests run as root) in a directory that user can reach.
    """

    def __init__(self) -> None:
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="trendmap-pg-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(
            "initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-o",
            options,
            "-w",
            "-l",
            str(self.dir / "log"),
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to stop and start again."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def feed_server() -> Iterator[Any]:
    """A real HTTP server on loopback playing upstream feeds (tests/feedserver.py)."""
    from feedserver import serve_feeds

    yield from serve_feeds()
