"""The server's background builder of the rollup's six-hour blocks (PostgreSQL): it builds
blocks once their writes settle, logs a database outage once, and carries on after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
import structlog
from starlette.testclient import TestClient

from db import migrate
from db.engine import make_engine
from db.repository import TrendRepository
from graph.core.records import Record
from graph.http.app import create_app
from graph.observability.log import configure_logging
from graph.service.blocks import BlockBuilder
from tests.support.factories import AS_OF, make_settings, record, write_headers
from tests.support.servers import empty_archive

UNBUILT = sa.text("SELECT count(*) FROM trends_rollup_block_state WHERE built <> changes")
BUILT = sa.text("SELECT count(*) FROM trends_rollup_block_state WHERE built = changes")


@pytest.fixture(autouse=True)
def info_logs() -> None:
    """The builder's rounds log at info, as a server's default LOG_LEVEL shows them; an app an
    earlier test built may have left the level at its settings' WARNING."""
    configure_logging("INFO")


@pytest.fixture
def archive_url(postgres_url: str) -> str:
    asyncio.run(empty_archive(postgres_url))
    return postgres_url


def stored(hours_ago: float, country: str = "US") -> Record:
    return Record(AS_OF - timedelta(hours=hours_ago), country, "Storm", "storm", 10, 0.9, None)


async def _count(url: str, query: sa.TextClause) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(query) or 0)
    finally:
        await engine.dispose()


async def _unbuilt(url: str) -> int:
    return await _count(url, UNBUILT)


async def _built(url: str) -> int:
    return await _count(url, BUILT)


def test_a_round_builds_the_blocks_whose_writes_settled(archive_url: str) -> None:
    async def main() -> None:
        engine = make_engine(archive_url)
        try:
            await migrate.upgrade(engine)
            # Seven hours apart: five blocks.
            await TrendRepository(engine).upsert([stored(7 * i) for i in range(5)])
            settling = BlockBuilder(engine, interval_seconds=30, quiet_seconds=3_600)
            done = await settling.round()
            assert done is not None and done.built == 0  # written just now: not settled
            assert await _unbuilt(archive_url) == 5
            builder = BlockBuilder(engine, interval_seconds=30, quiet_seconds=0)
            with structlog.testing.capture_logs() as logs:
                done = await builder.round()
            assert done is not None and done.built == 5
            assert [line["built"] for line in logs if line["event"] == "rollup blocks built"] == [5]
            assert await _unbuilt(archive_url) == 0
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_an_outage_is_one_warning_and_the_next_round_goes_on(archive_url: str) -> None:
    async def main() -> None:
        dead = make_engine("postgresql://postgres@127.0.0.1:1/none", connect_timeout=1)
        live = make_engine(archive_url)
        try:
            await migrate.upgrade(live)
            await TrendRepository(live).upsert([stored(1)])
            builder = BlockBuilder(dead, interval_seconds=30, quiet_seconds=0)
            with structlog.testing.capture_logs() as logs:
                assert await builder.round() is None
                assert await builder.round() is None
                builder.engine = live  # the database is back
                done = await builder.round()
            assert done is not None and done.built == 1
            events = [(line["log_level"], line["event"]) for line in logs]
            assert events == [
                ("warning", "rollup blocks not built"),
                ("info", "rollup blocks built again"),
                ("info", "rollup blocks built"),
            ]
        finally:
            await dead.dispose()
            await live.dispose()

    asyncio.run(main())


@pytest.fixture
def served(archive_url: str) -> Iterator[TestClient]:
    settings = make_settings(
        archive_url, rollup_blocks_quiet_seconds=0, rollup_blocks_interval_seconds=0.05
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_server_builds_blocks_after_an_ingest(archive_url: str, served: TestClient) -> None:
    response = served.post(
        "/v1/trends", json=[record("US", "Storm"), record("BR", "Storm")], headers=write_headers()
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 20
    while asyncio.run(_built(archive_url)) < 1 or asyncio.run(_unbuilt(archive_url)):
        assert time.monotonic() < deadline, "the server built no block"
        time.sleep(0.05)


def test_a_schema_behind_head_is_one_warning(schemaless_postgres_url: str) -> None:
    """With AUTO_MIGRATE off, a database without the blocks: the server warns, once."""

    async def main() -> None:
        engine = make_engine(schemaless_postgres_url)
        try:
            builder = BlockBuilder(engine, interval_seconds=30, quiet_seconds=0)
            with structlog.testing.capture_logs() as logs:
                assert await builder.round() is None
                assert await builder.round() is None
            [line] = logs
            assert (line["log_level"], line["event"]) == ("warning", "rollup blocks not built")
            assert "trends_rollup_block_state" in line["error"]
        finally:
            await engine.dispose()

    asyncio.run(main())
