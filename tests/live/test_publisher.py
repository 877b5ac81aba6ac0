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
ROUND_SECONDS = 0.02  # per window with new flows


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_stream_of_ingests_is_published_in_few_rounds(tmp_path: Path) -> None:
    """Before, a round followed the last one after as long as it took, so during a bulk load
    recomputing every window took half of the worker; now rounds take at most about a quarter
    of the time (a rest three times as long as the round), and the stream's last ingest is
    still published once it stops."""
    settings = make_settings(f"sqlite:///{tmp_path / 'trendmap.db'}")
    async with open_archive(settings) as archive:
        rounds: list[list[str]] = []
        last_topic = asyncio.Event()
        topics: list[str] = []

        def listener(message: bytes) -> None:
            # Called inside the round: a round as long as a big archive's, on a small one.
            time.sleep(ROUND_SECONDS)
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
            publisher = archive.publisher
            while time.monotonic() - started < STREAM_SECONDS:
                topic = f"topic {len(topics):03d}"
                # Each topic counts more than the last: the newest is always a shared topic.
                batch = [r | {"count": 100 + len(topics)} for r in spread("US", "CA", [topic], NOW)]
                await archive.service.ingest(validate_batch(batch))
                topics.append(topic)
            await asyncio.wait_for(last_topic.wait(), timeout=30)
            elapsed = time.monotonic() - started
        finally:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        assert len(topics) >= 20  # a stream, not a few ingests
        assert len(rounds) >= 2  # subscribers heard of the stream while it went on
        # A quarter of the time, give or take the first round (no rest before it) and the last.
        busy = publisher.round_seconds
        assert busy <= elapsed / 4 + 2 * publisher.longest_round, (busy, elapsed, len(rounds))
