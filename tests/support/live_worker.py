"""A worker as a test can drive it: a real archive and a broadcaster wired as a server wires
them (graph.wiring.live_broadcaster), with its publishing rounds run by the test, so that every
step is deterministic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from graph.core.records import validate_batch
from graph.live.broadcaster import Broadcaster
from graph.wiring import Archive, live_broadcaster, open_archive
from tests.support.factories import make_settings, spread

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@dataclass
class Worker:
    archive: Archive
    broadcaster: Broadcaster
    rounds: list[list[str]] = field(default_factory=list)
    """Per round the test ran, the windows it handed this worker's listeners."""

    async def ingest(self, a: str, b: str, topic: str) -> list[str]:
        """Store one new flow a -> b (``spread``, before NOW) and run a round: the windows it
        handed this worker's listeners."""
        await self.archive.service.ingest(validate_batch(spread(a, b, [topic], NOW)))
        self.rounds.append([])
        await self.archive.publisher.publish_all()
        return self.rounds[-1]


@asynccontextmanager
async def worker(database: str, redis_url: str | None = None) -> AsyncIterator[Worker]:
    async with open_archive(make_settings(database, redis_url=redis_url)) as archive:
        w = Worker(archive, live_broadcaster(archive, queue_size=16))

        def heard(message: bytes) -> None:
            if w.rounds:  # a round the test ran
                w.rounds[-1].append(orjson.loads(message.partition(b"\n")[0])["window"])

        archive.publisher.on_snapshot(heard)
        yield w
