"""The ``trendmap`` command: serve, ingest, demo-data, poll and db migrations."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from db import blocks, migrate
from db.engine import UnsupportedDatabaseURL, make_engine
from db.failures import missing_sqlite_file
from graph.auth import credentials_for
from graph.cli import failures
from graph.cli.recordfile import Line, detect_format, open_text, read_lines
from graph.core.errors import InvalidRecords, RecordProblem, TrendmapError
from graph.core.records import (
    DEFAULT_TIMESTAMP_BOUNDS,
    TimestampBounds,
    parse_timestamp,
    validate_batch,
    validate_each,
)
from graph.feeds.demo import generate_demo_records
from graph.live.publisher import Publisher
from graph.observability.log import configure_logging
from graph.service.trend_service import TrendService
from graph.settings import Settings
from graph.stores import Store
from graph.wiring import open_archive, open_state

DEFAULT_BATCH = 5_000


@dataclass
class IngestSummary:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[RecordProblem] = field(default_factory=list)
    last_stored_line: int = 0  # the last line of the last batch stored

    def stored(self) -> str:
        """What was stored before a bad batch stopped the ingest: exactly, never a guess."""
        if not self.read:
            return "nothing was stored"
        return (
            f"lines 1 to {self.last_stored_line} were stored ({self.inserted} inserted,"
            f" {self.updated} updated, {self.unchanged} unchanged); nothing from line"
            f" {self.last_stored_line + 1} on was"
        )

    def line(self) -> str:
        return (
            f"{self.read} records read: {self.inserted} inserted, {self.updated} updated,"
            f" {self.unchanged} unchanged, {len({p.index for p in self.skipped})} invalid lines"
            " skipped"
        )


async def ingest_lines(
    service: TrendService,
    lines: Iterable[Line],
    *,
    batch_size: int = DEFAULT_BATCH,
    skip_invalid: bool = False,
    progress: tqdm | None = None,
    bounds: TimestampBounds = DEFAULT_TIMESTAMP_BOUNDS,
    summary: IngestSummary | None = None,
) -> IngestSummary:
    """Store records batch by batch; a batch with a bad line is stored whole or not at all.

    Without ``skip_invalid`` the first bad batch raises InvalidRecords (naming line numbers),
    after the batches before it were stored (``summary``, when given, says which). With it,
    bad lines are left out and reported.
    """
    summary = summary if summary is not None else IngestSummary()
    batch: list[Line] = []

    async def flush() -> None:
        problems = [
            RecordProblem(ln.number, "line", ln.error or "") for ln in batch if ln.fields is None
        ]
        readable = [ln for ln in batch if ln.fields is not None]
        rows, invalid = validate_each(
            [ln.fields for ln in readable],
            positions=[ln.number for ln in readable],
            where="line",
            bounds=bounds,
        )
        problems += invalid
        if problems:
            problems.sort(key=lambda p: p.index)
            if not skip_invalid:
                raise InvalidRecords(problems, where="line")
            summary.skipped.extend(problems)
        result = await service.ingest(rows)
        summary.read += len(batch)
        summary.inserted += result.inserted
        summary.updated += result.updated
        summary.unchanged += result.unchanged
        summary.last_stored_line = batch[-1].number
        if progress is not None:
            progress.update(len(batch))
        batch.clear()

    for line in lines:
        batch.append(line)
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    return summary


async def _ingest(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    fmt = args.format or detect_format(path)
    show = sys.stderr.isatty()
    total = sum(1 for _ in path.open("rb")) if show else None
    summary = IngestSummary()
    with open_text(path) as stream, tqdm(total=total, unit=" lines", disable=not show) as bar:
        async with open_archive(settings) as archive:
            try:
                await ingest_lines(
                    archive.service,
                    read_lines(stream, fmt),
                    batch_size=args.batch_size,
                    skip_invalid=args.skip_invalid,
                    progress=bar,
                    bounds=settings.record_bounds(),
                    summary=summary,
                )
            except InvalidRecords as exc:
                # The error's own "nothing was stored" is the bad batch's: say what the
                # batches before it stored.
                detail = exc.detail.removesuffix("; nothing was stored")
                print(f"error: {detail}; {summary.stored()}", file=sys.stderr)
                for p in exc.problems[:20]:
                    print(f"  line {p.index}: {p.field}: {p.message}", file=sys.stderr)
                print(
                    "fix the file, or pass --skip-invalid to store the valid lines", file=sys.stderr
                )
                return 1
            finally:
                # Subscribers of running servers hear of what was stored, as after a POST.
                await _announce(archive.store, archive.publisher)
    for p in summary.skipped:
        print(f"skipped line {p.index}: {p.field}: {p.message}", file=sys.stderr)
    print(summary.line(), file=out)
    return 0


async def _announce(store: Store, publisher: Publisher) -> None:
    """Tell running servers' subscribers (through the shared store) about what was stored."""
    if store.kind != "memory" and publisher.pending:
        await publisher.publish_all()


async def load_demo(settings: Settings, now: datetime | None = None) -> int:
    """Store the demo dataset (relative to now) in an empty archive; returns how many records
    were stored: 0 when the archive already held records (so running it twice, minutes apart,
    does not store a second copy at other timestamps)."""
    records = generate_demo_records(now or datetime.now(UTC))
    rows = validate_batch(records)
    async with open_archive(settings) as archive:
        _, _, held, _ = await archive.explorer.repository.span()
        if held:
            return 0
        for start in range(0, len(rows), settings.max_batch_records):
            await archive.service.ingest(rows[start : start + settings.max_batch_records])
        await _announce(archive.store, archive.publisher)
    return len(rows)


POLL_OK, POLL_PARTIAL, POLL_BUSY = 0, 1, 3  # busy: another process holds the work's lock
_BLOCKS_PER_LINE = 32


async def _poll_once(settings: Settings, out: TextIO) -> int:
    """One round over every source and country, for cron: what each feed did, then a total.

    Exit status: 0 when every feed answered, 1 when some failed or the round was not stored,
    3 when another poller holds the lease (nothing was done), 2 on a configuration error.
    """
    if not settings.sources:
        print(
            "error: SOURCES is empty: name the feeds to poll, e.g. SOURCES=google_trends_rss",
            file=sys.stderr,
        )
        return 2
    async with open_state(settings) as state:
        scheduler = state.feeds.scheduler
        assert scheduler is not None
        if not await scheduler.lease.hold():
            print("another poller holds the lease: nothing done", file=sys.stderr)
            return POLL_BUSY
        try:
            summary = await scheduler.poller.run_round()
            await scheduler.publish()
            await _announce(state.store, state.publisher)
        finally:
            await scheduler.lease.release()
    for feed in summary.feeds:
        print(feed.line(), file=out)
        for problem in feed.skipped[:5]:
            print(f"  skipped {problem}", file=out)
    print(summary.line(), file=out)
    return POLL_PARTIAL if summary.failed or summary.store_error else POLL_OK


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine for one database command, disposed after it."""
    engine = make_engine(settings.database_url, connect_timeout=settings.db_connect_timeout_seconds)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _migrate(settings: Settings, action: str, revision: str) -> str | None:
    async with _engine(settings) as engine:
        if action == "upgrade":
            await migrate.upgrade(engine, revision)
        elif action == "downgrade":
            await migrate.downgrade(engine, revision)
        return await migrate.current_revision(engine)


async def _build_blocks(settings: Settings, out: TextIO) -> int:
    """Build every unbuilt rollup block now, newest first, a line per round of them."""
    async with _engine(settings) as engine:
        if engine.dialect.name != "postgresql":
            print("nothing to build: only PostgreSQL keeps a rollup", file=out)
            return 0
        total, started = 0, time.perf_counter()
        while True:
            done = await blocks.build_settled(engine, quiet_seconds=0, limit=_BLOCKS_PER_LINE)
            if done.busy:
                print("another process is building blocks: try again later", file=out)
                return POLL_BUSY
            total += done.built
            if not done.built:
                break
            print(f"built {total} blocks in {time.perf_counter() - started:.1f} s", file=out)
        # Blocks left were written to while being built: they wait for their writes to settle.
        left = len(await blocks.unbuilt_blocks(engine, quiet_seconds=0, limit=1_000_000))
        print(f"rollup blocks: {total} built by this run, {left} unbuilt", file=out)
        return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from graph.http.protocol import ConnectionLimits

    credentials_for(settings)  # a bad JWT configuration is an error line, not a traceback
    if args.demo:
        count = asyncio.run(load_demo(settings))
        if count:
            print(f"demo data loaded: {count} records", file=sys.stderr)
        else:
            print("demo data not loaded: the archive already holds records", file=sys.stderr)
    elif settings.auto_migrate:
        asyncio.run(_migrate(settings, "upgrade", "head"))
    print(f"trendmap on http://{args.host}:{args.port}/  (GraphQL at /graphql)", file=sys.stderr)
    configure_logging(settings.log_level)  # the supervisor's lines too, with several workers
    uvicorn.run(
        "graph.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        # uvicorn's own lines (started, shutting down, a WebSocket opened) go through our
        # logging as JSON lines (graph.observability.log bridges the "uvicorn" logger), at
        # LOG_LEVEL, instead of its plain-text default configuration.
        log_config=None,
        log_level=settings.log_level.lower(),
        # Off unless the operator names the proxies: uvicorn would otherwise take any
        # X-Forwarded-For from 127.0.0.1 as the client's address, and a client sending a new
        # one per request past a local proxy would have a new rate-limit budget each time.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips) or None,
        # A peer that stopped reading can hold its connection open (ASGI cannot abort it):
        # shutdown waits this long, then closes whatever is left.
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        # uvicorn's HTTP/1.1 protocol with a header deadline and a connection cap per worker
        # (HTTP_HEADER_TIMEOUT_SECONDS, MAX_CONNECTIONS); the body's deadline is the app's.
        http=ConnectionLimits.from_settings(settings).protocol(),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trendmap", description="How trending topics spread between countries."
    )
    parser.add_argument("--version", action="version", version=f"trendmap {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP/GraphQL/WebSocket server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--demo", action="store_true", help="load the demo dataset first")

    ingest = commands.add_parser("ingest", help="store records from a JSON Lines or CSV file")
    ingest.add_argument("file")
    ingest.add_argument("--format", choices=["jsonl", "csv"], help="default: from the file name")
    ingest.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ingest.add_argument(
        "--skip-invalid", action="store_true", help="report bad lines and store the rest"
    )

    demo = commands.add_parser("demo-data", help="write the synthetic demo dataset (JSON Lines)")
    demo.add_argument("--output", "-o", help="file to write (default: standard output)")
    demo.add_argument("--now", help="end of the dataset, ISO 8601 with offset (default: now)")

    examples = commands.add_parser(
        "examples", help="regenerate the example requests and responses in docs/examples"
    )
    examples.add_argument("--output", default="docs/examples", help="default: docs/examples")

    poll = commands.add_parser("poll", help="pull records from the feeds SOURCES names")
    poll.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="run one round, print what each feed did, and exit (for cron)",
    )

    db = commands.add_parser("db", help="database migrations")
    steps = db.add_subparsers(dest="action", required=True)
    up = steps.add_parser("upgrade", help="migrate forward (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = steps.add_parser("downgrade", help="migrate back, e.g. to base")
    down.add_argument("revision")
    steps.add_parser("current", help="print the database's revision")
    steps.add_parser(
        "build-blocks",
        help="build every rollup block not built yet (PostgreSQL; a server does it by itself)",
    )
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("trendmap")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _db(settings: Settings, args: argparse.Namespace) -> int:
    """``db upgrade|downgrade|current``; ``current`` on a missing SQLite file creates none."""
    missing = missing_sqlite_file(settings.database_url)
    if args.action == "current" and missing is not None:
        print(f"database at revision base: no database file at {missing}", file=sys.stdout)
        return 0
    if args.action == "build-blocks":
        return asyncio.run(_build_blocks(settings, sys.stdout))
    revision = getattr(args, "revision", "head")
    current = asyncio.run(_migrate(settings, args.action, revision))
    print(f"database at revision {current or 'base'} (head is {migrate.head_revision()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = Settings()
        if args.command != "serve":  # the server logs to stdout; a command's stdout is its report
            configure_logging(settings.log_level, stderr=True)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "ingest":
            return asyncio.run(_ingest(settings, args, sys.stdout))
        if args.command == "demo-data":
            return _demo_data(args)
        if args.command == "poll":
            return asyncio.run(_poll_once(settings, sys.stdout))
        if args.command == "examples":
            return _examples(args)
        return _db(settings, args)
    except failures.KNOWN as exc:  # a bad setting, a missing database, an unknown revision
        url = settings.database_url if settings else None
        print(f"error: {failures.one_line(exc, url)}", file=sys.stderr)
        return 2
    except (TrendmapError, UnsupportedDatabaseURL, ValueError, OSError) as exc:
        message = exc.detail if isinstance(exc, TrendmapError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2


def _examples(args: argparse.Namespace) -> int:
    # Imported here: the generator pulls in the whole app and the test client.
    from graph.cli.examples.generator import generate

    written = generate(Path(args.output))
    print(f"wrote {len(written)} example documents to {args.output}", file=sys.stderr)
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    now = parse_timestamp(args.now) if args.now else datetime.now(UTC)
    records = generate_demo_records(now)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(records)} records to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
