"""The publisher's rounds while ingests stream in: coalesced, and the stream's end published.

A real archive (SQLite, the in-process store) and its publisher's own loop; each ingest gives
the one flow US → CA another shared topic, its heaviest, so every round that follows new data
hands this worker's listener a changed snapshot, and the snapshots counted are the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from graph.core.records import validate_batch
from graph.wiring import open_archive
from tests.support.factories import make_settings, spread

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
STREAM_SECONDS = 3.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_stream_of_ingests_is_published_in_few_rounds(tmp_path: Path) -> None:
    """Before, a round followed the last one after as long as it took, so a bulk load on a small
    archive recomputed every window several times a second; now a stream gets at most about one
    round a second, and its last ingest is still published once the stream stops."""
    settings = make_settings(f"sqlite:///{tmp_path / 'trendmap.db'}")
    async with open_archive(settings) as archive:
        rounds: list[list[str]] = []
        last_topic = asyncio.Event()
        topics: list[str] = []

        def listener(message: bytes) -> None:
            header, _, flows = message.partition(b"\n")
            if orjson.loads(header)["window"] != "24h":
                return
            shared = [t for f in orjson.loads(flows) for t in f["shared_topics"]]
            rounds.append(shared)
            if topics and topics[-1] in shared:
                last_topic.set()

        archive.publisher.on_snapshot(listener)
        publishing = asyncio.create_task(archive.publisher.run())
        try:
            started = time.monotonic()
            while time.monotonic() - started < STREAM_SECONDS:
                topic = f"topic {len(topics):03d}"
                # Each topic counts more than the last: the newest is always a shared topic.
                batch = [r | {"count": 100 + len(topics)} for r in spread("US", "CA", [topic], NOW)]
                await archive.service.ingest(validate_batch(batch))
                topics.append(topic)
            await asyncio.wait_for(last_topic.wait(), timeout=30)
        finally:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        assert len(topics) >= 20  # a stream, not a few ingests
        # A round right after the first ingest, about one a second after it, and the last.
        assert len(rounds) <= STREAM_SECONDS + 2, [len(r) for r in rounds]
