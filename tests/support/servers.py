"""Throwaway servers for tests: the service as a process, redis-server and PostgreSQL clusters."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from starlette.testclient import TestClient

from db.engine import make_engine


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
    # Drained all along: a server that logs more than a pipe holds (64 KiB) must not block.
    stdout = process.stdout
    assert stdout is not None
    output: list[str] = []
    drain = threading.Thread(target=lambda: output.append(stdout.read()), daemon=True)
    drain.start()

    def collected() -> str:
        drain.join()
        stdout.close()
        return "".join(output)

    try:
        try:
            wait_until_healthy(served.base, process)
        except AssertionError as failed:
            if process.poll() is not None:  # it died: what it said is in the drain
                raise AssertionError(f"{failed}\n{collected()}") from None
            raise
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Reap it (and close its pipe) before failing, so nothing leaks into later tests.
            process.kill()
            process.wait()
            served.output = collected()
            raise AssertionError(
                f"the server did not exit within 30 s of SIGTERM:\n{served.output}"
            ) from None
        served.output = collected()
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


async def empty_archive(url: str) -> None:
    """Empty the trend archive at ``url`` (when it has one), ids restarting at 1."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            exists = await conn.run_sync(lambda c: sa.inspect(c).has_table("trends_archive"))
            if exists:
                await conn.execute(sa.text("TRUNCATE trends_archive RESTART IDENTITY"))
    finally:
        await engine.dispose()
